"""Fair queueing: a light key's wait behind a heavy one on a shared host (issue 22).

One fake Ollama host with ``max=1`` answering every chat with ``--tokens`` tokens at
``--rate`` tokens/s (one answer lasts ``tokens / rate`` seconds). ``ollang serve`` runs with
two ``--api-key`` keys (``api-key-1`` is A, ``api-key-2`` is B) and one queue policy at a
time: ``unordered`` (a random waiter), ``fifo`` and ``fair``; with ``--today-src DIR`` (a
checkout from before the waiting room) also ``today``: that checkout's own server, where
every waiter polled a condition (woken by each release, or after 1 s) and whoever got there
first won. Key A keeps 30 requests in flight; key B sends one request about every three
answers. Reported per policy: B's wait before its first token (p50, p95; a request still
waiting when the phase ends counts with the time it had waited, a lower bound, marked
``>=``), and the total tokens/s every client received. Goals: fair B p95 ≤ one answer's
duration; fair tokens/s ≥ 0.95x FIFO.

Every loop is bounded by the phase's deadline; all traffic is on 127.0.0.1. Writes
``bench/results/fair.json`` and prints a Markdown table::

    .venv/bin/python bench/fair_bench.py [--quick] [--today-src DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from _server_load import MODEL, Fake, start, stop, wait_http  # noqa: E402
from _util import ensure_import_paths, percentile  # noqa: E402

ensure_import_paths()
from tests.net import free_port  # noqa: E402

POLICIES = ("unordered", "fifo", "fair")
KEY_A, KEY_B = "bench-key-a", "bench-key-b"


@dataclass
class Phase:
    """One policy's run: B's waits and everything received."""

    policy: str
    seconds: float = 0.0
    tokens: int = 0
    b_waits: list[float] = field(default_factory=list)
    b_censored: int = 0  # B requests still waiting at the end (their wait is a lower bound)
    a_answers: int = 0
    b_answers: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self, answer_s: float) -> dict[str, object]:
        p50 = percentile(self.b_waits, 50) if self.b_waits else float("nan")
        p95 = percentile(self.b_waits, 95) if self.b_waits else float("nan")
        return {
            "policy": self.policy,
            "b_requests": len(self.b_waits),
            "b_still_waiting": self.b_censored,
            "b_wait_p50_s": round(p50, 2),
            "b_wait_p95_s": round(p95, 2),
            "b_wait_p95_answers": round(p95 / answer_s, 2),
            "tokens_per_s": round(self.tokens / self.seconds, 1) if self.seconds else 0.0,
            "a_answers": self.a_answers,
            "b_answers": self.b_answers,
            "errors": self.errors[:5],
        }


async def _turn(
    client: httpx.AsyncClient, url: str, key: str, phase: Phase, deadline: float
) -> tuple[float | None, float]:
    """One streamed ``/api/chat``: (seconds to the first token or None, seconds waited)."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    sent = time.monotonic()
    first: float | None = None
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with asyncio.timeout(max(0.1, deadline - sent)):
            async with client.stream("POST", f"{url}/api/chat", json=body, headers=headers) as r:
                if r.status_code != 200:
                    phase.errors.append(f"{key}: HTTP {r.status_code}")
                    return None, time.monotonic() - sent
                async for line in r.aiter_lines():
                    if not line:
                        continue
                    data = json.loads(line)
                    if data.get("message", {}).get("content"):
                        if first is None:
                            first = time.monotonic() - sent
                        phase.tokens += 1
                    if data.get("done"):
                        if key == KEY_A:
                            phase.a_answers += 1
                        else:
                            phase.b_answers += 1
    except TimeoutError:
        pass  # the phase ended: the client goes away (and leaves the queue)
    except httpx.HTTPError as err:
        phase.errors.append(f"{key}: {type(err).__name__}")
    return first, time.monotonic() - sent


async def _phase(url: str, policy: str, args: argparse.Namespace) -> Phase:
    phase = Phase(policy)
    rng = random.Random(22)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:
        start_t = time.monotonic()
        deadline = start_t + args.phase

        async def heavy() -> None:
            while time.monotonic() < deadline:
                await _turn(client, url, KEY_A, phase, deadline)

        async def light() -> None:
            first, waited = await _turn(client, url, KEY_B, phase, deadline)
            if first is not None:
                phase.b_waits.append(first)
            else:
                phase.b_waits.append(waited)
                phase.b_censored += 1

        heavies = []
        for _ in range(args.in_flight):  # A's 30 are queued before B's first request
            heavies.append(asyncio.create_task(heavy()))
            await asyncio.sleep(0.01)
        await asyncio.sleep(args.warmup)
        lights = []
        while time.monotonic() < start_t + args.warmup + args.send_for:
            lights.append(asyncio.create_task(light()))
            await asyncio.sleep(
                args.every * rng.uniform(0.8, 1.2)
            )  # B lands anywhere in A's answers
        await asyncio.gather(*lights, *heavies)
        phase.seconds = time.monotonic() - start_t
    return phase


def _server(
    port: int, fake_url: str, policy: str, log: Path, tmp: Path, src: Path | None = None
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if src is not None:  # another checkout's ollang (--today-src): its own waiting
        env["PYTHONPATH"] = str(src)
    env.update(
        OLLANG_SERVER_OLLAMA_HOSTS=f"{fake_url}?max=1",
        OLLANG_SERVER_QUEUE_POLICY=policy,
        OLLANG_SERVER_API_KEYS=f"{KEY_A},{KEY_B}",
        OLLANG_SERVER_ACCESS_LOG="false",
        OLLANG_SERVER_STORE_URL=f"sqlite:///{tmp / f'{policy}.db'}",
        OLLANG_SERVER_RECORD_ALL="false",
    )
    args = [sys.executable, "-m", "ollang", "serve", "--port", str(port)]
    return start(args, env, log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="about a minute: 0.5 s answers")
    parser.add_argument(
        "--rate", type=float, default=None, help="fake tokens/s (default 20; quick: 200)"
    )
    parser.add_argument("--tokens", type=int, default=100, help="tokens per answer")
    parser.add_argument("--in-flight", type=int, default=30, help="key A's requests in flight")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument(
        "--today-src",
        type=Path,
        default=None,
        help="a checkout of ollang before the waiting room (e.g. `git worktree add DIR "
        "8c58235~1`): adds a phase 'today' running its server, the real polling wake-up",
    )
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "fair.json")
    args = parser.parse_args()
    if args.today_src is not None and "today" not in args.policies.split(","):
        args.policies = "today," + args.policies
    if args.rate is None:
        args.rate = 200.0 if args.quick else 20.0
    answer_s = args.tokens / args.rate
    # In answers: A fills the queue, then B sends one request about every three answers (a
    # light user: a third of the host; at half it would be using its whole fair share, and
    # more often it would queue behind itself under any policy), then a drain. Full: 5 s
    # answers, about 3 minutes in all; quick: 0.5 s answers, about a minute.
    args.warmup = 1.0
    args.every = 3.0 * answer_s
    args.send_for = (32.0 if args.quick else 10.5) * answer_s
    args.phase = args.warmup + args.send_for + 1.2 * answer_s

    tmp = Path(tempfile.mkdtemp(prefix="fair_bench-"))
    fake = Fake(free_port(), dict(os.environ))
    fake.configure(args.tokens, args.rate)
    results: list[dict[str, object]] = []
    try:
        for policy in args.policies.split(","):
            port = free_port()
            log = tmp / f"{policy}.log"
            src = args.today_src if policy == "today" else None
            proc = _server(port, fake.url, "fair" if src else policy, log, tmp, src)
            try:
                wait_http(f"http://127.0.0.1:{port}/health", 60, proc)
                phase = asyncio.run(_phase(f"http://127.0.0.1:{port}", policy, args))
            finally:
                stop(proc)
            results.append(phase.summary(answer_s))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    finally:
        fake.close()

    by = {r["policy"]: r for r in results}
    fair, fifo = by.get("fair"), by.get("fifo")
    goals: dict[str, object] = {}
    if fair is not None:
        goals["fair_b_p95_le_one_answer"] = float(fair["b_wait_p95_s"]) <= answer_s  # type: ignore[arg-type]
    if fair is not None and fifo is not None and fifo["tokens_per_s"]:
        ratio = float(fair["tokens_per_s"]) / float(fifo["tokens_per_s"])  # type: ignore[arg-type]
        goals["fair_tokens_per_s_vs_fifo"] = round(ratio, 3)
        goals["fair_tokens_per_s_ge_0.95_fifo"] = ratio >= 0.95
    setup = {
        "host": "fake Ollama, max=1",
        "rate_tokens_per_s": args.rate,
        "tokens_per_answer": args.tokens,
        "answer_s": answer_s,
        "a_in_flight": args.in_flight,
        "b_every_s": args.every,
        "phase_s": args.phase,
        "quick": args.quick,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"setup": setup, "results": results, "goals": goals}, indent=2))

    print(
        f"One host (max=1), {args.tokens}-token answers at {args.rate:g} tok/s "
        f"(one answer = {answer_s:g} s); key A keeps {args.in_flight} requests in flight, "
        f"key B sends one every {args.every:g} s.\n"
    )
    print("| policy | B wait p50 (s) | B wait p95 (s) | B p95 in answers | total tokens/s |")
    print("|---|---|---|---|---|")
    for r in results:
        mark = ">= " if r["b_still_waiting"] else ""
        print(
            f"| {r['policy']} | {mark}{r['b_wait_p50_s']} | {mark}{r['b_wait_p95_s']} "
            f"| {mark}{r['b_wait_p95_answers']} | {r['tokens_per_s']} |"
        )
    print()
    for name, value in goals.items():
        print(f"- {name}: {value}")
    with contextlib.suppress(OSError):
        for log in tmp.glob("*.log"):
            text = log.read_text(errors="replace")
            if "Traceback" in text:
                print(f"(server log {log.name} has a traceback)", file=sys.stderr)


if __name__ == "__main__":
    main()
