"""The ``ollang keys`` sub-app and the ``ollang usage`` command: options and help text
(:mod:`ollang.cli` registers them); the work is in :mod:`ollang.commands.keys`.

Exit codes: 0 ok; 2 a usage error: a limit that is negative or not a number, a name that is
taken (``create``), no key of that name (``revoke``, ``rotate``), a revoked key (``rotate``).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer

from ollang.commands.common import CliSettings

__all__ = ["keys_app", "usage_command"]

keys_app = typer.Typer(
    help="Manage API keys kept in the session store: create, list, revoke, rotate. A server "
    "on the same store honours a change within 5 s; with any key stored, it requires one.",
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The key's name.")]


def _positive_weight(value: float) -> float:
    if not value > 0:
        raise typer.BadParameter(f"{value:g} is not a positive number")
    return value


def _day(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError as err:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from err


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: NameArg,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--models",
            metavar="PATTERN",
            help="Models the key may use (fnmatch, e.g. 'llama3*'); repeatable. "
            "Default: every model the server allows.",
        ),
    ] = None,
    rpm: Annotated[
        int | None, typer.Option("--rpm", metavar="N", min=1, help="Requests per minute.")
    ] = None,
    tpm: Annotated[
        int | None,
        typer.Option("--tpm", metavar="N", min=1, help="Tokens per minute (input + output)."),
    ] = None,
    daily_tokens: Annotated[
        int | None,
        typer.Option(
            "--daily-tokens", metavar="N", min=1, help="Tokens per UTC day (input + output)."
        ),
    ] = None,
    max_concurrent: Annotated[
        int | None,
        typer.Option(
            "--max-concurrent", metavar="N", min=1, help="Requests the key may have at once."
        ),
    ] = None,
    weight: Annotated[
        float,
        typer.Option(
            "--weight",
            metavar="W",
            callback=_positive_weight,
            help="Share of the hosts in fair queueing (2: twice a weight-1 key's).",
        ),
    ] = 1.0,
) -> int:
    """Create a key; prints its secret alone on stdout, once (KEY=$(ollang keys create NAME))."""
    from ollang.commands.keys import create_key

    return create_key(
        ctx.ensure_object(CliSettings).settings,
        name,
        models=tuple(models or ()),
        rpm=rpm,
        tpm=tpm,
        daily_tokens=daily_tokens,
        max_concurrent=max_concurrent,
        weight=weight,
    )


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> int:
    """List the keys and their limits (never their secrets)."""
    from ollang.commands.keys import list_keys

    return list_keys(ctx.ensure_object(CliSettings).settings, as_json)


@keys_app.command("revoke")
def keys_revoke(ctx: typer.Context, name: NameArg) -> int:
    """Revoke a key for good (exit 2 if there is no such key)."""
    from ollang.commands.keys import revoke_key

    return revoke_key(ctx.ensure_object(CliSettings).settings, name)


@keys_app.command("rotate")
def keys_rotate(ctx: typer.Context, name: NameArg) -> int:
    """Give a key a new secret, printed alone on stdout; it keeps its sessions and limits."""
    from ollang.commands.keys import rotate_key

    return rotate_key(ctx.ensure_object(CliSettings).settings, name)


def usage_command(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", metavar="DATE", callback=_day, help="From this UTC day on (YYYY-MM-DD)."
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", metavar="NAME", help="Only this key ('local': the CLI's turns)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
) -> int:
    """Usage per key, model and UTC day: requests, tokens in and out, errors, busy and queue
    seconds."""
    from ollang.commands.keys import show_usage

    return show_usage(ctx.ensure_object(CliSettings).settings, since, key, as_json, as_csv)
