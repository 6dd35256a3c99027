"""The OpenAI and Ollama dialects under load: ``/v1/chat/completions`` and ``/api/chat``
streams through ollang, against the same client calling the stub Ollama directly.

Same set-up as ``bench/server_bench.py`` (whose helpers it uses): the stub is
``tests/fake_ollama.py`` stand-alone (every answer ``TOKENS`` tokens at ``RATE`` tokens/s),
the server runs as its own process (``server.serve(...)``, SQLite store), and one load
driver (aiohttp) runs N clients, started evenly over one second, each doing R streamed
turns back to back. Four kinds of phase, alternated in the same run:

* **direct**: the clients call the stub's ``/api/chat`` (the TTFT anchor);
* **openai**: ``POST /v1/chat/completions`` with ``stream: true`` and
  ``stream_options.include_usage`` (SSE chunks, ``[DONE]``);
* **ollama**: ``POST /api/chat`` (NDJSON, the host's lines forwarded);
* **native**: ollang's own ``/chat/stream`` (SSE), the CPU anchor: what a turn costs
  the server on its own route (which also stores the turn; the dialect turns here name
  no session, so store nothing).

Reported per dialect: errors (must be 0), time to first token added by ollang (p50 and
p99 of the dialect's TTFT minus the same percentile of the direct one) and server CPU
per streamed token, with its ratio to the native route's.

Run: ``python bench/api_bench.py [--quick] [--clients 200] [--rounds 3]``; prints a
Markdown table and writes ``bench/results/api.json``. As a module of the bench runner:
``run(quick) -> rows``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
for _path in (str(ROOT), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from _util import log, percentile, row  # noqa: E402
from server_bench import _STUB, RATE, TOKENS, _direct_turn, _ollang_turn, _process  # noqa: E402

from tests.net import free_port  # noqa: E402

Turn = Callable[[Any, str, str, int], Awaitable[tuple[float, int, Any]]]
KINDS = ("direct", "openai", "ollama", "native")


async def _openai_turn(session: Any, url: str, model: str, index: int) -> tuple[float, int, Any]:
    """One streamed ``/v1/chat/completions``: (ttft_s, tokens, ok)."""
    payload = {
        "model": model,
        "messages": [{"role": "user", "content": f"hello {index}"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    ttft = -1.0
    body = bytearray()
    async with session.post(f"{url}/v1/chat/completions", json=payload) as response:
        if response.status != 200:
            return ttft, 0, f"HTTP {response.status}: {(await response.read())[:200]!r}"
        async for chunk in response.content.iter_any():
            if ttft < 0 and b'"delta":{"content":' in chunk:
                ttft = time.perf_counter() - started
            body += chunk
    tokens = body.count(b'"delta":{"content":')
    ok = body.endswith(b"data: [DONE]\n\n") and b'"usage":{' in body and b'"error"' not in body
    return ttft, tokens, True if ok else f"incomplete stream: ...{bytes(body[-160:])!r}"


async def _ollama_turn(session: Any, url: str, model: str, index: int) -> tuple[float, int, Any]:
    """One streamed ``/api/chat`` through ollang (the same request as the direct one)."""
    return await _direct_turn(session, url, model, index)


TURNS: dict[str, Turn] = {
    "direct": _direct_turn,
    "openai": _openai_turn,
    "ollama": _ollama_turn,
    "native": _ollang_turn,
}


async def _load(turn: Turn, url: str, model: str, clients: int, rounds: int) -> dict[str, Any]:
    """``clients`` concurrent clients, started over 1 s, each doing ``rounds`` turns."""
    import aiohttp

    ttfts: list[float] = []
    tokens = 0
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client(number: int) -> None:
            nonlocal tokens
            await asyncio.sleep(number / clients)  # an even ramp over one second
            for r in range(rounds):
                try:
                    ttft, count, ok = await turn(session, url, model, number * rounds + r)
                except Exception as err:  # counted, not raised: the run goes on
                    errors.append(f"{type(err).__name__}: {err}")
                    continue
                if ok is not True or ttft < 0:
                    errors.append(ok if ok is not True else "no token")
                    continue
                ttfts.append(ttft)
                tokens += count

        await asyncio.gather(*(client(i) for i in range(clients)))
    return {"ttfts": ttfts, "tokens": tokens, "errors": errors}


def measure(
    clients: int = 200,
    rounds: int = 3,
    pairs: int = 2,
    rate: float = RATE,
    tokens_per_answer: int = TOKENS,
) -> dict[str, Any]:
    """Run the phases (every kind once per pair, alternated); the raw figures."""
    import httpx
    import psutil

    stub_port, server_port = free_port(), free_port()
    stub_url = f"http://127.0.0.1:{stub_port}"
    server_url = f"http://127.0.0.1:{server_port}"
    model = "llama3:latest"
    phases: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    cpu = dict.fromkeys(KINDS, 0.0)
    with tempfile.TemporaryDirectory(prefix="ollang-api-bench-") as tmp:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "OLLAMA_HOST": stub_url,
            "OLLANG_MODEL": model,
            "OLLANG_HOME": tmp,
            "OLLANG_SERVER_STORE_URL": f"sqlite:///{Path(tmp) / 'sessions.db'}",
            "OLLANG_SERVER_ACCESS_LOG": "false",
        }
        stub_cmd = [
            *(sys.executable, "-c", _STUB),
            *("--port", str(stub_port), "--rate", str(rate)),
            *("--tokens", str(tokens_per_answer), "--model", model),
        ]
        server_cmd = [
            sys.executable,
            "-c",
            f"from ollang import server; server.serve('127.0.0.1', {server_port}, [], [], "
            "False, [])",
        ]
        with (
            _process(stub_cmd, env, f"{stub_url}/api/version"),
            _process(server_cmd, env, f"{server_url}/health") as server_proc,
        ):
            proc = psutil.Process(server_proc.pid)

            def cpu_s() -> float:
                times = proc.cpu_times()
                return float(times.user + times.system)

            # Warm-up: imports, the model list, the context length, connections.
            httpx.post(f"{server_url}/chat", json={"message": "warm"}, timeout=30)
            for kind in KINDS:
                asyncio.run(_load(TURNS[kind], _url(kind, stub_url, server_url), model, 20, 1))
            for pair in range(pairs):
                for kind in KINDS:
                    log(f"api bench: pair {pair + 1}/{pairs}: {kind} ...")
                    before = cpu_s()
                    url = _url(kind, stub_url, server_url)
                    phases[kind].append(
                        asyncio.run(_load(TURNS[kind], url, model, clients, rounds))
                    )
                    cpu[kind] += cpu_s() - before
    out: dict[str, Any] = {
        "clients": clients,
        "rounds": rounds,
        "pairs": pairs,
        "rate": rate,
        "tokens_per_answer": tokens_per_answer,
    }
    for kind in KINDS:
        ttfts = [t for p in phases[kind] for t in p["ttfts"]]
        tokens = sum(p["tokens"] for p in phases[kind])
        errors = [e for p in phases[kind] for e in p["errors"]]
        out[kind] = {
            "p50_ms": percentile(ttfts, 50) * 1000 if ttfts else None,
            "p99_ms": percentile(ttfts, 99) * 1000 if ttfts else None,
            "turns": len(ttfts),
            "tokens": tokens,
            "errors": len(errors),
            "error_samples": errors[:5],
            "cpu_us_per_token": cpu[kind] / tokens * 1e6 if tokens and kind != "direct" else None,
        }
    return out


def _url(kind: str, stub_url: str, server_url: str) -> str:
    return stub_url if kind == "direct" else server_url


_NAMES = {"openai": "/v1/chat/completions", "ollama": "/api/chat"}


def rows_from(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for the bench runner's table (see ``bench/_util.py``)."""
    direct, native = r["direct"], r["native"]
    runs = r["pairs"]
    load = (
        f"{r['clients']} clients x {r['rounds']} turns, "
        f"{r['tokens_per_answer']} tok at {r['rate']:g} tok/s"
    )
    rows = []
    for kind, route in _NAMES.items():
        mine = r[kind]
        added = {
            q: mine[f"{q}_ms"] - direct[f"{q}_ms"]
            if mine[f"{q}_ms"] is not None and direct[f"{q}_ms"] is not None
            else None
            for q in ("p50", "p99")
        }
        rows += [
            row(
                "api",
                f"{route}: errors ({load})",
                mine["errors"],
                "count",
                "direct errors",
                direct["errors"],
                goal="0",
                passed=mine["errors"] == 0 and direct["errors"] == 0,
                runs=runs,
                details=r if kind == "openai" else None,
            ),
            row(
                "api",
                f"{route}: TTFT p50 (ollang - direct: {added['p50']:.1f} ms)"
                if added["p50"] is not None
                else f"{route}: TTFT p50",
                mine["p50_ms"],
                "ms",
                "stub directly, p50",
                direct["p50_ms"],
                runs=runs,
            ),
            row(
                "api",
                f"{route}: TTFT p99 (ollang - direct: {added['p99']:.1f} ms)"
                if added["p99"] is not None
                else f"{route}: TTFT p99",
                mine["p99_ms"],
                "ms",
                "stub directly, p99",
                direct["p99_ms"],
                runs=runs,
            ),
            row(
                "api",
                f"{route}: server CPU per streamed token",
                mine["cpu_us_per_token"],
                "µs/token",
                "ollang /chat/stream (stores the turn)",
                native["cpu_us_per_token"],
                runs=runs,
            ),
        ]
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    """The bench runner's entry point."""
    return rows_from(measure(rounds=1 if quick else 3, pairs=1 if quick else 2))


def markdown(r: dict[str, Any]) -> str:
    """The README table."""

    def fmt(value: float | None, places: int = 1) -> str:
        return "n/a" if value is None else f"{value:.{places}f}"

    direct = r["direct"]
    lines = [
        f"{r['clients']} concurrent clients x {r['rounds']} turns x {r['pairs']} runs; "
        f"stub: {r['tokens_per_answer']} tokens at {r['rate']:g} tokens/s per answer",
        "",
        "| route | turns / errors | TTFT p50 | TTFT p99 | added p50 / p99 | CPU per token |",
        "|---|---|---|---|---|---|",
        f"| stub directly | {direct['turns']} / {direct['errors']} | {fmt(direct['p50_ms'])} ms "
        f"| {fmt(direct['p99_ms'])} ms | | |",
    ]
    for kind, route in (*_NAMES.items(), ("native", "/chat/stream")):
        mine = r[kind]
        added50 = mine["p50_ms"] - direct["p50_ms"] if mine["p50_ms"] is not None else None
        added99 = mine["p99_ms"] - direct["p99_ms"] if mine["p99_ms"] is not None else None
        lines.append(
            f"| ollang `{route}` | {mine['turns']} / {mine['errors']} | {fmt(mine['p50_ms'])} ms "
            f"| {fmt(mine['p99_ms'])} ms | {fmt(added50)} / {fmt(added99)} ms "
            f"| {fmt(mine['cpu_us_per_token'], 0)} µs |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="one turn per client, one run")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--pairs", type=int, default=None)
    parser.add_argument("--rate", type=float, default=RATE, help="tokens/s of each answer")
    parser.add_argument("--tokens", type=int, default=TOKENS, help="tokens per answer")
    args = parser.parse_args()
    result = measure(
        clients=args.clients,
        rounds=args.rounds or (1 if args.quick else 3),
        pairs=args.pairs or (1 if args.quick else 2),
        rate=args.rate,
        tokens_per_answer=args.tokens,
    )
    out = BENCH_DIR / "results"
    out.mkdir(exist_ok=True)
    payload = {"result": result, "rows": rows_from(result)}
    (out / "api.json").write_text(json.dumps(payload, indent=2, default=str) + "\n", "utf-8")
    print(markdown(result))


if __name__ == "__main__":
    main()
