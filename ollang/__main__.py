"""``python -m ollang``: the same command as ``ollang``."""

from __future__ import annotations

import sys

from ollang.cli import main

if __name__ == "__main__":
    sys.exit(main())
