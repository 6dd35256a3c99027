"""Reports of an evaluation: a Markdown summary, and a PNG chart (with matplotlib).

:func:`markdown` is what ``ollang compare --suite --report`` writes and what fits a
pull request or an issue: one table row per model, then each failed check. :func:`plot`
draws the pass rates and speeds side by side; matplotlib is an optional extra
(``pip install 'ollang[eval]'``), imported only here.
"""

from __future__ import annotations

from pathlib import Path

from ollang.errors import InvalidInputError
from ollang.evaluation.runner import Evaluation, ModelSummary

__all__ = ["markdown", "plot"]


def _number(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{format(value, spec)}{unit}"


def _spread(p50: float | None, low: float | None, high: float | None, spec: str) -> str:
    """``p50 (min-max)``, or just ``p50`` when there was one value."""
    if p50 is None:
        return "-"
    if low is None or high is None or format(low, spec) == format(high, spec):
        return format(p50, spec)
    return f"{format(p50, spec)} ({format(low, spec)}-{format(high, spec)})"


def _row(summary: ModelSummary) -> list[str]:
    rate = f"{summary.pass_rate:.0%} ({summary.passed}/{summary.total})"
    if summary.errors:
        rate += f", {summary.errors} error{'s' if summary.errors > 1 else ''}"
    return [
        f"`{summary.model}`",
        rate,
        _spread(summary.ttft_p50_s, summary.ttft_min_s, summary.ttft_max_s, ".2f"),
        _spread(
            summary.tokens_per_s_p50, summary.tokens_per_s_min, summary.tokens_per_s_max, ".1f"
        ),
        _number(summary.load_s, ".1f", " s"),
        summary.fit or "-",
    ]


def _cell(text: str) -> str:
    """Text safe in a Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def markdown(evaluation: Evaluation) -> str:
    """The evaluation as Markdown: a summary table per model, then the failed checks."""
    lines: list[str] = []
    title = f"Evaluation of {evaluation.suite.name}" if evaluation.suite else "Evaluation"
    lines += [f"# {title}", ""]
    if evaluation.started_at:
        lines += [f"Started {evaluation.started_at}.", ""]
    if evaluation.interrupted:
        lines += ["**Interrupted**: the table counts only the runs that finished.", ""]
    header = ["model", "pass rate", "TTFT p50 s (min-max)", "tokens/s p50 (min-max)", "load", "fit"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(_row(m)) + " |" for m in evaluation.models]
    failed = [r for r in evaluation.cases if not r.passed]
    lines += ["", "## Failed checks", ""]
    if not failed:
        lines.append("None: every check passed.")
    for result in failed:
        where = f"**{_cell(result.case)}** on `{result.model}`"
        if any(r.repeat > 1 for r in evaluation.cases):
            where += f" (run {result.repeat})"
        if result.error is not None:
            lines.append(f"- {where}: error: {_cell(result.error)}")
            continue
        for item in result.checks:
            if not item.passed:
                lines.append(f"- {where}: {item.kind}: {_cell(item.detail)}")
    return "\n".join(lines) + "\n"


def plot(evaluation: Evaluation, path: Path) -> None:
    """Draw the pass rate and tokens/s (median) of each model as bars, into a PNG at ``path``.

    Raises:
        InvalidInputError: matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise InvalidInputError(
            "--plot needs matplotlib: pip install 'ollang[eval]'",
            "or leave out --plot",
        ) from err
    names = [m.model for m in evaluation.models]
    # A Figure with its own Agg canvas, not pyplot: no global state, no display needed.
    figure = Figure(figsize=(max(6.0, 1.2 * len(names) + 3), 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    rates, speeds = figure.subplots(1, 2)
    rates.bar(names, [100 * m.pass_rate for m in evaluation.models], color="tab:green")
    rates.set_title("pass rate")
    rates.set_ylabel("%")
    rates.set_ylim(0, 100)
    speeds.bar(names, [m.tokens_per_s_p50 or 0.0 for m in evaluation.models], color="tab:blue")
    speeds.set_title("tokens/s (median)")
    for axes in (rates, speeds):
        axes.tick_params(axis="x", labelrotation=30)
    title = evaluation.suite.name if evaluation.suite else "evaluation"
    figure.suptitle(title + (" (interrupted)" if evaluation.interrupted else ""))
    figure.savefig(path, format="png", dpi=120)
