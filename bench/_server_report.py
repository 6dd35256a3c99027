"""The server benchmark's systems, loads and report: figures, rows, tables, the plot.

Used by ``bench/server_bench.py`` (see its docstring for what is measured): the raw phase
records of a run go in, the bench runner's rows, the Markdown tables and
``bench/plots/server_ttft.png`` come out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _util import median, percentile, row

LITELLM_VERSION = "1.108.7"


# Goals (issue 17).
GOAL_B_P99_MS = 50.0
GOAL_A_P99_MS = 10.0
GOAL_CPU_RATIO = 0.3
# The split's pacing: fast, yet each token its own write (unpaced, the fake sends a whole
# answer in one write, and the per-token cost of reading them one by one is not seen).
SPLIT_RATE = 1000.0


@dataclass(frozen=True)
class Load:
    """A client pattern and the fake's pacing."""

    key: str
    clients: int
    tokens: int
    rate: float  # tokens/s of each answer; 0: as fast as possible
    turns: int  # per client, back to back
    ramp: float = 1.0

    @property
    def label(self) -> str:
        pace = f"{self.rate:g} tok/s" if self.rate else "unpaced"
        return f"{self.clients} clients x {self.turns} turns, {self.tokens} tok at {pace}"

    def timeout(self) -> float:
        per_turn = self.tokens / self.rate if self.rate else 0.05
        return 20.0 + 3.0 * (self.ramp + self.turns * per_turn)


@dataclass(frozen=True)
class System:
    """One system under test: which server process, which route and dialect."""

    key: str
    label: str
    server: str | None  # None: the fake itself
    path: str
    dialect: str
    slow: bool = False  # the peers far from the goal: fewer rounds in the full run


SYSTEMS: tuple[System, ...] = (
    System("direct", "fake Ollama directly", None, "/api/chat", "ndjson"),
    System("ollang", "ollang /chat/stream", "ollang", "/chat/stream", "events"),
    System(
        "ollang_openai", "ollang /v1/chat/completions", "ollang", "/v1/chat/completions", "openai"
    ),
    System("ollang_ollama", "ollang /api/chat", "ollang", "/api/chat", "ndjson"),
    System("bare", "bare FastAPI + ChatOllama", "bare", "/chat/stream", "events"),
    System("tutorial", "tutorial server, async", "tutorial", "/chat/stream", "events", slow=True),
    System(
        "litellm",
        f"LiteLLM proxy {LITELLM_VERSION}",
        "litellm",
        "/v1/chat/completions",
        "openai",
        slow=True,
    ),
)
BY_KEY = {s.key: s for s in SYSTEMS}
OLLANG_SYSTEMS = ("ollang", "ollang_openai", "ollang_ollama")


# -- figures -----------------------------------------------------------------------------------
def _round_figures(rec: dict[str, Any]) -> dict[str, float | None]:
    """One phase's TTFT percentiles, CPU per token and tokens/s."""
    ttft, tokens, cpu = rec["ttft_ms"], rec["tokens_delivered"], rec.get("cpu_s")
    return {
        "p50_ms": percentile(ttft, 50) if ttft else None,
        "p99_ms": percentile(ttft, 99) if ttft else None,
        "cpu_us_per_token": cpu / tokens * 1e6 if cpu is not None and tokens else None,
        "tok_per_s": tokens / rec["seconds"] if rec["seconds"] else None,
    }


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return median(known) if known else None


def summarize(raw: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per load key, per system: the median over rounds of each round's figure.

    A round's "added" is its percentile minus the fake direct's in the same round (the
    pooled direct one when that round has none). ``pooled_*``: over every round's turns.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for rec in raw["phases"]:
        load = rec["load"]
        fig = out.setdefault(load, {}).setdefault(rec["system"], {"phases": 0})
        if rec.get("skipped"):
            fig["skipped"] = rec["skipped"]
            continue
        fig["phases"] += 1
        fig.setdefault("ttft_ms", []).extend(rec["ttft_ms"])
        fig.setdefault("rounds", {})[rec["round"]] = _round_figures(rec)
        for key in ("tokens_delivered", "completed", "accepted", "errors", "seconds"):
            fig[key] = fig.get(key, 0) + rec[key]
        for key in ("cpu_s", "stored", "stored_expected"):
            if key in rec:
                fig[key] = fig.get(key, 0) + rec[key]
        if "rss_mb" in rec:
            fig["rss_mb"] = max(fig.get("rss_mb", 0.0), rec["rss_mb"])
        fig.setdefault("error_samples", []).extend(rec["error_samples"][:2])
        fig["clients"], fig["turns"] = rec["clients"], rec["turns"]
    for systems in out.values():
        for fig in systems.values():
            ttft = fig.get("ttft_ms") or []
            fig["pooled_p50_ms"] = percentile(ttft, 50) if ttft else None
            fig["pooled_p99_ms"] = percentile(ttft, 99) if ttft else None
            rounds = fig.get("rounds", {})
            for key in ("p50_ms", "p99_ms", "cpu_us_per_token", "tok_per_s"):
                fig[key] = _median([r[key] for r in rounds.values()])
            fig["error_samples"] = fig.get("error_samples", [])[:4]
        direct = systems.get("direct", {})
        floor_rounds = direct.get("rounds", {})
        for fig in systems.values():
            for q in ("p50", "p99"):
                added = []
                for r, figs in fig.get("rounds", {}).items():
                    floor = floor_rounds.get(r, {}).get(f"{q}_ms", direct.get(f"pooled_{q}_ms"))
                    mine = figs[f"{q}_ms"]
                    added.append(mine - floor if mine is not None and floor is not None else None)
                fig[f"added_{q}_ms"] = _median(added)
    return out


def split_figures(summary: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """CPU per turn (ms) and per token (µs) from the split's 1- and 41-token phases."""
    result: dict[str, dict[str, float | None]] = {}
    one, many = summary.get("split1", {}), summary.get("split41", {})
    for key in set(one) & set(many):
        a, b = one[key], many[key]
        if not a.get("completed") or not b.get("completed") or a.get("cpu_s") is None:
            continue
        per_turn_1 = a["cpu_s"] / (a["completed"] + a["errors"])
        per_turn_41 = b["cpu_s"] / (b["completed"] + b["errors"])
        result[key] = {
            "cpu_ms_per_turn": per_turn_1 * 1e3,
            "cpu_us_per_token": (per_turn_41 - per_turn_1) / 40 * 1e6,
            "turns": a["completed"] + b["completed"],
        }
    return result


def _fig(summary: dict[str, Any], load: str, system: str, key: str) -> Any:
    return summary.get(load, {}).get(system, {}).get(key)


def rows_from(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for the bench runner's table (``bench/_util.py``), goals first."""
    s = summarize(raw)
    rounds = raw["plan"]["rounds"]
    rows: list[dict[str, Any]] = []
    bare_cpu_b = _fig(s, "B", "bare", "cpu_us_per_token")
    for key in OLLANG_SYSTEMS:
        label = BY_KEY[key].label
        if key not in raw["systems"]:
            continue
        errors_b = _fig(s, "B", key, "errors")
        if "B" in s and errors_b is not None:
            rows.append(
                row(
                    "server",
                    f"{label}, load B (200 clients, 20 tok @5/s): errors",
                    errors_b,
                    "count",
                    "fake direct errors",
                    _fig(s, "B", "direct", "errors"),
                    goal="0",
                    passed=errors_b == 0,
                    runs=rounds,
                )
            )
        for load, goal_ms in (("B", GOAL_B_P99_MS), ("A", GOAL_A_P99_MS)):
            added = _fig(s, load, key, "added_p99_ms")
            if load not in s or _fig(s, load, key, "phases") is None:
                continue
            rows.append(
                row(
                    "server",
                    f"{label}, load {load}: added TTFT p99",
                    added,
                    "ms",
                    "fake direct TTFT p99",
                    _fig(s, load, "direct", "p99_ms"),
                    goal=f"<= {goal_ms:g} ms",
                    passed=added is not None and added <= goal_ms,
                    runs=rounds,
                    note=_fig(s, load, key, "skipped"),
                )
            )
        cpu = _fig(s, "B", key, "cpu_us_per_token")
        if "B" in s:
            ratio_ok = cpu is not None and bare_cpu_b is not None
            rows.append(
                row(
                    "server",
                    f"{label}, load B: server CPU per token",
                    cpu,
                    "µs/token",
                    "bare FastAPI + ChatOllama",
                    bare_cpu_b,
                    goal=f"ratio <= {GOAL_CPU_RATIO:g}",
                    passed=ratio_ok and cpu / bare_cpu_b <= GOAL_CPU_RATIO,
                    runs=rounds,
                )
            )
        tps, bare_tps = _fig(s, "C", key, "tok_per_s"), _fig(s, "C", "bare", "tok_per_s")
        if "C" in s:
            rows.append(
                row(
                    "server",
                    f"{label}, load C (200 clients, 50 tok @50/s): tokens/s served",
                    tps,
                    "tok/s",
                    "bare FastAPI + ChatOllama",
                    bare_tps,
                    goal="ratio >= 1",
                    passed=tps is not None and bare_tps is not None and tps >= bare_tps,
                    runs=rounds,
                )
            )
    stored, expected = 0, 0
    for figs in s.values():
        fig = figs.get("ollang", {})
        stored += fig.get("stored", 0)
        expected += fig.get("stored_expected", 0)
    if expected:
        rows.append(
            row(
                "server",
                "ollang /chat/stream: messages stored (2 per accepted turn)",
                stored,
                "count",
                "expected",
                expected,
                goal="all stored",
                passed=stored == expected,
                runs=rounds,
            )
        )
    # The peers, reported.
    for key in ("bare", "tutorial", "litellm"):
        if key not in raw["systems"] or "B" not in s:
            continue
        label = BY_KEY[key].label
        note = _fig(s, "B", key, "skipped")
        rows.append(
            row(
                "server",
                f"{label}, load B: added TTFT p99",
                _fig(s, "B", key, "added_p99_ms"),
                "ms",
                "fake direct TTFT p99",
                _fig(s, "B", "direct", "p99_ms"),
                runs=rounds,
                note=f"skipped: {note}" if note else None,
            )
        )
        rows.append(
            row(
                "server",
                f"{label}, load B: server CPU per token",
                _fig(s, "B", key, "cpu_us_per_token"),
                "µs/token",
                "none",
                None,
                runs=rounds,
                note=f"skipped: {note}" if note else None,
            )
        )
    for key, fig in split_figures(s).items():
        rows.append(
            row(
                "server",
                f"{BY_KEY[key].label}: CPU per turn (10 clients, 1-token answers)",
                fig["cpu_ms_per_turn"],
                "ms/turn",
                "none",
                None,
                runs=raw["plan"]["split_rounds"],
            )
        )
        rows.append(
            row(
                "server",
                f"{BY_KEY[key].label}: CPU per token (10 clients, 41- minus 1-token answers)",
                fig["cpu_us_per_token"],
                "µs/token",
                "none",
                None,
                runs=raw["plan"]["split_rounds"],
            )
        )
    for key in ("ollang", "bare"):
        load = "C" if "C" in s else "B"
        cpu = _fig(s, load, key, "cpu_us_per_token")
        if cpu is not None:
            rows.append(
                row(
                    "server",
                    f"{BY_KEY[key].label}: cores per 10,000 tok/s (CPU per token at load {load})",
                    cpu * 10_000 / 1e6,
                    "cores",
                    "none",
                    None,
                    runs=rounds,
                )
            )
    if rows:
        rows[0]["details"] = {"summary": strip_ttfts(s), "split": split_figures(s), **_meta(raw)}
    return rows


def strip_ttfts(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without the raw TTFT lists (they are in ``server.json``'s phases)."""
    return {
        load: {sys_: {k: v for k, v in fig.items() if k != "ttft_ms"} for sys_, fig in figs.items()}
        for load, figs in summary.items()
    }


def _meta(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: raw[k] for k in ("quick", "plan", "systems", "skipped", "seconds", "loadavg")}


# -- report ------------------------------------------------------------------------------------
def _n(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and value != value:
        return "—"
    return f"{value:,.{digits}f}"


def markdown(raw: dict[str, Any]) -> str:
    """The tables: per load and system, the scan, the split, capacity, goals."""
    s = summarize(raw)
    systems = [k for k in raw["systems"]]
    lines: list[str] = []
    loads = raw["plan"]["loads"]
    slow = ", ".join(f"{k}: {v}" for k, v in raw["plan"]["slow_rounds"].items())
    header = "| load | measure | " + " | ".join(BY_KEY[k].label for k in systems) + " |"
    lines += [
        f"Server bench ({'quick' if raw['quick'] else 'full'}; {raw['plan']['rounds']} rotated "
        f"round(s) ({slow} for tutorial and LiteLLM); load average "
        f"{raw['loadavg'][0]:.1f}; {raw['seconds']:.0f} s). Each figure is the median over "
        "rounds of the round's figure; added = minus the fake direct's in the same round.",
        "",
        header,
        "|---|---|" + "---|" * len(systems),
    ]
    for key in ("A", "B", "C"):
        if key not in s:
            continue
        ld = loads[key]
        name = f"{key}: {ld['clients']} cl, {ld['tokens']} tok @{ld['rate']:g}/s"

        def cells(fn: Any, key: str = key) -> str:
            out = []
            for sk in systems:
                fig = s[key].get(sk)
                if fig is None:
                    out.append("not run")
                elif fig.get("skipped"):
                    out.append("skipped")
                else:
                    out.append(fn(sk, fig))
            return " | ".join(out)

        lines.append(
            f"| {name} | turns / errors | "
            + cells(lambda _k, f: f"{f.get('completed', 0)} / {f.get('errors', 0)}")
            + " |"
        )
        lines.append(
            f"| {key} | TTFT p50 / p99 ms | "
            + cells(lambda _k, f: f"{_n(f['p50_ms'])} / {_n(f['p99_ms'])}")
            + " |"
        )
        lines.append(
            f"| {key} | added p50 / p99 ms | "
            + cells(
                lambda k, f: (
                    "" if k == "direct" else f"{_n(f['added_p50_ms'])} / {_n(f['added_p99_ms'])}"
                )
            )
            + " |"
        )
        lines.append(
            f"| {key} | server CPU µs/token | "
            + cells(lambda _k, f: _n(f["cpu_us_per_token"], 0))
            + " |"
        )
        lines.append(
            f"| {key} | tok/s served | " + cells(lambda _k, f: _n(f["tok_per_s"], 0)) + " |"
        )
        lines.append(f"| {key} | RSS MiB | " + cells(lambda _k, f: _n(f.get("rss_mb"), 0)) + " |")
        fig = s[key].get("ollang", {})
        if fig.get("stored_expected"):
            stored = [
                f"{fig['stored']} / {fig['stored_expected']}" if k == "ollang" else ""
                for k in systems
            ]
            lines.append(f"| {key} | messages stored / expected | " + " | ".join(stored) + " |")
    skipped = raw.get("skipped") or {}
    for name, why in skipped.items():
        lines += ["", f"{name} skipped: {why}"]
    # scan
    counts = sorted(
        {int(k[4:]) for k in s if k.startswith("scan")} | ({200} if "B" in s else set())
    )
    if len(counts) > 1 or any(k.startswith("scan") for k in s):
        lines += [
            "",
            "Client-count scan at load B's pacing (20 tok @5/s each); added = minus the fake "
            "direct's p99 at the same count",
            "",
            "| clients | fake direct p99 ms | ollang added p99 ms | ollang CPU µs/token "
            "| bare added p99 ms | bare CPU µs/token | errors (ollang / bare) |",
            "|---|---|---|---|---|---|---|",
        ]
        for n in counts:
            key = "B" if n == 200 and "B" in s else f"scan{n}"
            g = lambda sk, k, key=key: _fig(s, key, sk, k)  # noqa: E731
            lines.append(
                f"| {n} | {_n(g('direct', 'p99_ms'))} | {_n(g('ollang', 'added_p99_ms'))} | "
                f"{_n(g('ollang', 'cpu_us_per_token'), 0)} | {_n(g('bare', 'added_p99_ms'))} | "
                f"{_n(g('bare', 'cpu_us_per_token'), 0)} | {g('ollang', 'errors')} / "
                f"{g('bare', 'errors')} |"
            )
    split = split_figures(s)
    if split:
        lines += [
            "",
            f"CPU per turn vs per token (10 clients, answers of 1 and 41 tokens at "
            f"{SPLIT_RATE:g} tok/s)",
            "",
            "| system | CPU per turn (ms) | CPU per token (µs) |",
            "|---|---|---|",
        ]
        for key, fig in split.items():
            lines.append(
                f"| {BY_KEY[key].label} | {_n(fig['cpu_ms_per_turn'], 2)} | "
                f"{_n(fig['cpu_us_per_token'], 0)} |"
            )
    cap_load = "C" if "C" in s else "B" if "B" in s else None
    if cap_load:
        lines += [
            "",
            f"Capacity: cores per 10,000 tok/s (server CPU per token at load {cap_load} x 10,000)",
            "",
            "| system | cores |",
            "|---|---|",
        ]
        for key in systems:
            cpu = _fig(s, cap_load, key, "cpu_us_per_token")
            if cpu is not None:
                lines.append(f"| {BY_KEY[key].label} | {cpu * 10_000 / 1e6:.2f} |")
    rows = [r for r in rows_from(raw) if r["passed"] is not None]
    if rows:
        lines += ["", "Goals (issue 17)", "", "| figure | value | anchor | ratio | goal | met |"]
        lines.append("|---|---|---|---|---|---|")
        for r in rows:
            lines.append(
                f"| {r['name']} | {_n(r['value'])} {r['unit']} | {_n(r['anchor_value'])} | "
                f"{_n(r['ratio'], 2)} | {r['goal']} | {'yes' if r['passed'] else 'NO'} |"
            )
    return "\n".join(lines)


def plot(raw: dict[str, Any], path: Path) -> str | None:
    """TTFT distributions per system at load B (box plots, log scale); None or why not."""
    try:
        import matplotlib
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]')"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summarize(raw)
    load = "B" if "B" in s else next((k for k in ("A", "C") if k in s), None)
    if load is None:
        return "no load phases"
    keys = [k for k in raw["systems"] if s[load].get(k, {}).get("ttft_ms")]
    if not keys:
        return "no TTFTs"
    data = [s[load][k]["ttft_ms"] for k in keys]
    fig, ax = plt.subplots(figsize=(max(7, 1.4 * len(keys)), 5))
    ax.boxplot(data, whis=(1, 99), showfliers=True, flierprops={"markersize": 2})
    ax.set_xticks(range(1, len(keys) + 1), [BY_KEY[k].label.replace(" ", "\n", 2) for k in keys])
    for i, values in enumerate(data, start=1):
        p99 = percentile(values, 99)
        ax.annotate(
            f"p99 {p99:,.0f}", (i, p99), xytext=(8, 0), textcoords="offset points", fontsize=7
        )
    direct = s[load].get("direct", {}).get("p99_ms")
    if direct is not None and load == "B":
        ax.axhline(direct + GOAL_B_P99_MS, color="red", linestyle="--", linewidth=1)
        ax.annotate(
            "goal: p99 within 50 ms of the fake's",
            (0.55, direct + GOAL_B_P99_MS),
            xytext=(0, 3),
            textcoords="offset points",
            color="red",
            fontsize=8,
        )
    ax.set_yscale("log")
    ax.set_ylabel("time to first token (ms, log scale); whiskers p1-p99")
    ld = raw["plan"]["loads"][load]
    ax.set_title(
        f"Load {load}: {ld['clients']} clients, {ld['tokens']} tokens at {ld['rate']:g} tok/s each"
    )
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None
