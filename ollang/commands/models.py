"""``ollang models``: list, pull (with progress), show, rm, ps, stop, cp, create, push."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from ollang.commands.errors import EXIT_USAGE, fail
from ollang.errors import InvalidInputError, NotSupportedError
from ollang.settings import Settings
from ollang.transport.manage import format_gb, normalise_model

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ollang.catalog import Fit, ModelFacts
    from ollang.routing.hosts import Host
    from ollang.routing.router import Router
    from ollang.transport.manage import ModelDetails, ModelManager, PullProgress

__all__ = [
    "copy_model",
    "create_model",
    "list_models",
    "loaded_models",
    "pull_model",
    "push_model",
    "remove_model",
    "show_model",
    "stop_model",
]


def _router(settings: Settings) -> Router:
    from ollang.routing.router import Router

    router = Router.from_settings(settings)
    router.check_all_sync()
    return router


def list_models(settings: Settings, as_json: bool) -> int:
    """Models on every host that is up, with what each can do and whether it fits here.

    One per line (``llama3:8b (4.7 GB) completion,tools · 100% CPU``), or a table on a
    terminal; with several hosts, which hosts have each. "Fits" is where the model would
    run on this machine at Ollama's default context (``?`` when it cannot be told); the
    facts come from each model's ``/api/show``, cached per digest in the data directory
    (an embedded model's from its GGUF header)."""
    from ollang.catalog.machine import this_machine
    from ollang.commands.choose import fits_here, listed_facts
    from ollang.routing.router import NoHostError

    router = _router(settings)
    down = [h for h in router.hosts if not h.state.up and not h.is_embedded]
    if not any(h.state.up for h in router.hosts):
        raise NoHostError(None, down)
    for host in down:
        sys.stderr.write(f"note: {host.name} is not reachable ({host.state.error}); not listed\n")
    listed = router.models()
    facts = listed_facts(settings, router, listed)
    fits = fits_here(facts, this_machine()) if facts else {}
    rows = [
        _row(details, hosts, facts[details.name], fits[details.name]) for details, hosts in listed
    ]
    several = len([h for h in router.hosts if h.state.up]) > 1
    if as_json:
        sys.stdout.write(json.dumps({"models": rows}, indent=2) + "\n")
        return 0
    if not rows:
        sys.stdout.write("no models installed; pull one with `ollang pull llama3`\n")
        return 0
    if not sys.stdout.isatty():
        for r in rows:
            mark = " [embedded]" if r["backend"] == "embedded" else ""
            where = f"  {', '.join(r['hosts'])}" if several and r["backend"] != "embedded" else ""
            can = ",".join(r["capabilities"]) or "?"
            sys.stdout.write(
                f"{r['name']} ({format_gb(r['size'])}){mark} {can} · {_processor(r)}{where}\n"
            )
        return 0
    from rich.console import Console
    from rich.table import Table

    columns = ["name", "size", "family", "parameters", "quantization", "context"]
    columns += ["capabilities", "fits", "modified", "backend"]
    table = Table(*columns, *(["hosts"] if several else []))
    for r in rows:
        d = r["details"]
        cells = [
            r["name"],
            format_gb(r["size"]),
            d.get("family") or "",
            d.get("parameter_size") or "",
            d.get("quantization_level") or "",
            str(r["context_length"] or ""),
            ", ".join(r["capabilities"]) or "?",
            _processor(r),
            (r["modified_at"] or "")[:10],
            r["backend"],
        ]
        table.add_row(*cells, *([", ".join(r["hosts"])] if several else []))
    Console().print(table)
    return 0


def _row(
    details: ModelDetails, hosts: list[str], facts: ModelFacts, fit: Fit | None
) -> dict[str, Any]:
    """One model as ``--json`` lists it: the listing's fields, the facts, and the fit here."""
    row = {**details.to_dict(), "hosts": hosts}
    shown = row["details"]
    shown["family"] = shown["family"] or facts.family
    shown["parameter_size"] = shown["parameter_size"] or facts.parameter_size
    shown["quantization_level"] = shown["quantization_level"] or facts.quantization
    shown["context_length"] = shown["context_length"] or facts.context_length
    row["capabilities"] = list(facts.capabilities)
    row["parameter_count"] = facts.parameter_count
    row["context_length"] = facts.context_length
    row["fit"] = {**fit.to_json(), "processor": fit.processor()} if fit is not None else None
    return row


def _processor(row: dict[str, Any]) -> str:
    """Where a listed model runs here (``100% GPU``...), ``?`` when unknown."""
    return str(row["fit"]["processor"]) if row["fit"] is not None else "?"


def _engine_address(settings: Settings, on: str) -> str | None:
    """The URL ``--host`` names when it is an OpenAI-compatible engine (an ``openai+``
    address, or a configured engine's URL), else ``None``."""
    from ollang.settings import HostSpec

    if on.strip().lower().startswith("openai+"):
        return HostSpec.parse(on, "--host").url
    engines = [h for h in settings.hosts if h.kind == "openai"]
    return next((h.url for h in engines if on.strip().rstrip("/") in (h.url, h.address)), None)


def _engine_holding(router: Router, model: str) -> Host | None:
    """An engine (openai kind) that is up and serves ``model``, when no Ollama host has it."""
    hosts = [h for h in router.hosts if h.state.up and h.has(model)]
    if any(h.kind == "ollama" for h in hosts):
        return None
    return next((h for h in hosts if h.kind == "openai"), None)


def _managers(
    settings: Settings,
    on: str | None,
    *,
    having: str | None = None,
    what: str = "managing models",
    router: Router | None = None,
) -> list[tuple[str, ModelManager]]:
    """The Ollama hosts a model command acts on: ``--host`` alone, else every Ollama host
    that is up (those that have ``having``, when given).

    Raises:
        NotSupportedError: ``what`` asked of an OpenAI-compatible engine: the one
            ``--host`` names, the one that has ``having``, or the only kind configured.
    """
    from ollang.routing.router import NoHostError
    from ollang.settings import parse_ollama_host
    from ollang.transport.manage import ModelManager

    if on is not None:
        engine = _engine_address(settings, on)
        if engine is not None:
            raise NotSupportedError(what, engine, "openai")
        try:
            url = parse_ollama_host(on)
        except ValueError as err:
            raise InvalidInputError(str(err), "e.g. --host 127.0.0.1:11434") from err
        return [(url, ModelManager(url, settings=settings))]
    router = router or _router(settings)
    hosts = [h for h in router.hosts if h.kind == "ollama"]
    engines = [h for h in router.hosts if h.kind == "openai"]
    if engines and not hosts:
        raise NotSupportedError(what, engines[0].name, engines[0].kind)
    up = [h for h in hosts if h.state.up]
    if not up:
        raise NoHostError(having, hosts)
    if having is not None:
        holding = [h for h in up if h.has(having)]
        if not holding:
            from ollang.errors import ModelNotFoundError

            engine_host = _engine_holding(router, having)
            if engine_host is not None:
                raise NotSupportedError(what, engine_host.name, engine_host.kind)
            raise ModelNotFoundError(having, [d.name for d, _ in router.models()])
        up = holding
    return [(h.name, ModelManager(h.name, settings=settings)) for h in up]


def pull_model(settings: Settings, name: str, on: str | None = None) -> int:
    """Pull with per-layer progress bars (rich) on a terminal; status lines otherwise."""
    targets = _managers(settings, on, what="pulling models")
    for url, manager in targets:
        if len(targets) > 1:
            sys.stdout.write(f"{url}:\n")
        _pull_one(manager, name)
    return 0


def _pull_one(manager: ModelManager, name: str) -> None:
    progress_stream = manager.pull(name)
    if not sys.stderr.isatty():
        _statuses(progress_stream)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),  # decimal units, as format_gb and Ollama
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[str, Any] = {}
    with progress:
        for p in progress_stream:
            if p.digest and p.total:
                if p.digest not in tasks:
                    tasks[p.digest] = progress.add_task(f"pulling {p.digest[7:19]}", total=p.total)
                progress.update(tasks[p.digest], completed=p.completed or 0)
            elif p.status:
                if tasks:
                    break  # the layers are done: end the bars before the final statuses
                progress.console.print(p.status, markup=False)
        else:
            return
    # The bars stay where they are; what follows is printed below them, in order.
    console.print(p.status, markup=False)
    for p in progress_stream:
        if p.status:
            console.print(p.status, markup=False)


def show_model(settings: Settings, name: str, as_json: bool, only: str | None = None) -> int:
    """Details of one model (``only``: just its parameters, template, system or license)."""
    router = _router(settings)
    engine = _engine_holding(router, name)
    if engine is not None:  # an engine says only what it serves, and its window
        if only is not None:
            raise NotSupportedError(f"showing a model's {only}", engine.name, engine.kind)
        return _show_served(engine, name, as_json)
    (_, manager), *_ = _managers(settings, None, having=name, router=router)
    d = manager.show(name)
    info = {
        "name": d.name,
        "family": d.family,
        "parameters": d.parameter_size,
        "quantization": d.quantization_level,
        "context_length": d.context_length,
        "capabilities": d.capabilities,
        "template": d.template,
        "model_parameters": d.parameters,
        "system": d.system,
        "license": d.license,
    }
    if only is not None:
        value = {
            "parameters": d.parameters,
            "template": d.template,
            "system": d.system,
            "license": d.license,
        }[only]
        sys.stdout.write((value or f"(no {only})") + "\n")
        return 0
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return 0
    for key in ("name", "family", "parameters", "quantization", "context_length"):
        sys.stdout.write(
            f"{key.replace('_', ' ')}: {info[key] if info[key] is not None else '-'}\n"
        )
    if d.capabilities:
        sys.stdout.write("capabilities: " + ", ".join(d.capabilities) + "\n")
    if d.template:
        sys.stdout.write(
            "template:\n" + "\n".join("  " + line for line in d.template.splitlines()) + "\n"
        )
    return 0


def _show_served(host: Host, name: str, as_json: bool) -> int:
    """What an engine (openai kind) tells of a model it serves: its name and window."""
    info = {
        "name": host.installed_name(name),
        "host": host.name,
        "kind": host.kind,
        "context_length": host.state.models[normalise_model(name)].context_length,
    }
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return 0
    for key, value in info.items():
        sys.stdout.write(f"{key.replace('_', ' ')}: {value if value is not None else '-'}\n")
    return 0


def _on_each(
    settings: Settings,
    on: str | None,
    model: str,
    act: Callable[[ModelManager], None],
    done: str,
    where: str = "on",
    *,
    what: str,
) -> int:
    """``act`` on every host that has ``model`` (or ``--host``), saying ``done`` for each
    (with ``where`` and the host when there are several); ``what`` names the act when a
    host cannot do it."""
    targets = _managers(settings, on, having=None if on else model, what=what)
    for url, manager in targets:
        act(manager)
        suffix = f" {where} {url}" if len(targets) > 1 else ""
        sys.stdout.write(f"{done}{suffix}\n")
    return 0


def remove_model(settings: Settings, name: str, yes: bool, on: str | None = None) -> int:
    """Remove a model after confirming (or with ``--yes``), from every host that has it."""
    if not yes:
        if not sys.stdin.isatty():
            return fail(f"not removing {name} without confirmation", "pass --yes", EXIT_USAGE)
        import typer

        if not typer.confirm(f"Remove model {name}?", default=False):
            sys.stdout.write("kept\n")
            return 0
    return _on_each(
        settings,
        on,
        name,
        lambda m: m.delete(name),
        f"removed {name}",
        "from",
        what="removing models",
    )


def stop_model(settings: Settings, name: str, on: str | None = None) -> int:
    """Unload a model now, on every host that has it (or ``--host``)."""
    return _on_each(
        settings, on, name, lambda m: m.stop(name), f"stopped {name}", what="stopping models"
    )


def copy_model(settings: Settings, source: str, destination: str, on: str | None = None) -> int:
    """Copy a model under a new name, on every host that has it (or ``--host``)."""
    return _on_each(
        settings,
        on,
        source,
        lambda m: m.copy(source, destination),
        f"copied {source} to {destination}",
        what="copying models",
    )


def _statuses(progress: Iterator[PullProgress]) -> None:
    """Progress as status lines (a layer's percentage when it has one), each once."""
    last = None
    for p in progress:
        line = p.status
        if p.total and p.completed is not None:
            line += f" {100 * p.completed // p.total}%"
        if line != last:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
            last = line


def create_model(settings: Settings, name: str, modelfile: str, on: str | None = None) -> int:
    """Create ``name`` from a Modelfile, on every Ollama host that is up (or ``--host``)."""
    targets = _managers(settings, on, what="creating models")
    for url, manager in targets:
        if len(targets) > 1:
            sys.stdout.write(f"{url}:\n")
        _statuses(manager.create_from_modelfile(name, modelfile))
    return 0


def push_model(settings: Settings, name: str, on: str | None = None) -> int:
    """Push ``name`` from the host that has it (``--host`` when several do)."""
    targets = _managers(settings, on, having=None if on else name, what="pushing models")
    if len(targets) > 1:
        hosts = ", ".join(url for url, _ in targets)
        return fail(f"{name} is on several hosts ({hosts})", "choose one with --host", EXIT_USAGE)
    (_, manager), *_ = targets
    _statuses(manager.push(name))
    return 0


def loaded_models(settings: Settings, as_json: bool) -> int:
    """Models loaded in memory, on every Ollama host that is up."""
    targets = _managers(settings, None, what="listing loaded models")
    rows = [(url, m) for url, manager in targets for m in manager.ps()]
    if as_json:
        data = [
            {
                "name": m.name,
                "size": m.size,
                "size_vram": m.size_vram,
                "expires_at": m.expires_at.isoformat() if m.expires_at else None,
                "context_length": m.context_length,
                "host": url,
            }
            for url, m in rows
        ]
        sys.stdout.write(json.dumps({"models": data}, indent=2) + "\n")
        return 0
    if not rows:
        sys.stdout.write("no models loaded\n")
        return 0
    for url, m in rows:
        where = "GPU" if m.size_vram else "CPU"
        until = m.expires_at.strftime("%Y-%m-%d %H:%M:%S") if m.expires_at else "-"
        host = f"  {url}" if len(targets) > 1 else ""
        sys.stdout.write(
            f"{m.name}  {format_gb(m.size)}  {where}  context {m.context_length or '-'}  until {until}{host}\n"
        )
    return 0
