"""The one place where exceptions become messages and exit codes.

Exit codes: 0 ok; 1 other error; 2 usage; 3 Ollama not reachable; 4 model not
found; 5 ``ollang serve`` cannot listen (the address is in use); 130 interrupted. Users see ``error: ...`` and a ``hint: ...`` line on
stderr, never a traceback unless ``OLLANG_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

import typer

__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "fail", "run"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _debug() -> bool:
    from ollang.errors import SettingsError
    from ollang.settings import Settings

    try:
        return Settings.from_env().debug
    except SettingsError:  # the bad setting is the error being reported
        return False


def fail(message: str, hint: str = "", code: int = 1) -> int:
    """Print ``error: message`` (and ``hint: ...``) on stderr; return ``code``."""
    sys.stdout.flush()
    sys.stderr.write(f"error: {message}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")
    sys.stderr.flush()
    return code


def run(app: typer.Typer, argv: Sequence[str] | None) -> int:
    """Run the Typer ``app`` and map whatever it raises to an exit code."""

    from ollang.errors import OllangError

    try:
        result = app(
            args=list(argv) if argv is not None else None, standalone_mode=False, prog_name="ollang"
        )
        return result if isinstance(result, int) else 0
    except typer.Exit as err:
        return err.exit_code
    except typer.TyperException as err:
        # click's errors (typer vendors click; their public base is TyperException).
        # Usage errors (exit code 2) carry the command whose --help to point at.
        if err.exit_code == EXIT_USAGE:
            ctx = getattr(err, "ctx", None)
            command = ctx.command_path if ctx is not None else "ollang"
            return fail(err.format_message(), f"see `{command} --help`", EXIT_USAGE)
        return fail(err.format_message(), code=err.exit_code)
    except (KeyboardInterrupt, typer.Abort):
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
