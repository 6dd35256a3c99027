"""The HTTP server under load, beside its peers: ollang, a bare ChatOllama app, LiteLLM...

One fake Ollama (``tests/fake_ollama.py`` in its own process), one aiohttp load driver, and
each system **alone** in its phase (its server process resumed, every other one paused
with ``SIGSTOP``), in rotated rounds. Systems (``--only-system``):

=================  =========================================================================
``direct``         the clients call the fake's ``/api/chat`` stream themselves: the floor,
                   and the anchor of every "added" TTFT (same load, same run)
``ollang``         ``ollang serve``'s ``/chat/stream`` (SSE; stores every turn in SQLite)
``ollang_openai``  the same server's ``/v1/chat/completions`` (``stream: true``)
``ollang_ollama``  the same server's ``/api/chat`` (Ollama's NDJSON)
``bare``           ``bench/anchor_apps/bare_chatollama.py``: FastAPI, one endpoint streaming
                   ``ChatOllama.astream`` as SSE, no memory (uvicorn, same options as ollang)
``tutorial``       ``bench/anchor_apps/tutorial_async.py``: FastAPI + ``ollama.AsyncClient``
``litellm``        LiteLLM proxy 1.108.7 (its own venv, ``bench/.venv-litellm``, made on first
                   use), no DB, one model routed to the fake; ``/v1/chat/completions``
=================  =========================================================================

Loads (``--loads``; clients start evenly over 1 s, each doing a few turns back to back):
A = 25 clients, 50-token answers at 50 tok/s; B = 200 clients, 20 tokens at 5 tok/s
(1,000 tok/s in all: the goal's); C = 200 clients, 50 tokens at 50 tok/s (tokens/s served).
``scan``: load B's pacing at 25, 50, 100, 200 (= load B) and 400 clients, for ollang and
the bare app. ``split``: 10 clients, answers of 1 and of 41 tokens at 1,000 tok/s; per turn =
cpu(1)/turns, per token = (cpu(41) - cpu(1)) / (40 turns).

Per system and load: errors (a non-200, an error event, a stream without its end, a turn
not done within the phase timeout), TTFT p50/p99 and "added" (minus the fake direct's same
percentile), server CPU per streamed token (psutil, the server and its children, around the
phase), RSS, tokens/s, and for ollang that each turn stored its 2 messages (rows counted in
the SQLite file). Then the goals of issue 17 as ratios, a capacity line (cores per 10,000
tok/s) and ``bench/plots/server_ttft.png`` (TTFT distributions at load B).

Run: ``python bench/server_bench.py [--quick] [--only-system ollang,bare] [--loads A,B]``;
prints Markdown tables, writes ``bench/results/server.json``. As a module of the bench
runner: ``run(quick) -> rows``. Full run ~10 minutes on 2 cores, ``--quick`` ~3.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
for _path in (str(ROOT), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from _server_load import (  # noqa: E402
    MODEL,
    Fake,
    Outcome,
    ServerPool,
    Target,
    _drive,
    drive,
    drive_many,
    tail,
    wait_http,
)
from _server_report import (  # noqa: E402
    BY_KEY,
    LITELLM_VERSION,
    SPLIT_RATE,
    SYSTEMS,
    Load,
    System,
    markdown,
    plot,
    rows_from,
    strip_ttfts,
    summarize,
)
from _util import log, percentile  # noqa: E402

from tests.net import free_port  # noqa: E402

LITELLM_VENV = BENCH_DIR / ".venv-litellm"
APPS = BENCH_DIR / "anchor_apps"
KEEP_ALIVE_S = 30  # ollang serve's uvicorn keep-alive (server/app.py), used for the anchors too


# bench/pg_bench.py imports these.
STRESS_RATE, STRESS_TOKENS = 50.0, 50  # load C's


def plan(quick: bool) -> dict[str, Any]:
    """Sizes of the run: loads, rounds, the scan and the split."""
    return {
        "rounds": 1 if quick else 4,
        # the peers far from the goal (a phase of LiteLLM at load B takes ~35 s)
        "slow_rounds": {"A": 1 if quick else 2, "B": 1, "C": 1},
        "loads": {
            # one turn per client at B and C, or the full run takes 13 minutes (the bare
            # app, saturated, needs 20 s for a phase of 400 turns); back to back at A
            "A": Load("A", 25, 50, 50.0, 2),
            "B": Load("B", 200, 20, 5.0, 1),
            "C": Load("C", 200, 50, 50.0, 1),
        },
        # load C without the tutorial server (its pool of 100 connections halves it anyway),
        # and in the quick run without LiteLLM (a phase takes the whole timeout)
        "excluded": {"A": (), "B": (), "C": ("tutorial", "litellm") if quick else ("tutorial",)},
        "scan": [25, 200] if quick else [25, 50, 100, 200, 400],
        "scan_systems": ("direct", "ollang", "bare"),
        "split_turns": 15 if quick else 30,
        "split_rounds": 1 if quick else 2,
        "split_systems": ("ollang", "bare"),
    }


# -- launching the servers ----------------------------------------------------------------
def _uvicorn_app(module: str, port: int, fake_url: str) -> tuple[list[str], dict[str, str]]:
    """An anchor app under uvicorn, with ollang serve's options (loop/http auto, no access log)."""
    args = [sys.executable, "-m", "uvicorn", f"{module}:app", "--app-dir", str(APPS)]
    args += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    args += ["--timeout-keep-alive", str(KEEP_ALIVE_S), "--log-level", "warning"]
    env = {**os.environ, "BENCH_OLLAMA_URL": fake_url, "BENCH_MODEL": MODEL}
    return args, env


def _ollang(port: int, fake_url: str, db: Path, home: Path) -> tuple[list[str], dict[str, str]]:
    env = {
        **os.environ,
        "OLLAMA_HOST": fake_url,
        "OLLANG_MODEL": MODEL,
        "OLLANG_HOME": str(home),
        "OLLANG_SERVER_STORE_URL": f"sqlite:///{db}",
        "OLLANG_SERVER_ACCESS_LOG": "false",
        "OLLANG_SERVER_BACKEND": "ollama",
    }
    args = [sys.executable, "-m", "ollang", "serve", "--port", str(port)]
    return [*args, "--ollama-host", fake_url], env


def ensure_litellm() -> Path:
    """``bench/.venv-litellm/bin/litellm``, installing LiteLLM there first if needed."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    log(f"server bench: installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} ...")
    if not (LITELLM_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True, timeout=300)
    pip = [str(LITELLM_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    proc = subprocess.run(
        [*pip, f"litellm[proxy]=={LITELLM_VERSION}"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0 or not exe.exists():
        raise RuntimeError(f"pip install failed: {' '.join(proc.stderr.split())[-400:]}")
    return exe


def _litellm(port: int, fake_url: str, tmp: Path) -> tuple[list[str], dict[str, str]]:
    exe = ensure_litellm()
    config = tmp / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {json.dumps(MODEL)}\n"
        "    litellm_params:\n"
        f"      model: {json.dumps('ollama_chat/' + MODEL)}\n"
        f"      api_base: {json.dumps(fake_url)}\n"
        "litellm_settings:\n"
        "  telemetry: false\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "VIRTUAL_ENV")}
    env |= {
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price list (no internet)
        "LITELLM_LOG": "ERROR",
    }
    args = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    return args, env


# -- the run ------------------------------------------------------------------------------------
class Run:
    """The fake, the servers and the phases' records."""

    def __init__(self, tmp: Path, systems: list[str]) -> None:
        self.tmp = tmp
        self.db = tmp / "sessions.db"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.fake = Fake(free_port(), env)
        self.pool = ServerPool()
        self.systems = systems
        self.phases: list[dict[str, Any]] = []

    def start(self) -> None:
        self.fake.configure(5, 0.0)
        fake = self.fake.url
        launchers = {
            "ollang": (lambda p: _ollang(p, fake, self.db, self.tmp), "/health", 60.0),
            "bare": (lambda p: _uvicorn_app("bare_chatollama", p, fake), "/health", 60.0),
            "tutorial": (lambda p: _uvicorn_app("tutorial_async", p, fake), "/health", 60.0),
            "litellm": (lambda p: _litellm(p, fake, self.tmp), "/health/liveliness", 120.0),
        }
        needed = {BY_KEY[s].server for s in self.systems} - {None}
        for name, (launch, ready, timeout) in launchers.items():
            if name not in needed:
                continue
            port = free_port()
            self.pool.launch(
                name,
                f"http://127.0.0.1:{port}",
                lambda launch=launch, port=port: launch(port),
                ready,
                self.tmp / f"{name}.log",
                timeout,
            )
        log(f"server bench: starting {', '.join(sorted(needed))} ...")
        for name, seconds in self.pool.wait_ready().items():
            log(f"server bench: {name} up in {seconds:.1f} s")
        for name, server in self.pool.servers.items():
            if server.skipped:
                log(f"server bench: {name} skipped: {server.skipped}")
        # First calls of every route: imports, model list, connections (not measured).
        for key in self.systems:
            system = BY_KEY[key]
            if self.target(system) is None:
                continue
            self._warm(system, Load("warm", 8, 5, 0.0, 2, ramp=0.1))

    def close(self) -> None:
        self.pool.close()
        self.fake.close()

    def target(self, system: System) -> Target | None:
        if system.server is None:
            return Target(self.fake.url, system.path, system.dialect)
        server = self.pool.servers.get(system.server)
        if server is None or server.skipped:
            return None
        return Target(server.url, system.path, system.dialect)

    def skipped(self, system: System) -> str | None:
        server = self.pool.servers.get(system.server or "")
        return server.skipped if server else None

    def configure(self, tokens: int, rate: float, clients: int) -> None:
        """The fake's pacing; after a restart every server is warmed again, all at once."""
        if not self.fake.configure(tokens, rate):
            return
        targets, servers = [], []
        for key in self.systems:
            system = BY_KEY[key]
            target = self.target(system)
            if system.server is None or target is None or system.server in servers:
                continue
            servers.append(system.server)
            targets.append(target)
        warm = Load("warm", min(clients, 10), tokens, rate, 1, ramp=0.2)
        for name in servers:
            self.pool.servers[name].resume()
        try:
            outs = drive_many(targets, warm.clients, 1, warm.ramp, warm.timeout(), "warm")
        finally:
            for name in servers:
                self.pool.servers[name].pause()
        for name, out in zip(servers, outs, strict=True):
            if out.errors:
                log(f"server bench: warm-up of {name}: {out.errors} errors {out.error_samples[:2]}")

    def _warm(self, system: System, load: Load) -> None:
        target = self.target(system)
        assert target is not None
        server = self.pool.servers.get(system.server or "")
        if server:
            server.resume()
        try:
            out = drive(target, load.clients, load.turns, load.ramp, load.timeout(), "warm")
        finally:
            if server:
                server.pause()
        if out.errors:
            log(
                f"server bench: warm-up of {system.key}: {out.errors} errors {out.error_samples[:2]}"
            )

    def stored(self) -> int:
        if not self.db.exists():
            return 0
        with contextlib.closing(sqlite3.connect(self.db, timeout=10)) as conn:
            return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])

    def phase(self, system: System, load: Load, round_: int, group: str) -> dict[str, Any]:
        """One phase: ``system`` alone under ``load``; the record is kept and returned."""
        record: dict[str, Any] = {
            "group": group,
            "system": system.key,
            "load": load.key,
            "round": round_,
            **{k: v for k, v in asdict(load).items() if k != "key"},
        }
        self.phases.append(record)
        target = self.target(system)
        if target is None:
            record["skipped"] = self.skipped(system) or "not started"
            return record
        self.configure(load.tokens, load.rate, load.clients)
        server = self.pool.servers.get(system.server or "")
        if server:
            server.resume()
        try:
            rows_before = self.stored() if system.key == "ollang" else 0
            cpu_before = server.cpu_s() if server else 0.0
            out: Outcome = drive(target, load.clients, load.turns, load.ramp, load.timeout(), group)
            if system.key == "ollang":  # the last replies' writes may still be landing
                deadline = time.monotonic() + 5
                while (
                    self.stored() - rows_before < 2 * out.accepted and time.monotonic() < deadline
                ):
                    time.sleep(0.1)
                record["stored"] = self.stored() - rows_before
                record["stored_expected"] = 2 * out.accepted
            if server:  # its work for this phase done (e.g. streams the clients gave up)
                record["settle_s"] = _settle(server)
                record["cpu_s"] = server.cpu_s() - cpu_before
                record["rss_mb"] = server.rss_bytes() / 2**20
        finally:
            if server:
                server.pause()
        record.update(
            ttft_ms=[round(t * 1000, 3) for t in out.ttfts],
            tokens_delivered=out.tokens,
            completed=out.completed,
            accepted=out.accepted,
            errors=out.errors,
            error_samples=out.error_samples,
            seconds=out.seconds,
            timed_out=out.timed_out,
        )
        p99 = percentile(out.ttfts, 99) * 1000 if out.ttfts else float("nan")
        cpu = record.get("cpu_s")
        per_token = f", {cpu / out.tokens * 1e6:.0f} µs/token" if cpu and out.tokens else ""
        log(
            f"  {group} {load.key} r{round_} {system.key}: {out.completed} turns, "
            f"{out.errors} errors, TTFT p99 {p99:.1f} ms{per_token}, {out.seconds:.1f} s"
        )
        return record


def _settle(server: Any, limit: float = 3.0) -> float:
    """Wait (at most ``limit`` s) until ``server`` uses under 0.1 core; the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = server.cpu_s()
        time.sleep(0.2)
        if server.cpu_s() - before < 0.02:
            break
    return time.monotonic() - started


def _rotated(items: list[str], by: int) -> list[str]:
    by %= max(1, len(items))
    return items[by:] + items[:by]


def measure(
    quick: bool,
    systems: list[str] | None = None,
    loads: list[str] | None = None,
    rounds: int | None = None,
) -> dict[str, Any]:
    """Every phase of the run; returns the raw records and the plan."""
    p = plan(quick)
    if rounds:
        p["rounds"] = rounds
        p["slow_rounds"] = {k: min(v, rounds) for k, v in p["slow_rounds"].items()}
    chosen = [s.key for s in SYSTEMS if systems is None or s.key in systems or s.key == "direct"]
    wanted = loads or ["A", "B", "C", "scan", "split"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ollang-server-bench-") as tmp:
        run_ = Run(Path(tmp), chosen)
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            run_.start()
            # Loads A and C share the fake's pacing, B and the scan theirs: one restart each.
            for key in [k for k in ("A", "C", "B") if k in wanted]:
                load = p["loads"][key]
                excluded = p["excluded"][key]
                keys = [s for s in chosen if s not in excluded]
                for r in range(p["rounds"]):
                    log(f"server bench: load {key} ({load.label}), round {r + 1}/{p['rounds']}")
                    for s in _rotated(keys, r):
                        system = BY_KEY[s]
                        if system.slow and r >= p["slow_rounds"][key]:
                            continue
                        # the slow peers: one turn per client, or one phase takes minutes
                        run_.phase(
                            system, replace(load, turns=1) if system.slow else load, r, "load"
                        )
            if "scan" in wanted:
                base = p["loads"]["B"]
                keys = [s for s in p["scan_systems"] if s in chosen]
                for clients in p["scan"]:
                    if clients == base.clients and "B" in wanted:
                        continue  # load B is this point
                    turns = 2 if clients <= 50 and not quick else 1  # enough turns for a p99
                    load = Load(f"scan{clients}", clients, base.tokens, base.rate, turns)
                    log(f"server bench: scan, {load.label}")
                    for s in keys:
                        run_.phase(BY_KEY[s], load, 0, "scan")
            if "split" in wanted:
                keys = [s for s in p["split_systems"] if s in chosen]
                for r in range(p["split_rounds"]):
                    for tokens in (1, 41):
                        load = Load(
                            f"split{tokens}", 10, tokens, SPLIT_RATE, p["split_turns"], ramp=0.1
                        )
                        log(f"server bench: split, {load.label}, round {r + 1}")
                        for s in _rotated(keys, r):
                            run_.phase(BY_KEY[s], load, r, "split")
            skipped = {
                name: s.skipped for name, s in run_.pool.servers.items() if s.skipped is not None
            }
            logs = {
                name: tail(s.log_path, 1500) for name, s in run_.pool.servers.items() if s.log_path
            }
        finally:
            run_.close()
            signal.signal(signal.SIGTERM, previous)
    return {
        "quick": quick,
        "plan": {
            **{k: v for k, v in p.items() if k != "loads"},
            "loads": {k: asdict(v) for k, v in p["loads"].items()},
        },
        "systems": chosen,
        "skipped": skipped,
        "server_logs_tail": logs,
        "phases": run_.phases,
        "seconds": time.perf_counter() - started,
        "loadavg": os.getloadavg(),
    }


def report(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Write ``bench/results/server.json`` and the plot; returns the rows."""
    rows = rows_from(raw)
    why = plot(raw, BENCH_DIR / "plots" / "server_ttft.png")
    raw["plot"] = "plots/server_ttft.png" if why is None else f"not drawn: {why}"
    if why:
        log(f"server bench: no plot: {why}")
    out = BENCH_DIR / "results"
    out.mkdir(exist_ok=True)
    payload = {"summary": strip_ttfts(summarize(raw)), "rows": rows, **raw}
    (out / "server.json").write_text(json.dumps(payload, indent=1, default=str) + "\n", "utf-8")
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    """The bench runner's entry point."""
    raw = measure(quick)
    rows = report(raw)
    log(markdown(raw))
    return rows


# -- helpers bench/pg_bench.py uses ------------------------------
@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str], ready_url: str) -> Iterator[subprocess.Popen]:
    """A process that answers ``ready_url``, stopped on exit."""
    from _server_load import start, stop

    proc = start(args, env)
    try:
        wait_http(ready_url, 30, proc)
        yield proc
    finally:
        stop(proc)


async def _load(kind: str, url: str, model: str, clients: int, rounds: int) -> dict[str, Any]:
    """``clients`` clients over 1 s, ``rounds`` turns each, ``/api/chat`` or ``/chat/stream``."""
    dialect, path = ("ndjson", "/api/chat") if kind == "direct" else ("events", "/chat/stream")
    out = await _drive(Target(url, path, dialect, model), clients, rounds, 1.0, 600.0, kind)
    errors = out.error_samples + ["(more)"] * (out.errors - len(out.error_samples))
    return {"ttfts": out.ttfts, "tokens": out.tokens, "errors": errors, "seconds": out.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="1 round, fewer turns (~3 min)")
    parser.add_argument(
        "--only-system",
        default="",
        help=f"comma-separated systems (the fake direct always runs): {', '.join(BY_KEY)}",
    )
    parser.add_argument(
        "--loads", default="A,B,C,scan,split", help="comma-separated: A, B, C, scan, split"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="rotated rounds (default 4; quick 1)"
    )
    args = parser.parse_args()
    systems = [s for s in args.only_system.split(",") if s] or None
    unknown = [s for s in systems or () if s not in BY_KEY]
    loads = [x.strip() for x in args.loads.split(",") if x.strip()]
    bad = [x for x in loads if x not in ("A", "B", "C", "scan", "split")]
    if unknown or bad:
        parser.error(f"unknown system(s) or load(s): {', '.join(unknown + bad)}")
    raw = measure(args.quick, systems, loads, args.rounds)
    report(raw)
    print(markdown(raw))


if __name__ == "__main__":
    main()
