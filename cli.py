"""ollang's command line: ``ollang`` (or ``python cli.py``).

A thin adapter over :mod:`chains` and :mod:`memory`: parse, call one function,
render. LangChain and the ollama client are imported inside the commands that
need them, so ``ollang --help`` starts fast.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

__version__ = "0.1.0"

HELP = """\
usage: ollang [--help] [--version]

ollang: LangChain chat chains, durable memory, a CLI and an HTTP server on Ollama.

options:
  -h, --help     show this help and exit
  -V, --version  print the version and exit
"""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(HELP)
        return 0
    if args[0] in ("-V", "--version"):
        sys.stdout.write(f"ollang {__version__}\n")
        return 0
    sys.stderr.write(f"error: unknown command {args[0]!r}\nhint: see `ollang --help`\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
