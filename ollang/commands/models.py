"""``ollang models``: list, pull (with progress), show, rm, ps."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from ollang.chains.manage import format_gb
from ollang.commands.common import cli_settings, model_manager
from ollang.commands.errors import EXIT_USAGE, fail

if TYPE_CHECKING:
    from ollang.chains.router import Router

__all__ = ["list_models", "loaded_models", "pull_model", "remove_model", "show_model"]


def _router() -> Router:
    from ollang.chains.router import Router

    router = Router.from_settings(cli_settings())
    router.check_all_sync()
    return router


def list_models(as_json: bool) -> int:
    """Models on every host that is up (one per line: ``llama3:8b (4.7 GB)``), or a table
    on a terminal; with several hosts, which hosts have each."""
    from ollang.chains.router import NoHostError

    router = _router()
    down = [h for h in router.hosts if not h.state.up and not h.is_embedded]
    if not any(h.state.up for h in router.hosts):
        raise NoHostError(None, down)
    for host in down:
        sys.stderr.write(f"note: {host.name} is not reachable ({host.state.error}); not listed\n")
    rows = [{**details.to_dict(), "hosts": hosts} for details, hosts in router.models()]
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
            sys.stdout.write(f"{r['name']} ({format_gb(r['size'])}){mark}{where}\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    columns = ["name", "size", "family", "parameters", "quantization", "modified", "backend"]
    table = Table(*columns, *(["hosts"] if several else []))
    for r in rows:
        d = r["details"]
        cells = [
            r["name"],
            format_gb(r["size"]),
            d.get("family") or "",
            d.get("parameter_size") or "",
            d.get("quantization_level") or "",
            (r["modified_at"] or "")[:10],
            r["backend"],
        ]
        table.add_row(*cells, *([", ".join(r["hosts"])] if several else []))
    Console().print(table)
    return 0


def pull_model(name: str) -> int:
    """Pull with per-layer progress bars (rich) on a terminal; status lines otherwise."""
    manager = model_manager()
    progress_stream = manager.pull(name)
    if not sys.stderr.isatty():
        last = None
        for p in progress_stream:
            line = p.status
            if p.total and p.completed is not None:
                line += f" {100 * p.completed // p.total}%"
            if line != last:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
                last = line
        return 0
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=False,
    ) as progress:
        tasks: dict[str, Any] = {}
        for p in progress_stream:
            if p.digest and p.total:
                if p.digest not in tasks:
                    tasks[p.digest] = progress.add_task(f"pulling {p.digest[7:19]}", total=p.total)
                progress.update(tasks[p.digest], completed=p.completed or 0)
            elif p.status:
                progress.console.print(p.status, markup=False)
    return 0


def show_model(name: str, as_json: bool) -> int:
    """Details of one model."""
    d = model_manager().show(name)
    info = {
        "name": d.name,
        "family": d.family,
        "parameters": d.parameter_size,
        "quantization": d.quantization_level,
        "context_length": d.context_length,
        "capabilities": d.capabilities,
        "template": d.template,
    }
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


def remove_model(name: str, yes: bool) -> int:
    """Remove a model after confirming (or with ``--yes``)."""
    if not yes:
        if not sys.stdin.isatty():
            return fail(f"not removing {name} without confirmation", "pass --yes", EXIT_USAGE)
        import typer

        if not typer.confirm(f"Remove model {name}?", default=False):
            sys.stdout.write("kept\n")
            return 0
    model_manager().delete(name)
    sys.stdout.write(f"removed {name}\n")
    return 0


def loaded_models(as_json: bool) -> int:
    """Models loaded in memory."""
    rows = model_manager().ps()
    if as_json:
        data = [
            {
                "name": m.name,
                "size": m.size,
                "size_vram": m.size_vram,
                "expires_at": m.expires_at.isoformat() if m.expires_at else None,
                "context_length": m.context_length,
            }
            for m in rows
        ]
        sys.stdout.write(json.dumps({"models": data}, indent=2) + "\n")
        return 0
    if not rows:
        sys.stdout.write("no models loaded\n")
        return 0
    for m in rows:
        where = "GPU" if m.size_vram else "CPU"
        until = m.expires_at.strftime("%Y-%m-%d %H:%M:%S") if m.expires_at else "-"
        sys.stdout.write(
            f"{m.name}  {format_gb(m.size)}  {where}  context {m.context_length or '-'}  until {until}\n"
        )
    return 0
