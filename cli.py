"""ollang's command line, ``ollang`` (also ``python -m ollang``): the module ``ollang.cli``.

A thin adapter over :mod:`ollang.chains` and :mod:`ollang.memory`: parse, call one
function (in :mod:`ollang.commands`), render. Each command's docstring is its
``--help`` text. LangChain and the ollama client are imported inside the commands
that use them, so ``ollang --help`` starts fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ollang.commands.startup import defer_httpx_cli

defer_httpx_cli()

__all__ = ["app", "main"]

app = typer.Typer(
    name="ollang",
    help="Chat with local models through Ollama (or in-process), with durable sessions.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List, pull, show, remove and inspect models.", no_args_is_help=False)
sessions_app = typer.Typer(help="List, show, export, import, search and manage chat sessions.")
app.add_typer(models_app, name="models")
app.add_typer(sessions_app, name="sessions")

ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="Model name (default $OLLANG_MODEL or llama3).")
]
SystemOpt = Annotated[str | None, typer.Option("--system", "-s", help="System prompt.")]
SessionOpt = Annotated[
    str | None, typer.Option("--session", help="Resume (or create) this session id.")
]
ContinueOpt = Annotated[
    bool, typer.Option("--continue", "-c", help="Resume the most recent session.")
]
OptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-o",
        help="Model option KEY=VALUE (temperature, num_ctx, seed, stop, ...). Repeatable.",
    ),
]
ThinkOpt = Annotated[
    bool, typer.Option("--think", help="Ask thinking models to reason; show it dimmed, apart.")
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend", help="auto (default: Ollama if reachable, else embedded), ollama or embedded."
    ),
]


def _version(value: bool) -> None:
    if value:
        from ollang import __version__

        sys.stdout.write(f"ollang {__version__}\n")
        raise typer.Exit(0)


HostOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ollama-host",
        help="An Ollama host (any OLLAMA_HOST form, ?priority=N&weight=W&max=M, or 'embedded'); "
        "repeat for several. Overrides $OLLANG_OLLAMA_HOSTS and $OLLAMA_HOST.",
    ),
]


def _use_hosts(values: list[str] | None) -> None:
    if values:
        from ollang.commands.common import set_ollama_hosts

        try:
            set_ollama_hosts(values)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--ollama-host") from err


@app.callback()
def root(
    ollama_host: HostOpt = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Chat with local models through Ollama (or in-process), with durable sessions."""
    _use_hosts(ollama_host)


@app.command()
def chat(
    model: ModelOpt = None,
    system: SystemOpt = None,
    session: SessionOpt = None,
    cont: ContinueOpt = False,
    option: OptionOpt = None,
    think: ThinkOpt = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show timings, token counts and context use.")
    ] = False,
    backend: BackendOpt = None,
) -> int:
    """Chat in a REPL. Type /help for commands, Ctrl-C to stop an answer, Ctrl-D to quit."""
    from ollang.commands.repl import run_chat

    return run_chat(
        model=model,
        system=system,
        session=session,
        cont=cont,
        options=option or [],
        think=think,
        verbose=verbose,
        backend=backend,
    )


@app.command()
def ask(
    prompt: Annotated[
        str | None, typer.Argument(help="The prompt; '-' reads stdin (piped stdin is appended).")
    ] = None,
    model: ModelOpt = None,
    system: SystemOpt = None,
    session: SessionOpt = None,
    cont: ContinueOpt = False,
    option: OptionOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object: response, usage, timings.")
    ] = False,
    no_stream: Annotated[
        bool, typer.Option("--no-stream", help="Print the answer once it is complete.")
    ] = False,
    think: ThinkOpt = False,
    backend: BackendOpt = None,
) -> int:
    """Ask one question and stream the answer. Stores nothing unless --session or -c."""
    from ollang.commands.ask import run_ask

    return run_ask(
        prompt,
        model=model,
        system=system,
        session=session,
        cont=cont,
        options=option or [],
        as_json=as_json,
        stream=not no_stream,
        think=think,
        backend=backend,
    )


@app.command()
def compare(
    prompt: Annotated[str, typer.Argument(help="The prompt sent to every model.")],
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="A model to compare. Repeat: -m A -m B.")
    ],
    system: SystemOpt = None,
    option: OptionOpt = None,
    backend: BackendOpt = None,
) -> int:
    """Send the same prompt to several models; compare speed and answers."""
    from ollang.commands.compare import run_compare

    return run_compare(prompt, model, system=system, options=option or [], backend=backend)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    api_key: Annotated[
        list[str] | None, typer.Option("--api-key", help="Require this bearer key. Repeatable.")
    ] = None,
    allow_model: Annotated[
        list[str] | None,
        typer.Option("--allow-model", help="Only models matching this glob. Repeatable."),
    ] = None,
    allow_pull: Annotated[
        bool, typer.Option("--allow-pull", help="Allow POST /models/pull.")
    ] = False,
    cors_origin: Annotated[
        list[str] | None, typer.Option("--cors-origin", help="Allow this browser origin.")
    ] = None,
    backend: BackendOpt = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Worker processes (one per core is plenty).")
    ] = 1,
    ollama_host: HostOpt = None,
) -> int:
    """Run the HTTP API and the browser chat page."""
    from ollang import server
    from ollang.commands.common import ollama_hosts_override

    _use_hosts(ollama_host)
    server.serve(
        ollama_hosts=[h.text for h in ollama_hosts_override()],
        host=host,
        port=port,
        api_keys=api_key or [],
        allow_models=allow_model or [],
        allow_pull=allow_pull,
        cors_origins=cors_origin or [],
        backend=backend,
        workers=workers,
    )
    return 0


# -- models ---------------------------------------------------------------------
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@models_app.callback(invoke_without_command=True)
def models_default(ctx: typer.Context, as_json: JsonOpt = False) -> int:
    """List installed models (the default), pull, show, rm, ps."""
    if ctx.invoked_subcommand is None:
        from ollang.commands.models import list_models

        return list_models(as_json)
    return 0


@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> int:
    """List installed models: Ollama's, and the embedded backend's (marked)."""
    from ollang.commands.models import list_models

    return list_models(as_json)


@models_app.command("pull")
def models_pull(name: Annotated[str, typer.Argument(help="Model to pull, e.g. llama3:8b.")]) -> int:
    """Pull a model, with per-layer progress."""
    from ollang.commands.models import pull_model

    return pull_model(name)


@models_app.command("show")
def models_show(
    name: Annotated[str, typer.Argument(help="Model name.")], as_json: JsonOpt = False
) -> int:
    """Show a model's family, parameters, quantization, context length and template."""
    from ollang.commands.models import show_model

    return show_model(name, as_json)


@models_app.command("rm")
def models_rm(
    name: Annotated[str, typer.Argument(help="Model name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> int:
    """Remove a model (asks first unless --yes)."""
    from ollang.commands.models import remove_model

    return remove_model(name, yes)


@models_app.command("ps")
def models_ps(as_json: JsonOpt = False) -> int:
    """Show models loaded in memory, their size and when they unload."""
    from ollang.commands.models import loaded_models

    return loaded_models(as_json)


# -- sessions -------------------------------------------------------------------
@sessions_app.callback(invoke_without_command=True)
def sessions_default(ctx: typer.Context, as_json: JsonOpt = False) -> int:
    """List sessions (the default), show, export, import, rm, rename, search."""
    if ctx.invoked_subcommand is None:
        from ollang.commands.sessions import list_sessions

        return list_sessions(as_json)
    return 0


@sessions_app.command("list")
def sessions_list(as_json: JsonOpt = False) -> int:
    """List sessions, most recent first."""
    from ollang.commands.sessions import list_sessions

    return list_sessions(as_json)


@sessions_app.command("show")
def sessions_show(
    session_id: Annotated[str, typer.Argument(help="Session id.")], as_json: JsonOpt = False
) -> int:
    """Show a session's messages."""
    from ollang.commands.sessions import show_session

    return show_session(session_id, as_json)


@sessions_app.command("export")
def sessions_export(
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="md or json.")] = "md",
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Write to this file (default stdout).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> int:
    """Export a session as Markdown or JSON (JSON round-trips through import)."""
    from ollang.commands.sessions import export_session

    return export_session(session_id, fmt, output, force)


@sessions_app.command("import")
def sessions_import(
    path: Annotated[str, typer.Argument(help="A JSON export.")],
    session_id: Annotated[
        str | None, typer.Option("--as", help="Import under this id instead.")
    ] = None,
) -> int:
    """Import a session from a JSON export."""
    from ollang.commands.sessions import import_session

    return import_session(path, session_id)


@sessions_app.command("rm")
def sessions_rm(
    session_id: Annotated[str, typer.Argument(help="Session id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> int:
    """Delete a session."""
    from ollang.commands.sessions import remove_session

    return remove_session(session_id, yes)


@sessions_app.command("rename")
def sessions_rename(
    session_id: Annotated[str, typer.Argument(help="Current id.")],
    new_id: Annotated[str, typer.Argument(help="New id.")],
) -> int:
    """Rename a session."""
    from ollang.commands.sessions import rename_session

    return rename_session(session_id, new_id)


@sessions_app.command("search")
def sessions_search(
    text: Annotated[str, typer.Argument(help="Words to find.")],
    limit: Annotated[int, typer.Option(help="At most this many hits.")] = 20,
    as_json: JsonOpt = False,
) -> int:
    """Full-text search over every stored message."""
    from ollang.commands.sessions import search_sessions

    return search_sessions(text, limit, as_json)


@sessions_app.command("migrate")
def sessions_migrate(
    to_url: Annotated[
        str, typer.Option("--to", help="Store to copy into, e.g. postgresql://USER:PW@HOST/DB.")
    ],
    from_url: Annotated[
        str | None,
        typer.Option(
            "--from", help="Store to copy from (default: $OLLANG_STORE_URL or sessions.db)."
        ),
    ] = None,
) -> int:
    """Copy every session and message to another store (ids, statuses, owners); safe to rerun."""
    from ollang.commands.sessions import migrate_sessions

    return migrate_sessions(from_url, to_url)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    from ollang.commands.errors import run

    return run(app, argv)


if __name__ == "__main__":
    sys.exit(main())
