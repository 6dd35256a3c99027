"""``ollang compare``: several models side by side, on one prompt or on a suite.

With a prompt (:func:`run_compare`), each model's answer streams under a header, then a
table of speed and length. With ``--suite`` (:func:`run_suite`), an evaluation
(:mod:`ollang.evaluation`): every case on every model, checked and timed, summed up per
model, kept in the data directory for ``ollang recommend``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ollang.commands.common import build_model, parse_options
from ollang.commands.errors import EXIT_INTERRUPTED
from ollang.commands.render import StreamPrinter
from ollang.errors import (
    InvalidInputError,
    ModelNotFoundError,
    OllamaUnavailableError,
    OllangError,
)
from ollang.settings import Settings

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from ollang.catalog import ModelFacts
    from ollang.evaluation import Evaluation, Progress
    from ollang.routing.backend import RoutedModel

__all__ = ["open_models", "run_compare", "run_suite"]


def run_compare(
    settings: Settings,
    prompt: str,
    models: list[str],
    *,
    system: str | None,
    options: list[str],
    backend: str | None,
) -> int:
    """Stream each model's answer under a header, then a table of TTFT, tokens/s and length.

    A missing model gives an error row and the others still run; the exit code is
    4 if any model was missing, 1 if any other failed, else 0.
    """
    from ollang.chains import build_chat_chain
    from ollang.memory import InMemoryChatStore

    if not prompt.strip():
        raise OllangError("the prompt is empty", "")
    opts = parse_options(options)
    rows: list[dict[str, Any]] = []
    for name in models:
        sys.stdout.write(f"\n=== {name} ===\n")
        sys.stdout.flush()
        printer = StreamPrinter(markdown=False)
        try:
            chain = build_chat_chain(
                build_model(settings, backend, name, opts).model,
                store=InMemoryChatStore(),
                system=system,
            )
            result = None
            with closing(
                chain.stream_turn(prompt, {"configurable": {"session_id": "compare"}})
            ) as events:
                for event in events:
                    if event.type == "token":
                        printer.token(event.text)
                    elif event.type == "done":
                        result = event.result
            printer.finish()
            assert result is not None
            rows.append({"model": name, "result": result})
        except OllamaUnavailableError:
            raise
        except OllangError as err:
            printer.finish()
            sys.stderr.write(f"error: {err.message}\n")
            rows.append({"model": name, "error": err})
    _table(rows)
    if any(isinstance(r.get("error"), ModelNotFoundError) for r in rows):
        return 4
    return 1 if any("error" in r for r in rows) else 0


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(rows: list[dict[str, Any]]) -> None:
    header = ["model", "ttft (s)", "tokens/s", "tokens", "chars"]
    body = []
    for r in rows:
        if "error" in r:
            body.append([r["model"], "error", r["error"].message, "", ""])
            continue
        res = r["result"]
        body.append(
            [
                r["model"],
                _fmt(res.timings.ttft_s, ".2f"),
                _fmt(res.timings.tokens_per_s, ".1f"),
                str(res.usage.output_tokens if res.usage.output_tokens is not None else "-"),
                str(len(res.text)),
            ]
        )
    _print_table(header, body, "comparison")


def _print_table(header: list[str], body: list[list[str]], title: str) -> None:
    """A table on stdout: rich on a terminal, Markdown on a pipe."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*header, title=title)
        for row in body:
            table.add_row(*row)
        Console().print(table)
        return
    sys.stdout.write("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n")
    for row in body:
        sys.stdout.write("| " + " | ".join(row) + " |\n")


# -- ollang compare --suite: an evaluation ---------------------------------------------


def run_suite(
    settings: Settings,
    suite_path: Path,
    models: list[str],
    *,
    repeat: int,
    judge: str | None,
    report: Path | None,
    plot_path: Path | None,
    as_json: bool,
    system: str | None,
    options: list[str],
    backend: str | None,
) -> int:
    """Run the suite at ``suite_path`` on ``models``: progress on stderr, the summary on
    stdout (or its JSON), the report and chart when asked, the run kept for ``recommend``.

    Everything that can be refused is refused before the first model request: the suite
    (exit 2, naming file:line: field), ``repeat`` < 1 or rubric assertions without a judge
    (exit 2), a model or judge that is not installed (exit 4, with the pull hint).

    Returns:
        0 when the evaluation ran (failed checks are results), 1 when every run failed
        with an error, 130 when Ctrl-C stopped it (the finished runs are kept).
    """
    from ollang.evaluation import load_suite, run_evaluation, save_run

    if repeat < 1:
        raise InvalidInputError(f"--repeat must be at least 1, got {repeat}", "e.g. --repeat 3")
    _check_outputs(report, plot_path)
    models = list(dict.fromkeys(models))
    suite = load_suite(suite_path)
    if system is not None:  # the suite's own system prompts win over --system
        suite = replace(
            suite,
            cases=tuple(c if c.system else replace(c, system=system) for c in suite.cases),
        )
    if suite.needs_judge and judge is None:
        raise InvalidInputError(
            f"{suite_path}: the suite has rubric assertions but no judge model",
            "name one with --judge MODEL, or drop the rubric assertions",
        )
    opts = parse_options(options)
    opened = open_models(settings, backend, models, opts)
    judge_model = open_models(settings, backend, [judge], {})[judge].model if judge else None
    fits = model_fits(settings, opened, opts.get("num_ctx"))  # before the runs load them
    total = len(models) * len(suite.cases) * repeat
    progress = _ProgressDisplay(total, len(suite.cases) * repeat)
    with progress:
        evaluation = run_evaluation(
            suite,
            models,
            lambda name: cast("BaseChatModel", opened[name].model),
            repeat=repeat,
            judge=cast("BaseChatModel | None", judge_model),
            on_progress=progress.update,
        )
    for summary in evaluation.models:
        summary.fit = fits.get(summary.model)
    save_run(evaluation, settings.home)
    _write_outputs(evaluation, as_json=as_json, report=report, plot_path=plot_path)
    if evaluation.interrupted:
        sys.stderr.write(f"interrupted: {len(evaluation.cases)} of {total} runs finished, kept\n")
        return EXIT_INTERRUPTED
    if evaluation.cases and all(r.error is not None for r in evaluation.cases):
        return 1
    return 0


def _check_outputs(report: Path | None, plot_path: Path | None) -> None:
    """Refuse, before an evaluation that may take an hour, outputs that could not be written.

    Raises:
        InvalidInputError: a missing directory, or --plot without matplotlib.
    """
    for option, path in (("--report", report), ("--plot", plot_path)):
        if path is not None and not path.resolve().parent.is_dir():
            raise InvalidInputError(
                f"{option} {path}: no directory {path.resolve().parent}", "create it first"
            )
    if plot_path is not None:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise InvalidInputError(
                "--plot needs matplotlib: pip install 'ollang[eval]'", "or leave out --plot"
            )


def _write_outputs(
    evaluation: Evaluation, *, as_json: bool, report: Path | None, plot_path: Path | None
) -> None:
    """The summary table (or the JSON) on stdout; the report and the chart when asked."""
    from ollang.evaluation import markdown, plot

    if as_json:
        sys.stdout.write(json.dumps(evaluation.to_json(), ensure_ascii=False, indent=2) + "\n")
    else:
        _summary(evaluation)
    if report is not None:
        report.write_text(markdown(evaluation), encoding="utf-8")
    if plot_path is not None:
        plot(evaluation, plot_path)


def open_models(
    settings: Settings, backend: str | None, names: Sequence[str], options: dict[str, Any]
) -> dict[str, RoutedModel]:
    """A chat model per name over the configured hosts, each checked to be installed.

    Raises:
        ModelNotFoundError: a model is not installed (the first such, with the pull hint).
        OllamaUnavailableError: no host that could run it is up.
    """
    return {name: build_model(settings, backend, name, options) for name in dict.fromkeys(names)}


def model_fits(
    settings: Settings, routed: dict[str, RoutedModel], ctx: int | None
) -> dict[str, str]:
    """Where each model runs on this machine, as ``ollama ps`` says it (``100% GPU``...).

    Only for models whose first host is this machine (a loopback address, or the
    embedded backend): this machine's memory says nothing of another's. A model whose
    facts cannot be read (no header, a failed ``/api/show``) has none.
    """
    from ollang.catalog import this_machine

    local = {name: r.hosts[0] for name, r in routed.items() if r.hosts and _is_local(r.hosts[0])}
    if not local:
        return {}
    machine = this_machine()
    fits: dict[str, str] = {}
    for name, host in local.items():
        try:
            facts = _facts(settings, host, name)
            found = facts.fit(machine, ctx) if facts is not None else None
        except OllangError:
            found = None
        if found is not None:
            fits[name] = found.processor()
    return fits


def _is_local(host: str) -> bool:
    """Whether ``host`` (a base URL, or ``embedded``) runs on this machine."""
    import ipaddress
    from urllib.parse import urlsplit

    from ollang.settings import EMBEDDED_HOST

    if host == EMBEDDED_HOST:
        return True
    name = urlsplit(host).hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _facts(settings: Settings, host: str, name: str) -> ModelFacts | None:
    """The catalogue's facts of ``name`` on ``host`` (cached per digest in the data dir)."""
    from ollang.catalog import FactsCache, facts_from_gguf, gather_facts
    from ollang.settings import EMBEDDED_HOST
    from ollang.transport.manage import ModelManager, normalise_model

    if host == EMBEDDED_HOST:
        from ollang.embedded.gguf import resolve_embedded_model

        return facts_from_gguf(name, resolve_embedded_model(name, settings).path)
    manager = ModelManager(host, settings=settings)
    wanted = normalise_model(name)
    listed = [d for d in manager.list() if normalise_model(d.name) == wanted]
    if not listed:
        return None
    return gather_facts(manager, listed[:1], FactsCache(settings.home)).get(listed[0].name)


class _ProgressDisplay:
    """Progress on stderr: a rich bar on a terminal, else one line per finished model."""

    def __init__(self, total: int, per_model: int) -> None:
        self.total = total
        self.per_model = per_model
        self.bar: Any = None
        self.task: Any = None
        self.passed: dict[str, int] = {}
        self.runs: dict[str, int] = {}
        self.errors: dict[str, int] = {}

    def __enter__(self) -> _ProgressDisplay:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("evaluating", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, progress: Progress) -> None:
        """Count one finished run; show it."""
        result = progress.result
        name = progress.model
        self.runs[name] = self.runs.get(name, 0) + 1
        self.passed[name] = self.passed.get(name, 0) + int(result.passed)
        self.errors[name] = self.errors.get(name, 0) + int(result.error is not None)
        if self.bar is not None:
            self.bar.update(
                self.task, completed=progress.done, description=f"{name}: {result.case}"
            )
            return
        if self.runs[name] == self.per_model:
            errors = self.errors[name]
            line = f"{name}: {self.passed[name]}/{self.per_model} passed"
            line += f", {errors} error{'s' if errors != 1 else ''}" if errors else ""
            sys.stderr.write(line + f" ({progress.done}/{progress.total} runs)\n")
            sys.stderr.flush()


def _spread(p50: float | None, low: float | None, high: float | None, spec: str) -> str:
    """``p50 (min-max)``, or just ``p50`` when the runs agree."""
    if p50 is None:
        return "-"
    if low is None or high is None or format(low, spec) == format(high, spec):
        return format(p50, spec)
    return f"{format(p50, spec)} ({format(low, spec)}-{format(high, spec)})"


def _summary(evaluation: Evaluation) -> None:
    """The table per model on stdout (rich on a terminal, Markdown otherwise), then the
    failed checks."""
    header = ["model", "pass rate", "ttft p50 s (min-max)", "tokens/s p50 (min-max)", "load", "fit"]
    body = []
    for m in evaluation.models:
        rate = f"{m.pass_rate:.0%} ({m.passed}/{m.total})"
        if m.errors:
            rate += f", {m.errors} error{'s' if m.errors > 1 else ''}"
        body.append(
            [
                m.model,
                rate,
                _spread(m.ttft_p50_s, m.ttft_min_s, m.ttft_max_s, ".2f"),
                _spread(m.tokens_per_s_p50, m.tokens_per_s_min, m.tokens_per_s_max, ".1f"),
                "-" if m.load_s is None else f"{m.load_s:.1f} s",
                m.fit or "-",
            ]
        )
    _print_table(header, body, "evaluation")
    failed = [r for r in evaluation.cases if not r.passed]
    if failed:
        sys.stdout.write("\nfailed:\n")
    for r in failed:
        where = f"  {r.case} on {r.model}" + (f" (run {r.repeat})" if r.repeat > 1 else "")
        if r.error is not None:
            sys.stdout.write(f"{where}: error: {r.error}\n")
            continue
        for c in r.checks:
            if not c.passed:
                sys.stdout.write(f"{where}: {c.kind}: {' '.join(c.detail.split())}\n")
