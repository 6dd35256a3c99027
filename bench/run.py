"""Run every benchmark and write ``bench/results.json``, ``bench/results.md`` and plots.

Usage::

    python bench/run.py            # the full run (about 10 minutes on 2 cores)
    python bench/run.py --quick    # under 2 minutes: smaller sizes, fewer runs
    python bench/run.py --only memory_bench,ttft_bench

Each benchmark module runs in its own Python process (see ``bench/_util.py`` for
the ``run(quick) -> list[dict]`` contract); modules that are not there yet are
skipped with a note. Every figure is a median of several runs, set beside its
anchor measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import BENCH_DIR, ModuleOutcome, Row, log, run_module

#: (module, what it measures), in running order. Colleagues' modules included:
#: they are run when present and skipped with a note when not.
MODULES: tuple[tuple[str, str], ...] = (
    ("memory_bench", "memory: per-turn cost and disk use"),
    ("stream_bench", "streaming throughput"),
    ("ttft_bench", "time to first token added by history"),
    ("server_bench", "HTTP server under 200 concurrent streams"),
    ("cli_startup", "CLI start-up time"),
    ("embedded_bench", "embedded llama.cpp backend"),
    ("pg_bench", "PostgreSQL: per-turn cost, disk, replicas behind nginx, many writers"),
    ("routing_bench", "several Ollama hosts: session affinity, a host killed under load"),
    ("fit_bench", "memory estimate vs llama.cpp's allocations and published ollama ps sizes"),
    ("models_list_bench", "ollang models with 30 models: /api/show cached per digest"),
)
TIMEOUT_S = {True: 300.0, False: 1800.0}
VERSIONS_OF = (
    "langchain-core",
    "langchain-ollama",
    "ollama",
    "langgraph",
    "langgraph-checkpoint-sqlite",
    "langchain-community",
    "httpx",
    "psycopg",  # pg_bench
    "langchain-postgres",
    "langgraph-checkpoint-postgres",
)
PLOTS = BENCH_DIR / "plots"


def machine() -> dict[str, Any]:
    """Facts about this machine that the figures depend on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    versions: dict[str, str] = {"sqlite": sqlite3.sqlite_version}
    for dist in VERSIONS_OF:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


# -- formatting ------------------------------------------------------------------------


def fmt(value: Any, unit: str = "") -> str:
    """A number for the table: thousands separators, sensible precision."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        magnitude = abs(value)
        if magnitude >= 1000:
            text = f"{value:,.0f}"
        elif magnitude >= 100:
            text = f"{value:.0f}"
        elif magnitude >= 10:
            text = f"{value:.1f}"
        else:
            text = f"{value:.2f}"
        return f"{text} {unit}".rstrip() if unit else text
    return str(value)


def verdict(passed: bool | None) -> str:
    return {True: "pass", False: "**FAIL**", None: "—"}[passed]


def cell(text: Any) -> str:
    return str(text).replace("|", "\\|")


def summary_table(rows: list[Row]) -> list[str]:
    lines = [
        "| What | ollang (median) | Anchor, same run | Anchor (median) | Ratio | Goal | Result "
        "| Runs | Note |",
        "|---|---:|---|---:|---:|---|---|---:|---|",
    ]
    for r in rows:
        unit = r.get("unit") or ""
        lines.append(
            "| "
            + " | ".join(
                cell(x)
                for x in (
                    f"{r.get('group')}: {r.get('name')}",
                    fmt(r.get("value"), unit),
                    r.get("anchor") or "—",
                    fmt(r.get("anchor_value"), unit),
                    fmt(r.get("ratio")),
                    r.get("goal") or "—",
                    verdict(r.get("passed")),
                    r.get("runs") if r.get("runs") is not None else "—",
                    r.get("note") or "",
                )
            )
            + " |"
        )
    return lines


def memory_details(rows: list[Row]) -> dict[str, Any] | None:
    for r in rows:
        details = r.get("details")
        if r.get("group") == "memory" and isinstance(details, dict) and "per_turn_ms" in details:
            return details
    return None


def memory_tables(details: dict[str, Any]) -> list[str]:
    sizes = details["sizes"]
    lines = [
        "### Memory: per-turn cost (ms, median) by messages already stored",
        "",
        "| Memory | " + " | ".join(f"{n:,}" for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for name, series in details["per_turn_ms"].items():
        stopped = details.get("stopped", {}).get(name)
        values = [
            fmt(series.get(str(n))) if str(n) in series else (stopped or "not run") for n in sizes
        ]
        lines.append(f"| {cell(name)} | " + " | ".join(cell(v) for v in values) + " |")
    sent = {name: counts for name, counts in (details.get("sent") or {}).items() if counts}
    if sent:
        lines += [
            "",
            "Messages the model received per turn (system prompt and new message included):",
            "",
            "| Memory | " + " | ".join(f"{n:,}" for n in sizes) + " |",
            "|---|" + "---:|" * len(sizes),
        ]
        for name, counts in sent.items():
            values = [f"{counts[str(n)]:,}" if str(n) in counts else "—" for n in sizes]
            lines.append(f"| {cell(name)} | " + " | ".join(values) + " |")
    grown = details.get("disk_grown") or {}
    if grown:
        turns = next(iter(grown.values()))["turns"]
        lines += [
            "",
            f"### Memory: disk use after a conversation of {turns} turns, grown turn by turn",
            "",
            "| Memory | Messages | Text (UTF-8) | On disk | Disk / text | Time for all turns |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, d in grown.items():
            lines.append(
                f"| {cell(name)} | {d['messages']:,} | {d['text_bytes'] / 2**20:.2f} MiB | "
                f"{d['disk_bytes'] / 2**20:.2f} MiB | {d['disk_bytes'] / d['text_bytes']:.2f}x | "
                f"{d['seconds']:.1f} s |"
            )
    at_n = details.get("disk_at_largest") or {}
    if at_n:
        lines += [
            "",
            f"ollang at {at_n['messages']:,} stored messages: "
            f"{at_n['disk_bytes'] / 2**20:.2f} MiB on disk for "
            f"{at_n['text_bytes'] / 2**20:.2f} MiB of text "
            f"({at_n['disk_bytes'] / at_n['text_bytes']:.2f}x).",
        ]
    return lines


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    rows: list[Row] = report["rows"]
    command = "python bench/run.py" + (" --quick" if report["quick"] else "")
    lines = [
        "# ollang benchmarks",
        "",
        f"`{command}` on {report['started']}: {m['nproc']} x {m['cpu']}, Python {m['python']}, "
        f"load average {m['load_avg_at_start'][0]} at start, "
        f"{m.get('load_avg_at_end', ['?'])[0]} at the end; took {report['seconds']:.0f} s. "
        "Every figure is a median of several runs; every anchor was measured in the same run.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()) + ".",
        "",
        *summary_table(rows),
        "",
    ]
    notes = [o for o in report["modules"] if o["note"]]
    if notes:
        lines += ["Modules not (fully) run:", ""]
        lines += [f"- `bench/{o['module']}.py`: {o['note']}" for o in notes]
        lines.append("")
    details = memory_details(rows)
    if details:
        lines += [*memory_tables(details), ""]
    plots = report.get("plots") or []
    if plots:
        lines += ["Plots: " + ", ".join(f"[{Path(p).name}]({p})" for p in plots), ""]
    return "\n".join(lines)


# -- plots -------------------------------------------------------------------------------


def plot_memory(details: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, series in details["per_turn_ms"].items():
        points = sorted((int(n), ms) for n, ms in series.items())
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        style = "--" if "store only" in name else "-"
        (line,) = ax.plot(xs, ys, style, marker="o", label=name)
        stopped = details.get("stopped", {}).get(name)
        if stopped:
            ax.annotate(
                "larger sizes not run: too slow",
                (xs[-1], ys[-1]),
                textcoords="offset points",
                xytext=(6, -12),
                fontsize=8,
                color=line.get_color(),
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(details["sizes"], [f"{n:,}" for n in details["sizes"]])
    ax.set_xlabel("messages already stored in the session (log scale)")
    ax.set_ylabel("cost of one chat turn, ms (median, log scale)")
    ax.set_title("Per-turn cost of the memory vs stored history")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_streaming(rows: list[Row], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    details = next(
        (r["details"] for r in rows if r.get("group") == "streaming" and r.get("details")), None
    )
    if not details:
        return False
    labels = {
        "raw": "raw ollama client",
        "bare": "bare ChatOllama.stream()",
        "chain": "ollang chat chain",
    }
    rates = details["chunks_per_s"]
    names = [n for n in ("raw", "bare", "chain") if rates.get(n)]
    medians = [sorted(rates[n])[len(rates[n]) // 2] for n in names]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bars = ax.bar([labels[n] for n in names], medians, color=["#999999", "#4c72b0", "#dd8452"])
    for bar, value in zip(bars, medians, strict=True):
        ax.annotate(
            f"{value:,.0f}/s",
            (bar.get_x() + bar.get_width() / 2, value),
            ha="center",
            va="bottom",
            fontsize=9,
        )
    if "bare" in rates:
        goal = 0.8 * medians[names.index("bare")]
        ax.axhline(goal, color="red", linestyle="--", linewidth=1)
        ax.annotate(
            "goal: 0.8 x bare ChatOllama",
            (len(names) - 0.5, goal),
            xytext=(-4, 4),
            textcoords="offset points",
            ha="right",
            color="red",
            fontsize=8,
        )
    ax.yaxis.set_major_formatter(lambda value, _pos: f"{value:,.0f}")
    ax.set_ylabel("answer chunks per second (median)")
    ax.set_title(f"Streaming {details['tokens']:,} tiny chunks from a local Ollama-format server")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_server(rows: list[Row], path: Path) -> bool:
    """TTFT distributions (empirical CDFs, log x) of each server load: ollang vs the stub."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loads = [
        r["details"]
        for r in rows
        if r.get("group") == "server" and r.get("details") and r["details"].get("ttft_ms")
    ]
    if not loads:
        return False
    fig, ax = plt.subplots(figsize=(8, 5.5))
    colors = ["#dd8452", "#c44e52", "#8172b3"]
    for load, color in zip(loads, colors, strict=False):
        label = f"{load['rate']:g} tok/s per stream, {load.get('workers', 1)} process(es)"
        for kind, style in (("ollang", "-"), ("direct", ":")):
            values = sorted(load["ttft_ms"][kind])
            if not values:
                continue
            ys = [(i + 1) / len(values) for i in range(len(values))]
            name = "ollang /chat/stream" if kind == "ollang" else "stub directly"
            ax.plot(values, ys, style, color=color, label=f"{name} ({label})")
    goal = loads[0]
    direct99 = goal["direct"]["p99_ms"] or 0
    ax.axvline(direct99 + 50, color="red", linestyle="--", linewidth=1)
    ax.annotate(
        "goal: p99 within 50 ms of the stub's",
        (direct99 + 50, 0.5),
        xytext=(4, 0),
        textcoords="offset points",
        color="red",
        fontsize=8,
    )
    ax.axhline(0.99, color="grey", linewidth=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("time to first token (ms, log scale)")
    ax.set_ylabel("fraction of turns")
    ax.set_title(f"Server: TTFT with {goal['clients']} concurrent streaming clients")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return True


def make_plots(rows: list[Row]) -> list[str]:
    """Write the plots the rows allow; returns their paths relative to ``bench/``."""
    PLOTS.mkdir(exist_ok=True)
    made: list[str] = []
    details = memory_details(rows)
    if details:
        plot_memory(details, PLOTS / "memory_per_turn.png")
        made.append("plots/memory_per_turn.png")
    if plot_streaming(rows, PLOTS / "streaming.png"):
        made.append("plots/streaming.png")
    if plot_server(rows, PLOTS / "server_ttft.png"):
        made.append("plots/server_ttft.png")
    return made


# -- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run under two minutes")
    parser.add_argument(
        "--only", default="", help="comma-separated module names (default: all of them)"
    )
    args = parser.parse_args(argv)
    wanted = [m for m in args.only.split(",") if m]
    known = [name for name, _ in MODULES]
    unknown = [m for m in wanted if m not in known]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(known)}")

    started = time.perf_counter()
    report: dict[str, Any] = {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "machine": machine(),
    }
    outcomes: list[ModuleOutcome] = []
    for name, what in MODULES:
        if wanted and name not in wanted:
            continue
        log(f"== {name}: {what}{' (quick)' if args.quick else ''}")
        outcome = run_module(name, args.quick, TIMEOUT_S[args.quick])
        log(
            f"   {len(outcome.rows)} rows in {outcome.seconds:.1f} s"
            + (f"; {outcome.note}" if outcome.note else "")
        )
        outcomes.append(outcome)

    rows = [r for o in outcomes for r in o.rows]
    report["seconds"] = time.perf_counter() - started
    report["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["modules"] = [
        {"module": o.module, "seconds": round(o.seconds, 1), "rows": len(o.rows), "note": o.note}
        for o in outcomes
    ]
    report["rows"] = rows
    try:
        report["plots"] = make_plots(rows)
    except ImportError as err:  # matplotlib is in the `bench` extra
        log(f"no plots: {err} (pip install -e '.[bench]')")
        report["plots"] = []

    (BENCH_DIR / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = markdown(report)
    (BENCH_DIR / "results.md").write_text(text + "\n")
    print(text)
    failed = [r for r in rows if r.get("passed") is False]
    log(f"done in {report['seconds']:.0f} s: {len(rows)} figures, {len(failed)} goals missed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
