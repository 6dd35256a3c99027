"""The one place where exceptions become messages and exit codes.

Exit codes: 0 ok; 1 other error; 2 usage; 3 Ollama not reachable; 4 model not
found; 130 interrupted. Users see ``error: ...`` and a ``hint: ...`` line on
stderr, never a traceback unless ``OLLANG_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "fail", "run"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _debug() -> bool:
    return os.environ.get("OLLANG_DEBUG", "") not in ("", "0", "false")


def fail(message: str, hint: str = "", code: int = 1) -> int:
    """Print ``error: message`` (and ``hint: ...``) on stderr; return ``code``."""
    sys.stdout.flush()
    sys.stderr.write(f"error: {message}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")
    sys.stderr.flush()
    return code


def run(app: Any, argv: Sequence[str] | None) -> int:
    """Run the Typer ``app`` and map whatever it raises to an exit code."""
    from typer._click.exceptions import ClickException, UsageError
    from typer.exceptions import Abort, Exit

    from chains.errors import OllangError

    try:
        result = app(
            args=list(argv) if argv is not None else None, standalone_mode=False, prog_name="ollang"
        )
        return result if isinstance(result, int) else 0
    except Exit as err:
        return err.exit_code
    except UsageError as err:
        command = err.ctx.command_path if err.ctx is not None else "ollang"
        return fail(err.format_message(), f"see `{command} --help`", EXIT_USAGE)
    except ClickException as err:
        return fail(err.format_message(), code=err.exit_code)
    except (KeyboardInterrupt, Abort):
        sys.stderr.write("\ninterrupted\n")
        return EXIT_INTERRUPTED
    except OllangError as err:
        if _debug():
            traceback.print_exc()
        return fail(err.message, err.hint, err.exit_code)
    except BrokenPipeError:
        # stdout closed early (e.g. `ollang ask ... | head -1`): not an error.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except Exception as err:
        if _debug():
            traceback.print_exc()
        else:
            return fail(f"{type(err).__name__}: {err}", "run with OLLANG_DEBUG=1 for details")
        return 1
