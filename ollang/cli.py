"""ollang's command line, ``ollang`` (also ``python -m ollang``): the module ``ollang.cli``.

A thin adapter over :mod:`ollang.chains` and :mod:`ollang.memory`: parse, call one
function (in :mod:`ollang.commands`), render. Each command's docstring is its
``--help`` text. LangChain and the ollama client are imported inside the commands
that use them, so ``ollang --help`` starts fast. Ollama's own verbs (``run``, ``list``,
``ps``, ``pull``, ``show``, ``rm``, ``stop``, ``cp``, ``create``, ``push``) are top-level commands, as in
``ollama``; ``ollang models ...`` is the same code. ``ollang models fit`` and ``ollang
recommend`` help choose a model.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ollang.commands.common import CliSettings, TurnArgs
from ollang.commands.keys_app import keys_app, usage_command
from ollang.commands.startup import defer_httpx_cli

if TYPE_CHECKING:
    from ollang.settings import Settings

defer_httpx_cli()

__all__ = ["app", "main"]

_SETTINGS = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="ollang",
    help="Chat with local models through Ollama (or in-process), with durable sessions.",
    no_args_is_help=True,
    add_completion=False,
    context_settings=_SETTINGS,
    pretty_exceptions_enable=False,
    # click's plain help (as llm's, and Ollama's own): flags without type labels, and
    # nothing to import for --help.
    rich_markup_mode=None,
)
models_app = typer.Typer(
    help="Manage models (also top level: ollang list, pull, show, ...).",
    context_settings=_SETTINGS,
    rich_markup_mode=None,
)
sessions_app = typer.Typer(
    help="Manage chat sessions: list, show, export, import, search, migrate.",
    context_settings=_SETTINGS,
    rich_markup_mode=None,
)
app.add_typer(models_app, name="models")
app.add_typer(sessions_app, name="sessions")
app.add_typer(keys_app, name="keys")

# -- options shared by the commands -----------------------------------------------------
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        metavar="NAME",
        help="Model (default: the session's, else $OLLANG_MODEL, else llama3).",
    ),
]
SystemOpt = Annotated[
    str | None,
    typer.Option("--system", "-s", metavar="TEXT", help="System prompt (default: the session's)."),
]
SessionOpt = Annotated[
    str | None,
    typer.Option("--session", metavar="ID", help="Resume (or create) this session id."),
]
ContinueOpt = Annotated[
    bool, typer.Option("--continue", "-c", help="Resume the most recent session.")
]
OptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-o",
        metavar="KEY=VALUE",
        help="Model option (temperature, num_ctx, seed, stop, keep_alive, ...). Repeatable.",
    ),
]
ThinkOpt = Annotated[
    bool, typer.Option("--think", help="Ask thinking models to reason; show it dimmed, apart.")
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        metavar="NAME",
        help="auto (default: Ollama hosts, then the embedded model), ollama or embedded.",
    ),
]
HostOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ollama-host",
        metavar="URL",
        help="An Ollama host (any OLLAMA_HOST form, ?priority=N&weight=W&max=M, or "
        "'embedded'); repeat for several. Overrides $OLLANG_OLLAMA_HOSTS and $OLLAMA_HOST.",
    ),
]
ImageOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--image",
        "-i",
        metavar="PATH",
        help="Attach an image (PNG, JPEG, GIF or WebP, at most 10 MiB). Repeatable.",
    ),
]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", metavar="json", help="Answer in JSON (Ollama's format=json)."),
]
SchemaOpt = Annotated[
    str | None,
    typer.Option(
        "--schema",
        metavar="SCHEMA",
        help="Answer in JSON following SCHEMA: JSON text, a file, or 'name, age int'; "
        "the answer is checked against it.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ChosenHostOpt = Annotated[
    str | None,
    typer.Option("--host", metavar="URL", help="Only on this host (default: every Ollama host)."),
]
PromptArg = Annotated[
    str | None,
    typer.Argument(
        metavar="PROMPT",
        help="The prompt; '-' reads stdin (piped stdin is appended).",
        show_default=False,
    ),
]


# -- settings: the environment's, with the options that stand for a setting -------------
def _cli(ctx: typer.Context, hosts: list[str] | None = None) -> CliSettings:
    """This invocation's :class:`CliSettings`, carried by the typer context (``ctx.obj``,
    shared by a command and its parents), with this command's ``--ollama-host`` applied."""
    state = ctx.ensure_object(CliSettings)
    if hosts:
        try:
            state.use_hosts(hosts)
        except ValueError as err:
            text = getattr(err, "message", str(err))
            text = text.removeprefix("--ollama-host: ").removeprefix("--ollama-host ")
            raise typer.BadParameter(text, param_hint="--ollama-host") from err
    return state


def _settings(ctx: typer.Context, hosts: list[str] | None = None) -> Settings:
    """The settings a command runs with (see :func:`_cli`)."""
    return _cli(ctx, hosts).settings


def _version(value: bool) -> None:
    if value:
        from ollang import __version__

        sys.stdout.write(f"ollang {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    ollama_host: HostOpt = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Chat with local models through Ollama (or in-process), with durable sessions."""
    _cli(ctx, ollama_host)  # the context's settings, before any command reads them


# -- chatting ----------------------------------------------------------------------------
@app.command()
def chat(
    ctx: typer.Context,
    model: ModelOpt = None,
    system: SystemOpt = None,
    session: SessionOpt = None,
    cont: ContinueOpt = False,
    option: OptionOpt = None,
    image: ImageOpt = None,
    fmt: FormatOpt = None,
    schema: SchemaOpt = None,
    think: ThinkOpt = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show timings, token counts and context use.")
    ] = False,
    backend: BackendOpt = None,
    ollama_host: HostOpt = None,
) -> int:
    """Chat in a REPL.

    Type /help for commands, Ctrl-C to stop an answer, Ctrl-D to quit. With --session
    or -c it resumes a session with its model, system prompt and options.
    """
    from ollang.commands.repl import run_chat

    settings = _settings(ctx, ollama_host)
    args = TurnArgs(
        model, system, session, cont, option or [], image or [], fmt, schema, think, backend
    )
    return run_chat(settings, args, verbose=verbose)


@app.command()
def ask(
    ctx: typer.Context,
    prompt: PromptArg = None,
    model: ModelOpt = None,
    system: SystemOpt = None,
    session: SessionOpt = None,
    cont: ContinueOpt = False,
    option: OptionOpt = None,
    image: ImageOpt = None,
    fmt: FormatOpt = None,
    schema: SchemaOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object: response, usage, timings.")
    ] = False,
    no_stream: Annotated[
        bool, typer.Option("--no-stream", help="Print the answer once it is complete.")
    ] = False,
    think: ThinkOpt = False,
    backend: BackendOpt = None,
    ollama_host: HostOpt = None,
) -> int:
    """Ask one question and stream the answer.

    Stores nothing unless --session or -c (which resume the session's model, system
    prompt and options unless given).
    """
    from ollang.commands.ask import run_ask

    settings = _settings(ctx, ollama_host)
    args = TurnArgs(
        model, system, session, cont, option or [], image or [], fmt, schema, think, backend
    )
    return run_ask(settings, prompt, args, as_json=as_json, stream=not no_stream)


@app.command()
def run(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL", help="The model, e.g. llama3.")],
    prompt: PromptArg = None,
    system: SystemOpt = None,
    session: SessionOpt = None,
    cont: ContinueOpt = False,
    option: OptionOpt = None,
    image: ImageOpt = None,
    fmt: FormatOpt = None,
    schema: SchemaOpt = None,
    think: ThinkOpt = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show timings, token counts and context use.")
    ] = False,
    backend: BackendOpt = None,
    ollama_host: HostOpt = None,
) -> int:
    """Run a model, as `ollama run` does.

    With a PROMPT (or piped input): one answer. Without: the REPL.
    """
    settings = _settings(ctx, ollama_host)
    args = TurnArgs(
        model, system, session, cont, option or [], image or [], fmt, schema, think, backend
    )
    if prompt is None and sys.stdin.isatty():
        from ollang.commands.repl import run_chat

        return run_chat(settings, args, verbose=verbose)
    from ollang.commands.ask import run_ask

    return run_ask(settings, prompt, args, as_json=False, stream=True)


_CompareSuite = Annotated[
    Path | None,
    typer.Option(
        "--suite",
        metavar="FILE",
        help="Evaluate on this suite (YAML or JSON: cases with prompts and assertions).",
    ),
]
_CompareRepeat = Annotated[
    int, typer.Option("--repeat", metavar="N", help="Runs per case and model (with --suite).")
]
_CompareJudge = Annotated[
    str | None,
    typer.Option(
        "--judge", metavar="MODEL", help="The model that grades rubric assertions (with --suite)."
    ),
]
_CompareReport = Annotated[
    Path | None,
    typer.Option("--report", metavar="FILE.md", help="Write a Markdown report (with --suite)."),
]
_ComparePlot = Annotated[
    Path | None,
    typer.Option(
        "--plot", metavar="FILE.png", help="Draw pass rates and speeds (with --suite; matplotlib)."
    ),
]
_CompareJson = Annotated[
    bool, typer.Option("--json", help="Print the evaluation as JSON (with --suite).")
]


@app.command()
def compare(
    ctx: typer.Context,
    prompt: Annotated[
        str | None,
        typer.Argument(metavar="PROMPT", help="The prompt sent to every model (no --suite)."),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model", "-m", metavar="NAME", help="A model to compare. Repeat: -m A -m B."
        ),
    ] = None,
    suite: _CompareSuite = None,
    repeat: _CompareRepeat = 1,
    judge: _CompareJudge = None,
    report: _CompareReport = None,
    plot: _ComparePlot = None,
    as_json: _CompareJson = False,
    system: SystemOpt = None,
    option: OptionOpt = None,
    backend: BackendOpt = None,
    ollama_host: HostOpt = None,
) -> int:
    """Compare models on one prompt.

    Sends the same prompt to every -m model; shows speed and answers side by side.

    With --suite FILE: an evaluation. Every case of the suite runs on every model
    (--repeat times); each answer is checked (contains, not-contains, regex, equals,
    json-schema, rubric graded by the --judge model) and timed. Prints pass rate, time
    to first token, tokens/s, load time and fit per model; keeps the run for `ollang
    recommend`. Exit 0 when the evaluation ran, failed checks included (they are
    results); 1 when every run failed with an error; 2 for a bad suite; 4 when a model
    is not installed (nothing runs); 130 on Ctrl-C, the finished runs kept.

    \b
    A suite:
      cases:
        - name: France
          prompt: What is the capital of France?
          assert: [{contains: Paris}, {not-contains: London}]
        - prompt: Give a JSON object with a name.
          assert: [{json-schema: {type: object, required: [name]}}]
    """
    from ollang.errors import InvalidInputError

    settings = _settings(ctx, ollama_host)
    models = model or []
    if not models:
        raise InvalidInputError("name the models to compare", "e.g. -m llama3 -m mistral")
    if suite is not None:
        if prompt is not None:
            raise InvalidInputError(
                "give either a PROMPT or --suite, not both", "the suite holds the prompts"
            )
        from ollang.commands.compare import run_suite

        return run_suite(
            settings,
            suite,
            models,
            repeat=repeat,
            judge=judge,
            report=report,
            plot_path=plot,
            as_json=as_json,
            system=system,
            options=option or [],
            backend=backend,
        )
    suite_only = {
        "--repeat": repeat != 1,
        "--judge": judge is not None,
        "--report": report is not None,
        "--plot": plot is not None,
        "--json": as_json,
    }
    used = [name for name, given in suite_only.items() if given]
    if used:
        raise InvalidInputError(f"{', '.join(used)} need --suite", "e.g. --suite suite.yaml")
    if prompt is None:
        raise InvalidInputError(
            "give a PROMPT or --suite FILE", 'e.g. ollang compare "Explain TCP" -m A -m B'
        )
    from ollang.commands.compare import run_compare

    return run_compare(
        settings, prompt, models, system=system, options=option or [], backend=backend
    )


# serve's options (module level: the command reads as what it does)
_ServeHost = Annotated[
    str | None,
    typer.Option(
        metavar="ADDRESS",
        help="Address to bind (default: $OLLANG_SERVER_HOST, else loopback 127.0.0.1).",
    ),
]
_ServePort = Annotated[
    int | None,
    typer.Option(metavar="PORT", help="Port (default: $OLLANG_SERVER_PORT, else 8000)."),
]
_ServeApiKey = Annotated[
    list[str] | None,
    typer.Option("--api-key", metavar="KEY", help="Require this bearer key. Repeatable."),
]
_ServeAdminKey = Annotated[
    list[str] | None,
    typer.Option(
        "--admin-key",
        metavar="KEY",
        help="A bearer key that may manage keys (/admin/keys) and read all usage. Repeatable.",
    ),
]
_ServeAllowModel = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-model", metavar="GLOB", help="Only models matching this glob. Repeatable."
    ),
]
_ServeAllowPull = Annotated[
    bool, typer.Option("--allow-pull", help="Allow pulling models (POST /models/pull).")
]
_ServeAllowManage = Annotated[
    bool,
    typer.Option(
        "--allow-manage",
        help="Allow managing models through Ollama's API (delete, copy, create, push, "
        "blobs; pull too).",
    ),
]
_ServeCorsOrigin = Annotated[
    list[str] | None,
    typer.Option("--cors-origin", metavar="ORIGIN", help="Allow this browser origin."),
]
_ServeAllowedHost = Annotated[
    list[str] | None,
    typer.Option(
        "--allowed-host",
        metavar="NAME",
        help="Also answer requests for this host name (loopback names, addresses and "
        "this machine's name always work); '*' for any.",
    ),
]
_ServeWorkers = Annotated[
    int,
    typer.Option(min=1, max=64, metavar="N", help="Worker processes (one per core is plenty)."),
]


@app.command()
def serve(
    ctx: typer.Context,
    host: _ServeHost = None,
    port: _ServePort = None,
    api_key: _ServeApiKey = None,
    admin_key: _ServeAdminKey = None,
    allow_model: _ServeAllowModel = None,
    allow_pull: _ServeAllowPull = False,
    allow_manage: _ServeAllowManage = False,
    cors_origin: _ServeCorsOrigin = None,
    allowed_host: _ServeAllowedHost = None,
    backend: BackendOpt = None,
    workers: _ServeWorkers = 1,
    ollama_host: HostOpt = None,
) -> int:
    """Run the HTTP API and the browser chat page.

    Options win over the environment (OLLANG_SERVER_*, OLLAMA_HOST, ...); every worker
    process runs with the same settings.
    """
    from ollang.server import ServerSettings
    from ollang.server import serve as run_server
    from ollang.settings import parse_backend

    state = _cli(ctx, ollama_host)
    # Only what was given: the rest comes from OLLANG_SERVER_* (and the core settings).
    options = {
        "host": host,
        "port": port,
        "api_keys": api_key,
        "admin_keys": admin_key,
        "allow_models": allow_model,
        "allow_pull": allow_pull or None,
        "allow_manage": allow_manage or None,
        "cors_origins": cors_origin,
        "allowed_hosts": allowed_host,
    }
    given: dict[str, Any] = {k: v for k, v in options.items() if v is not None and v != []}
    if backend:
        given["backend"] = parse_backend(backend, "--backend")
    if state.hosts:  # over $OLLANG_SERVER_OLLAMA_HOSTS too
        given["ollama_hosts"] = [h.text for h in state.hosts]
    run_server(ServerSettings(core=state.settings, **given), workers=workers)
    return 0


# -- models: top level (as `ollama`) and under `ollang models` ---------------------------
F = TypeVar("F", bound=Callable[..., int])


def _both(name: str) -> Callable[[F], F]:
    """Register a models command both as ``ollang NAME`` and ``ollang models NAME``."""

    def register(fn: F) -> F:
        app.command(name)(fn)
        models_app.command(name)(fn)
        return fn

    return register


@_both("list")
def models_list(ctx: typer.Context, as_json: JsonOpt = False, ollama_host: HostOpt = None) -> int:
    """List models.

    Every host's: Ollama's, and the embedded backend's (marked).
    """
    from ollang.commands.models import list_models

    return list_models(_settings(ctx, ollama_host), as_json)


@_both("ps")
def models_ps(ctx: typer.Context, as_json: JsonOpt = False, ollama_host: HostOpt = None) -> int:
    """List the models loaded in memory.

    Their size, where (GPU or CPU) and when they unload, on every Ollama host.
    """
    from ollang.commands.models import loaded_models

    return loaded_models(_settings(ctx, ollama_host), as_json)


@_both("pull")
def models_pull(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="MODEL", help="Model to pull, e.g. llama3:8b.")],
    on: ChosenHostOpt = None,
    ollama_host: HostOpt = None,
) -> int:
    """Pull a model.

    With per-layer progress, on every Ollama host (or --host).
    """
    from ollang.commands.models import pull_model

    return pull_model(_settings(ctx, ollama_host), name, on)


@_both("show")
def models_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="MODEL", help="Model name.")],
    as_json: JsonOpt = False,
    parameters: Annotated[bool, typer.Option("--parameters", help="Only its parameters.")] = False,
    template: Annotated[bool, typer.Option("--template", help="Only its template.")] = False,
    system: Annotated[bool, typer.Option("--system", help="Only its system prompt.")] = False,
    license_: Annotated[bool, typer.Option("--license", help="Only its license.")] = False,
    ollama_host: HostOpt = None,
) -> int:
    """Show a model's details.

    Family, parameters, quantization, context length and template.
    """
    from ollang.commands.models import show_model

    settings = _settings(ctx, ollama_host)
    only = next(
        (
            part
            for part, on in (
                ("parameters", parameters),
                ("template", template),
                ("system", system),
                ("license", license_),
            )
            if on
        ),
        None,
    )
    return show_model(settings, name, as_json, only)


@_both("rm")
def models_rm(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="MODEL", help="Model name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    on: ChosenHostOpt = None,
    ollama_host: HostOpt = None,
) -> int:
    """Remove a model.

    Asks first unless --yes; from every Ollama host that has it (or --host).
    """
    from ollang.commands.models import remove_model

    return remove_model(_settings(ctx, ollama_host), name, yes, on)


@_both("stop")
def models_stop(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="MODEL", help="Model name.")],
    on: ChosenHostOpt = None,
    ollama_host: HostOpt = None,
) -> int:
    """Unload a model from memory.

    Now, with keep_alive 0, on every Ollama host that has it (or --host).
    """
    from ollang.commands.models import stop_model

    return stop_model(_settings(ctx, ollama_host), name, on)


@_both("cp")
def models_cp(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="The model to copy.")],
    destination: Annotated[str, typer.Argument(metavar="DESTINATION", help="The new name.")],
    on: ChosenHostOpt = None,
    ollama_host: HostOpt = None,
) -> int:
    """Copy a model under a new name.

    On every Ollama host that has it (or --host).
    """
    from ollang.commands.models import copy_model

    return copy_model(_settings(ctx, ollama_host), source, destination, on)


@_both("create")
def models_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="MODEL", help="The model to create.")],
    file: Annotated[
        str,
        typer.Option("--file", "-f", metavar="PATH", help="The Modelfile (default: ./Modelfile)."),
    ] = "Modelfile",
    on: ChosenHostOpt = None,
    ollama_host: HostOpt = None,
) -> int:
    """Create a model from a Modelfile.

    Its local files uploaded first; on every Ollama host (or --host).
    """
    from ollang.commands.models import create_model

    return create_model(_settings(ctx, ollama_host), name, file, on)


@_both("push")
def models_push(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="MODEL", help="e.g. me/llama3-mario.")],
    on: ChosenHostOpt = None,
    ollama_host: HostOpt = None,
) -> int:
    """Push a model to ollama.com.

    From the Ollama host that has it (--host when several do).
    """
    from ollang.commands.models import push_model

    return push_model(_settings(ctx, ollama_host), name, on)


@models_app.command("fit")
def models_fit(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="MODEL", help="An installed model.")],
    context: Annotated[
        int | None,
        typer.Option(
            "--ctx",
            metavar="N",
            help="Context size in tokens (default: Ollama's 4096, or the trained one if smaller).",
        ),
    ] = None,
    kv_cache: Annotated[
        str,
        typer.Option(
            "--kv-cache", metavar="TYPE", help="KV cache type: f16, q8_0 or q4_0 (Ollama's)."
        ),
    ] = "f16",
    gpu: Annotated[
        list[str] | None,
        typer.Option(
            "--gpu",
            metavar="SIZE",
            help="Describe a GPU by its free memory (8GB, 8GiB) instead of detecting. Repeatable.",
        ),
    ] = None,
    ram: Annotated[
        str | None,
        typer.Option(
            "--ram", metavar="SIZE", help="Describe the free RAM (default: this machine's)."
        ),
    ] = None,
    as_json: JsonOpt = False,
    ollama_host: HostOpt = None,
) -> int:
    """Will a model fit this machine?

    Where it would run (GPU, split, CPU), the memory it needs (weights, KV cache, compute)
    and the largest context that fits, on this machine or one described with --gpu/--ram.
    """
    from ollang.commands.choose import fit_model

    return fit_model(
        _settings(ctx, ollama_host),
        name,
        ctx=context,
        kv_cache_type=kv_cache,
        gpus=gpu or [],
        ram=ram,
        as_json=as_json,
    )


@app.command()
def recommend(
    ctx: typer.Context,
    task: Annotated[
        str,
        typer.Option(
            "--for",
            metavar="TASK",
            help="chat, code, vision, tools, embedding or reasoning.",
        ),
    ],
    as_json: JsonOpt = False,
    ollama_host: HostOpt = None,
) -> int:
    """Which installed model to use for a task.

    Ranks every host's models by capability, fit on this machine, measured speed
    (ollang compare --suite) and size, saying why; exit 1 with what to pull when none
    will do.
    """
    from ollang.commands.choose import recommend_models

    return recommend_models(_settings(ctx, ollama_host), task, as_json)


@models_app.callback(invoke_without_command=True)
def models_default(
    ctx: typer.Context, as_json: JsonOpt = False, ollama_host: HostOpt = None
) -> int:
    """List models (the default), pull, show, rm, ps, stop, cp, create, push."""
    state = _cli(ctx, ollama_host)  # `ollang models --ollama-host H pull ...` too
    if ctx.invoked_subcommand is None:
        from ollang.commands.models import list_models

        return list_models(state.settings, as_json)
    return 0


# -- sessions -------------------------------------------------------------------
SessionArg = Annotated[str, typer.Argument(metavar="ID", help="Session id.")]


@sessions_app.callback(invoke_without_command=True)
def sessions_default(ctx: typer.Context, as_json: JsonOpt = False) -> int:
    """List sessions (the default), show, export, import, rm, rename, search, migrate."""
    if ctx.invoked_subcommand is None:
        from ollang.commands.sessions import list_sessions

        return list_sessions(_settings(ctx), as_json)
    return 0


@sessions_app.command("list")
def sessions_list(ctx: typer.Context, as_json: JsonOpt = False) -> int:
    """List sessions, most recent first."""
    from ollang.commands.sessions import list_sessions

    return list_sessions(_settings(ctx), as_json)


@sessions_app.command("show")
def sessions_show(ctx: typer.Context, session_id: SessionArg, as_json: JsonOpt = False) -> int:
    """Show a session: its settings and its messages."""
    from ollang.commands.sessions import show_session

    return show_session(_settings(ctx), session_id, as_json)


@sessions_app.command("export")
def sessions_export(
    ctx: typer.Context,
    session_id: SessionArg,
    fmt: Annotated[
        str, typer.Option("--format", "-f", metavar="md|json", help="md or json.")
    ] = "md",
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write to this file (default stdout)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> int:
    """Export a session as Markdown or JSON (JSON round-trips through import)."""
    from ollang.commands.sessions import export_session

    return export_session(_settings(ctx), session_id, fmt, output, force)


@sessions_app.command("import")
def sessions_import(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(metavar="FILE", help="A JSON export.")],
    session_id: Annotated[
        str | None, typer.Option("--as", metavar="ID", help="Import under this id instead.")
    ] = None,
) -> int:
    """Import a session from a JSON export."""
    from ollang.commands.sessions import import_session

    return import_session(_settings(ctx), path, session_id)


@sessions_app.command("rm")
def sessions_rm(
    ctx: typer.Context,
    session_id: SessionArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> int:
    """Delete a session."""
    from ollang.commands.sessions import remove_session

    return remove_session(_settings(ctx), session_id, yes)


@sessions_app.command("rename")
def sessions_rename(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(metavar="ID", help="Current id.")],
    new_id: Annotated[str, typer.Argument(metavar="NEW", help="New id.")],
) -> int:
    """Rename a session."""
    from ollang.commands.sessions import rename_session

    return rename_session(_settings(ctx), session_id, new_id)


@sessions_app.command("search")
def sessions_search(
    ctx: typer.Context,
    text: Annotated[
        str, typer.Argument(metavar="WORDS", help="Words to find (stems match; word* is a prefix).")
    ],
    limit: Annotated[int, typer.Option(metavar="N", help="At most this many hits.")] = 20,
    as_json: JsonOpt = False,
) -> int:
    """Full-text search over every stored message."""
    from ollang.commands.sessions import search_sessions

    return search_sessions(_settings(ctx), text, limit, as_json)


@sessions_app.command("migrate")
def sessions_migrate(
    ctx: typer.Context,
    to_url: Annotated[
        str,
        typer.Option(
            "--to", metavar="URL", help="Store to copy into, e.g. postgresql://USER:PW@HOST/DB."
        ),
    ],
    from_url: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="URL",
            help="Store to copy from (default: $OLLANG_STORE_URL or sessions.db).",
        ),
    ] = None,
) -> int:
    """Copy every session and message to another store (ids, statuses, owners); safe to rerun."""
    from ollang.commands.sessions import migrate_sessions

    return migrate_sessions(_settings(ctx), from_url, to_url)


# Registered last, so `ollang --help` lists it after the chat and model commands.
app.command("usage")(usage_command)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    from ollang.commands.errors import run

    return run(app, argv)


if __name__ == "__main__":
    sys.exit(main())
