"""Routing over several Ollama hosts: session affinity and cache-aware routing against
spreading, through one replica and two, and a host killed.

The hosts are ``bench/cache_ollama.py``, one process each: ``tests/fake_ollama.py``
with a prompt cache, so a cold prompt costs evaluation time per token (0.5 ms by
default) while a prompt that continues what a slot of that host last evaluated costs
only its new part (the module docstring there says how slots are chosen, as Ollama's
runner does). ``ollang serve`` runs as a subprocess over three of them
(``--backend ollama --ollama-host URL ...``, a temporary SQLite store).

1. **Affinity and cache-aware routing against spreading.** S conversations x T turns,
   concurrent, each turn a ~200-token question, each answer ~100 tokens, under a
   ~100-token system prompt shared by all (turn 6 sends ~1,800 tokens). Every mode sends
   the *same* requests to the same route, ``/v1/chat/completions`` (streamed), the client
   carrying the history (a *stateless* client, as the OpenAI SDK and Open WebUI are):

   * **affinity**: with ``X-Session-Id``, so ollang records the conversation and routes
     each turn to the host that answered the last one (``server/turns.py``);
   * **cache-aware**: without it, ollang's default for stateless clients: each turn goes
     to the host that served the longest prefix of its messages (a digest per message
     boundary, ``server/prefix_routing.py``);
   * **least-loaded**: without it, on an ``ollang serve`` with
     ``OLLANG_SERVER_PREFIX_ROUTING=false``: the router takes the least-loaded host (in
     flight per weight), ties broken at random: ollang's behaviour for stateless clients
     before cache-aware routing. (A closed-loop client's next turn often finds the host it
     just left the least loaded: some accidental affinity, which the table's "hosts per
     conversation" shows.)
   * **random**: ollang has no switch for random spreading, so a third ``ollang serve``
     is given *one* host, a small HTTP proxy in its own process (``--serve-proxy``,
     below) that sends each request to one of the three hosts at random, streaming the
     answer back as it comes. Same ollang, same requests, without a session id.

   Phases rotate (full run: affinity, cache-aware, least-loaded, random, then the other
   way round); each starts with empty caches (``POST /bench/reset`` on every host).
   Reported: TTFT p50/p99 per turn number, the ratios to random and to least-loaded, and
   per host the slot hits (a turn that continued what a slot held) and the share of
   prompt tokens served from the cache.

2. **Stateless, two replicas.** The stateless modes again (cache-aware, least-loaded,
   random), each through *two* ``ollang serve`` replicas on one PostgreSQL (``tests/pg.py``:
   CI's server or a throwaway cluster; skipped, with the reason, without one), the client
   sending its requests to the two in turn (round robin per request, as a load balancer
   would): a conversation's turns alternate between replicas, which share what they
   routed through the store's ``prefix_routes``. Same sizes and rotation as part 1.

3. **A host killed under load.** C clients, each running conversations of T turns on
   ollang's own sessions (``/chat/stream``, SSE; the server keeps the history); after a
   while one host is killed with SIGKILL. A failed turn is *not started* when its client
   had received no token (goal: 0, such a turn must be re-routed) or *mid-stream* (it
   may fail; the partial answer must be stored). Time to detect: from the kill until
   ``/metrics`` shows ``ollang_host_up`` 0 for it, polled every 50 ms (``/metrics`` reads
   the router's state; ``/health`` would probe the hosts itself, so it is read once, at
   the end); and until the first turn of a conversation that had been on the killed
   host reaches its first token on another host. Run twice: with hosts that send their
   response headers with the first token (as Ollama does), and with ``--early-headers``
   hosts (status and headers first, then the prompt evaluation: what
   ``tests/fake_ollama.py``'s ``first_token_delay`` does, and a proxy in front of Ollama
   may do), where a kill during evaluation cuts a stream that has sent no token.

Run: ``python bench/routing_bench.py [--quick] [--stateless]`` (full run about 9 minutes
on 2 cores, ``--quick`` about 4; ``--stateless``: parts 1 and 2 only); prints Markdown
tables, writes ``bench/results/routing.json`` (and, for parts 1 and 2,
``bench/results/routing_stateless.md``) and ``bench/plots/routing_ttft.png`` (with
matplotlib). As a module of the bench runner: ``run(quick) -> rows``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
for _path in (str(ROOT), str(BENCH_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from _server_load import stop, wait_http  # noqa: E402
from _util import english_text, log, percentile, row  # noqa: E402

from tests.net import free_port  # noqa: E402

MODEL = "bench:latest"
HOSTS = 3
#: KV cache slots per host: more than the conversations a host gets (S / 3), so that
#: affinity can keep every conversation's prefix; the limit is Ollama's num_parallel.
SLOTS = 16
MS_PER_TOKEN = 0.5
ANSWER_PIECES = 30  # ~3 words each: ~100 tokens of answer
RATE = 50.0  # pieces per second per answer
SYSTEM_CHARS = 400  # ~100 tokens
QUESTION_CHARS = 800  # ~200 tokens
POLL_S = 0.05
#: The routing modes compared (module docstring).
MODES = ["affinity", "cache_aware", "least_loaded", "random"]
#: Those of a stateless client (no session id), compared through two replicas too.
STATELESS = ["cache_aware", "least_loaded", "random"]
LABELS = {
    "affinity": "session affinity",
    "cache_aware": "no session, cache-aware (prefix routing)",
    "least_loaded": "no session, least-loaded (prefix routing off)",
    "random": "random spreading (proxy)",
}
#: The goals of issue 23 for stateless clients (cache-aware against random).
GOAL_RATIO = 0.3
GOAL_HITS = 0.8
HOST_MARK = re.compile(r"\[h:(\d+)\]")


@dataclass
class Config:
    """One run's sizes."""

    sessions: int
    turns: int
    runs: int  # of each mode, alternated
    kill_clients: int
    kill_turns: int
    kill_seconds: float
    kill_after: float


FULL = Config(sessions=30, turns=6, runs=2, kill_clients=30, kill_turns=6, kill_seconds=30.0,
              kill_after=10.0)  # fmt: skip
QUICK = Config(sessions=15, turns=5, runs=1, kill_clients=24, kill_turns=5, kill_seconds=12.0,
               kill_after=5.0)  # fmt: skip


# -- processes ----------------------------------------------------------------------------
@dataclass
class Host:
    """One cache fake Ollama process."""

    port: int
    proc: subprocess.Popen[Any]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def hosts(
    count: int, slots: int, ms_per_token: float, early_headers: bool = False
) -> Iterator[list[Host]]:
    """``count`` cache fake Ollamas, each its own process."""
    started: list[Host] = []
    try:
        for _ in range(count):
            port = free_port()
            cmd = [
                sys.executable,
                str(BENCH_DIR / "cache_ollama.py"),
                "--port",
                str(port),
                "--model",
                MODEL,
                "--slots",
                str(slots),
                "--ms-per-token",
                str(ms_per_token),
                "--tokens",
                str(ANSWER_PIECES),
                "--rate",
                str(RATE),
            ]
            if early_headers:
                cmd.append("--early-headers")
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
            started.append(Host(port, proc))
        for host in started:
            wait_http(f"{host.url}/api/version", 30, host.proc)
        yield started
    finally:
        for host in started:
            stop(host.proc)


@contextlib.contextmanager
def ollang_serve(
    urls: list[str],
    tmp: Path,
    name: str = "serve",
    *,
    prefix_routing: bool = True,
    store_url: str | None = None,
) -> Iterator[str]:
    """``python -m ollang serve`` over ``urls``, with a SQLite store in ``tmp`` (or
    ``store_url``)."""
    port = free_port()
    env = {
        **os.environ,
        "OLLANG_HOME": str(tmp),
        "OLLANG_MODEL": MODEL,
        "OLLANG_SERVER_STORE_URL": store_url or f"sqlite:///{tmp / (name + '.db')}",
        "OLLANG_SERVER_ACCESS_LOG": "false",
        "OLLANG_SERVER_PREFIX_ROUTING": "true" if prefix_routing else "false",
    }
    env.pop("OLLAMA_HOST", None)
    env.pop("OLLANG_OLLAMA_HOSTS", None)
    cmd = [sys.executable, "-m", "ollang", "serve", "--port", str(port), "--backend", "ollama"]
    for url in urls:
        cmd += ["--ollama-host", url]
    log_file = (tmp / f"{name}.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", 30, proc)
        yield url
    finally:
        stop(proc)
        log_file.close()


async def _serve_proxy(port: int, backends: list[str]) -> None:
    """An HTTP proxy sending each request to a backend chosen at random (``--serve-proxy``)."""
    import aiohttp
    from aiohttp import web

    rng = random.Random()
    client = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        auto_decompress=False,
    )

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        backend = rng.choice(backends)
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        try:
            upstream = await client.request(
                request.method, backend + request.path_qs, data=body or None, headers=headers
            )
        except aiohttp.ClientError as err:
            return web.Response(status=502, text=f"proxy: {backend}: {err}")
        async with upstream:
            response = web.StreamResponse(
                status=upstream.status,
                headers={"Content-Type": upstream.headers.get("Content-Type", "text/plain")},
            )
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await asyncio.Event().wait()  # until killed
    finally:
        await client.close()
        await runner.cleanup()


@contextlib.contextmanager
def random_proxy(backends: list[str]) -> Iterator[str]:
    """:func:`_serve_proxy` in its own process; yields its URL."""
    port = free_port()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-proxy", str(port)]
    for url in backends:
        cmd += ["--to", url]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/api/version", 30, proc)
        yield url
    finally:
        stop(proc)


def _host_stats(url: str, reset: bool = False) -> dict[str, Any]:
    import httpx

    stats = httpx.get(f"{url}/bench/stats", timeout=5).json()
    if reset:
        httpx.post(f"{url}/bench/reset", timeout=5)
    return stats


# -- the conversations --------------------------------------------------------------------
SYSTEM = english_text(random.Random(1), SYSTEM_CHARS)


def question(conversation: str, turn: int) -> str:
    """A ~200-token question, the same for the same conversation and turn in every mode."""
    return english_text(random.Random(f"{conversation}/{turn}"), QUESTION_CHARS)


@dataclass
class Turn:
    """One turn as its client saw it."""

    conversation: str
    turn: int  # 1-based
    started: float  # monotonic
    ttft: float | None = None  # seconds, None when no token arrived
    ended: float = 0.0
    host: int | None = None  # the port that answered
    tokens: int = 0
    error: str | None = None


async def _openai_turn(
    http: Any, url: str, messages: list[dict[str, str]], session: str | None, t: Turn
) -> str:
    """One streamed ``/v1/chat/completions``; fills ``t``, returns the answer's text."""
    headers = {"X-Session-Id": session} if session else {}
    body = {"model": MODEL, "messages": messages, "stream": True}
    text: list[str] = []
    done = False
    async with http.post(f"{url}/v1/chat/completions", json=body, headers=headers) as response:
        if response.status != 200:
            t.error = f"HTTP {response.status}: {(await response.read())[:160]!r}"
            return ""
        async for raw in response.content:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                break
            event = json.loads(data)
            if "error" in event:
                t.error = f"stream error: {str(event['error'])[:160]}"
                break
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    if t.ttft is None:
                        t.ttft = time.monotonic() - t.started
                    text.append(piece)
                    t.tokens += 1
    answer = "".join(text)
    if not done and t.error is None:
        t.error = "stream ended without [DONE]"
    found = HOST_MARK.search(answer)
    t.host = int(found.group(1)) if found else None
    return answer


class RoundRobin:
    """The bench client's load balancer: each request to the next replica in turn."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.sent = 0

    def next(self) -> str:
        url = self.urls[self.sent % len(self.urls)]
        self.sent += 1
        return url


async def _conversation(
    http: Any,
    replicas: RoundRobin,
    name: str,
    turns: int,
    affinity: bool,
    out: list[Turn],
    delay: float,
) -> None:
    await asyncio.sleep(delay)
    messages: list[dict[str, str]] = [{"role": "system", "content": SYSTEM}]
    for number in range(1, turns + 1):
        ask = {"role": "user", "content": question(name, number)}
        t = Turn(name, number, time.monotonic())
        try:
            url = replicas.next()
            answer = await _openai_turn(http, url, [*messages, ask], name if affinity else None, t)
        except Exception as err:  # counted, not raised: the run goes on
            t.error = f"{type(err).__name__}: {err}"
            answer = ""
        t.ended = time.monotonic()
        out.append(t)
        if t.error is None:
            messages += [ask, {"role": "assistant", "content": answer}]
        else:
            messages.append(ask)  # the question stays; the next one follows it


async def _phase(urls: list[str], cfg: Config, affinity: bool, tag: str) -> list[Turn]:
    """Every conversation of one phase, concurrent, started over one second; requests go
    to ``urls`` in turn."""
    import aiohttp

    out: list[Turn] = []
    replicas = RoundRobin(urls)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await asyncio.wait_for(
            asyncio.gather(
                *(
                    _conversation(
                        http, replicas, f"{tag}-{i}", cfg.turns, affinity, out, i / cfg.sessions
                    )
                    for i in range(cfg.sessions)
                )
            ),
            timeout=600,
        )
    return out


def _warm(urls: list[str], host_list: list[Host]) -> None:
    """Load the model on every host and make the routers see it (``/api/ps``), so no host
    starts with the cold-load penalty; then empty the caches."""
    import httpx

    for host in host_list:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}
        httpx.post(f"{host.url}/api/chat", json=body, timeout=30).raise_for_status()
    for url in urls:
        httpx.get(f"{url}/health", timeout=10)  # checks every host now
        body = {"model": MODEL, "messages": [{"role": "user", "content": "warm up"}]}
        httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).raise_for_status()
    for host in host_list:
        _host_stats(host.url, reset=True)


def _summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "n": 0}
    return {
        "p50_ms": percentile(values, 50) * 1000,
        "p99_ms": percentile(values, 99) * 1000,
        "n": len(values),
    }


_HOST_STATS = (
    "requests",
    "slot_hits",
    "prompt_tokens",
    "cached_tokens",
    "evaluated_tokens",
    "eval_s",
    "wait_s",
)


def _mode_summary(turns: list[Turn], stats: dict[int, dict[str, float]], n: int) -> dict[str, Any]:
    """One mode's figures: TTFT by turn number and for turns 2+, hosts per conversation,
    and the hosts' cache counters (``n``: turns per conversation)."""
    ok = [t for t in turns if t.error is None and t.ttft is not None]
    by_turn = {
        k: _summary([t.ttft for t in ok if t.turn == k and t.ttft is not None])
        for k in range(1, n + 1)
    }
    later = [t.ttft for t in ok if t.turn >= 2 and t.ttft is not None]
    hosts_seen: dict[str, set[int]] = {}
    for t in ok:
        if t.host is not None:
            hosts_seen.setdefault(t.conversation, set()).add(t.host)
    requests = sum(s["requests"] for s in stats.values())
    hits = sum(s["slot_hits"] for s in stats.values())
    first_turns = sum(1 for t in ok if t.turn == 1)  # a first turn cannot hit
    return {
        "turns": len(turns),
        "errors": len(turns) - len(ok),
        "error_samples": [t.error for t in turns if t.error][:5],
        "by_turn": by_turn,
        "turns_2_on": _summary(later),
        "all": _summary([t.ttft for t in ok if t.ttft is not None]),
        "hosts_per_conversation": (
            sum(len(v) for v in hosts_seen.values()) / len(hosts_seen) if hosts_seen else None
        ),
        "per_host": {str(port): s for port, s in stats.items()},
        "slot_hit_rate": hits / requests if requests else None,
        "slot_hit_rate_turns_2_on": (
            hits / (requests - first_turns) if requests > first_turns else None
        ),
        "cached_token_share": (
            sum(s["cached_tokens"] for s in stats.values())
            / max(1, sum(s["prompt_tokens"] for s in stats.values()))
        ),
        "ttft_ms": [round(t.ttft * 1000, 2) for t in ok if t.ttft is not None],
    }


def _run_phases(
    modes: list[str], urls_of: dict[str, list[str]], host_list: list[Host], cfg: Config, what: str
) -> dict[str, Any]:
    """Each mode's phases, rotated (``modes``, then the other way round, ...), every phase
    on empty caches; the hosts' counters read after each."""
    order: list[str] = []
    for run_index in range(cfg.runs):
        order += modes if run_index % 2 == 0 else modes[::-1]
    turns: dict[str, list[Turn]] = {m: [] for m in modes}
    per_host: dict[str, dict[int, dict[str, float]]] = {m: {} for m in modes}
    seconds: dict[str, float] = dict.fromkeys(modes, 0.0)
    for index, mode in enumerate(order):
        log(f"routing bench: {what}{mode} phase ({index + 1}/{len(order)}) ...")
        started = time.monotonic()
        got = asyncio.run(_phase(urls_of[mode], cfg, mode == "affinity", f"{mode}{index}"))
        seconds[mode] += time.monotonic() - started
        turns[mode] += got
        for host in host_list:
            stats = _host_stats(host.url, reset=True)
            acc = per_host[mode].setdefault(host.port, {})
            for key in _HOST_STATS:
                acc[key] = acc.get(key, 0) + stats[key]
    return {
        "order": order,
        "seconds": seconds,
        "replicas": max(len(urls) for urls in urls_of.values()),
        "modes": {m: _mode_summary(turns[m], per_host[m], cfg.turns) for m in modes},
    }


def affinity_vs_spreading(cfg: Config, slots: int, ms_per_token: float) -> dict[str, Any]:
    """Part 1 (module docstring): one replica of each kind over the same three hosts."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ollang-routing-")))
        host_list = stack.enter_context(hosts(HOSTS, slots, ms_per_token))
        urls = [h.url for h in host_list]
        server = stack.enter_context(ollang_serve(urls, tmp, "serve"))
        server_off = stack.enter_context(ollang_serve(urls, tmp, "off", prefix_routing=False))
        proxy = stack.enter_context(random_proxy(urls))
        proxied = stack.enter_context(
            ollang_serve([proxy], tmp, "serve-proxied", prefix_routing=False)
        )
        _warm([server, server_off, proxied], host_list)
        urls_of = {
            "affinity": [server],
            "cache_aware": [server],
            "least_loaded": [server_off],
            "random": [proxied],
        }
        return _run_phases(MODES, urls_of, host_list, cfg, "")


def stateless_replicas(cfg: Config, slots: int, ms_per_token: float) -> dict[str, Any]:
    """Part 2 (module docstring): each stateless mode through two replicas on PostgreSQL."""
    from tests import pg

    try:
        pg.server()
    except RuntimeError as err:
        log(f"routing bench: two replicas skipped: {err}")
        return {"skipped": str(err)}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ollang-replicas-")))
        host_list = stack.enter_context(hosts(HOSTS, slots, ms_per_token))
        urls = [h.url for h in host_list]
        proxy = stack.enter_context(random_proxy(urls))
        urls_of: dict[str, list[str]] = {}
        for mode in STATELESS:
            store_url = stack.enter_context(pg.fresh_schema_url())
            backends = [proxy] if mode == "random" else urls
            urls_of[mode] = [
                stack.enter_context(
                    ollang_serve(
                        backends,
                        tmp,
                        f"{mode}-r{i}",
                        prefix_routing=mode == "cache_aware",
                        store_url=store_url,
                    )
                )
                for i in (1, 2)
            ]
        _warm([u for pair in urls_of.values() for u in pair], host_list)
        return _run_phases(STATELESS, urls_of, host_list, cfg, "two replicas, ")


# -- a host killed under load ---------------------------------------------------------------
@dataclass
class KillLog:
    """What the kill phase saw."""

    turns: list[Turn] = field(default_factory=list)
    killed_at: float | None = None
    killed_port: int | None = None
    detected_at: float | None = None  # /metrics shows it down
    polls: int = 0


async def _chat_turn(http: Any, url: str, session: str | None, text: str, t: Turn) -> str | None:
    """One ``/chat/stream`` turn (SSE); fills ``t``, returns the session id."""
    body: dict[str, Any] = {"message": text, "model": MODEL, "system": SYSTEM}
    if session:
        body["session_id"] = session
    headers = {"Accept": "text/event-stream"}
    answer: list[str] = []
    done = False
    async with http.post(f"{url}/chat/stream", json=body, headers=headers) as response:
        session = response.headers.get("X-Session-Id") or session
        if response.status != 200:
            t.error = f"HTTP {response.status}: {(await response.read())[:160]!r}"
            return session
        event, data = "", []
        async for raw in response.content:
            line = raw.decode("utf-8").rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif not line and event:
                payload = "\n".join(data)
                if event == "token":
                    if t.ttft is None:
                        t.ttft = time.monotonic() - t.started
                    answer.append(payload)
                    t.tokens += 1
                elif event == "done":
                    done = True
                elif event == "error":
                    t.error = f"stream error: {payload[:160]}"
                event, data = "", []
    if not done and t.error is None:
        t.error = "stream ended without its done event"
    found = HOST_MARK.search("".join(answer))
    t.host = int(found.group(1)) if found else None
    return session


async def _kill_client(
    http: Any, url: str, number: int, cfg: Config, log_: KillLog, deadline: float
) -> None:
    await asyncio.sleep(number / cfg.kill_clients)
    rng = random.Random(number)
    conversation = 0
    while time.monotonic() < deadline and conversation < 100:
        name = f"kill-{number}-{conversation}"
        session: str | None = None
        for n in range(1, cfg.kill_turns + 1):
            if time.monotonic() >= deadline:
                return
            t = Turn(name, n, time.monotonic())
            try:
                session = await _chat_turn(http, url, session, question(name, n), t)
            except Exception as err:  # counted, not raised
                t.error = f"{type(err).__name__}: {err}"
            t.ended = time.monotonic()
            log_.turns.append(t)
            await asyncio.sleep(rng.uniform(0.0, 0.2))  # a little think time
        conversation += 1


async def _watch_metrics(url: str, log_: KillLog, host_url: str, limit: float) -> None:
    """Poll ``/metrics`` every 50 ms from the kill until it shows the host down."""
    import aiohttp

    needle = f'ollang_host_up{{host="{host_url}"}} 0.0'
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        stop = time.monotonic() + limit
        while time.monotonic() < stop:
            log_.polls += 1
            with contextlib.suppress(Exception):
                async with http.get(f"{url}/metrics") as response:
                    text = await response.text()
                if needle in text:
                    log_.detected_at = time.monotonic()
                    return
            await asyncio.sleep(POLL_S)


async def _kill_run(url: str, victim: Host, cfg: Config) -> KillLog:
    import aiohttp

    log_ = KillLog(killed_port=victim.port)
    deadline = time.monotonic() + cfg.kill_seconds
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)

    async def killer() -> None:
        await asyncio.sleep(cfg.kill_after)
        log_.killed_at = time.monotonic()
        os.kill(victim.proc.pid, signal.SIGKILL)
        await _watch_metrics(url, log_, victim.url, limit=15.0)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await asyncio.wait_for(
            asyncio.gather(
                killer(),
                *(_kill_client(http, url, i, cfg, log_, deadline) for i in range(cfg.kill_clients)),
            ),
            timeout=cfg.kill_seconds + 90,
        )
    return log_


def kill_under_load(
    cfg: Config, slots: int, ms_per_token: float, early_headers: bool = False
) -> dict[str, Any]:
    """Part 2 (module docstring)."""
    import httpx

    with tempfile.TemporaryDirectory(prefix="ollang-routing-kill-") as tmp:
        with (
            hosts(HOSTS, slots, ms_per_token, early_headers) as host_list,
            ollang_serve([h.url for h in host_list], Path(tmp)) as url,
        ):
            _warm([url], host_list)
            victim = host_list[0]
            log(f"routing bench: kill phase{' (early headers)' if early_headers else ''} ...")
            log_ = asyncio.run(_kill_run(url, victim, cfg))
            health = httpx.get(f"{url}/health", timeout=10).json()
            time.sleep(1.5)  # the last partial answers are flushed
        with sqlite3.connect(Path(tmp) / "serve.db") as conn:
            stored = dict(
                conn.execute(
                    "SELECT coalesce(status, 'complete'), count(*) FROM messages "
                    "WHERE role IN ('ai', 'assistant') GROUP BY 1"
                ).fetchall()
            )
            partial_nonempty = conn.execute(
                "SELECT count(*) FROM messages WHERE status = 'error' AND content != ''"
            ).fetchone()[0]
    assert log_.killed_at is not None
    kill_t = log_.killed_at
    turns = log_.turns
    failed = [t for t in turns if t.error is not None]
    not_started = [t for t in failed if t.tokens == 0]
    mid_stream = [t for t in failed if t.tokens > 0]
    # Conversations whose last good answer before the kill came from the victim.
    on_victim: dict[str, float] = {}
    for t in sorted(turns, key=lambda t: t.started):
        if t.error is None and t.host is not None and t.ended <= kill_t:
            if t.host == victim.port:
                on_victim[t.conversation] = t.ended
            else:
                on_victim.pop(t.conversation, None)
    moved = [
        t.started + t.ttft
        for t in turns
        if t.conversation in on_victim
        and t.started >= kill_t
        and t.ttft is not None
        and t.host not in (None, victim.port)
    ]
    in_flight = [t for t in turns if t.started <= kill_t < t.ended]
    victim_status = next((h for h in health["hosts"] if h["url"] == victim.url), {})
    return {
        "early_headers": early_headers,
        "clients": cfg.kill_clients,
        "seconds": cfg.kill_seconds,
        "kill_after_s": cfg.kill_after,
        "victim": victim.url,
        "turns": len(turns),
        "turns_after_kill": sum(1 for t in turns if t.started >= kill_t),
        "in_flight_at_kill": len(in_flight),
        "in_flight_before_first_token": sum(
            1 for t in in_flight if t.ttft is None or t.started + t.ttft > kill_t
        ),
        "failed": len(failed),
        "failed_not_started": len(not_started),
        "failed_mid_stream": len(mid_stream),
        "failed_samples": [
            {
                "turn": t.turn,
                "tokens": t.tokens,
                "error": t.error,
                "started_after_kill_ms": round((t.started - kill_t) * 1000),
                "ended_after_kill_ms": round((t.ended - kill_t) * 1000),
            }
            for t in sorted(failed, key=lambda t: (t.tokens > 0, t.started))[:8]
        ],
        "detect_ms": (log_.detected_at - kill_t) * 1000 if log_.detected_at else None,
        "metrics_polls": log_.polls,
        "first_moved_turn_ms": (min(moved) - kill_t) * 1000 if moved else None,
        "conversations_on_victim": len(on_victim),
        "health_after": {"up": victim_status.get("up"), "error": victim_status.get("error")},
        "stored_answers_by_status": stored,
        "stored_partial_nonempty": partial_nonempty,
        "ttft_before_kill": _summary(
            [t.ttft for t in turns if t.ttft is not None and t.started < kill_t]
        ),
        "ttft_after_kill": _summary(
            [t.ttft for t in turns if t.ttft is not None and t.started >= kill_t]
        ),
    }


# -- results ---------------------------------------------------------------------------------
def measure(
    quick: bool,
    slots: int = SLOTS,
    ms_per_token: float = MS_PER_TOKEN,
    stateless_only: bool = False,
) -> dict[str, Any]:
    """Every part (``stateless_only``: parts 1 and 2); the raw figures."""
    cfg = QUICK if quick else FULL
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    spread = affinity_vs_spreading(cfg, slots, ms_per_token)
    replicas = stateless_replicas(cfg, slots, ms_per_token)
    kills = (
        []
        if stateless_only
        else [kill_under_load(cfg, slots, ms_per_token, early) for early in (False, True)]
    )
    return {
        "quick": quick,
        "config": vars(cfg),
        "hosts": HOSTS,
        "slots": slots,
        "ms_per_token": ms_per_token,
        "answer_pieces": ANSWER_PIECES,
        "rate": RATE,
        "load_avg": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "nproc": os.cpu_count(),
        "seconds": time.monotonic() - started,
        "affinity": spread,
        "replicas": replicas,
        "kill": kills,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _p50(mode: dict[str, Any]) -> float | None:
    p50: float | None = mode["turns_2_on"]["p50_ms"]
    return p50


def _stateless_rows(part: dict[str, Any], runs: int, where: str) -> list[dict[str, Any]]:
    """Issue 23's goals for one part: cache-aware against random (and least-loaded)."""
    modes = part["modes"]
    c, ra, lo = modes["cache_aware"], modes["random"], modes["least_loaded"]
    ratio = _ratio(_p50(c), _p50(ra))
    hits = c["slot_hit_rate_turns_2_on"] or 0.0
    return [
        row(
            "routing",
            f"TTFT p50, turns 2+, no session, cache-aware{where}",
            _p50(c),
            "ms",
            LABELS["random"],
            _p50(ra),
            goal=f"ratio <= {GOAL_RATIO}",
            passed=ratio is not None and ratio <= GOAL_RATIO,
            runs=runs,
            note=f"least-loaded {_fmt(_p50(lo))} ms",
        ),
        row(
            "routing",
            f"TTFT p99, turns 2+, no session, cache-aware{where}",
            c["turns_2_on"]["p99_ms"],
            "ms",
            LABELS["random"],
            ra["turns_2_on"]["p99_ms"],
            runs=runs,
            note=f"least-loaded {_fmt(lo['turns_2_on']['p99_ms'])} ms",
        ),
        row(
            "routing",
            f"prompt-cache slot hits, turns 2+, no session, cache-aware{where}",
            100 * hits,
            "%",
            LABELS["random"],
            100 * (ra["slot_hit_rate_turns_2_on"] or 0),
            goal=f">= {100 * GOAL_HITS:.0f}%",
            passed=hits >= GOAL_HITS,
            runs=runs,
            note=f"least-loaded {100 * (lo['slot_hit_rate_turns_2_on'] or 0):.0f}%",
        ),
    ]


def rows_from(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for the bench runner's table (``bench/_util.py``)."""
    modes = r["affinity"]["modes"]
    a = modes["affinity"]
    runs = r["config"]["runs"]
    setting = (
        f"{r['config']['sessions']} conversations x {r['config']['turns']} turns over "
        f"{r['hosts']} hosts, {r['ms_per_token']:g} ms per cold prompt token"
    )
    errors = sum(m["errors"] for m in modes.values())
    last = r["config"]["turns"]
    rows = []
    for other in ("random", "least_loaded"):
        o = modes[other]
        rows += [
            row(
                "routing",
                "TTFT p50, turns 2+, session affinity",
                _p50(a),
                "ms",
                LABELS[other],
                _p50(o),
                goal="ratio < 1",
                passed=(_p50(a) or 0) < (_p50(o) or 0),
                runs=runs,
                note=setting + (f"; {errors} failed turns" if errors else ""),
            ),
            row(
                "routing",
                "TTFT p99, turns 2+, session affinity",
                a["turns_2_on"]["p99_ms"],
                "ms",
                LABELS[other],
                o["turns_2_on"]["p99_ms"],
                runs=runs,
            ),
            row(
                "routing",
                f"TTFT p50 at turn {last}, session affinity",
                a["by_turn"][last]["p50_ms"],
                "ms",
                LABELS[other],
                o["by_turn"][last]["p50_ms"],
                runs=runs,
            ),
        ]
    rows.append(
        row(
            "routing",
            "prompt-cache slot hits, session affinity",
            100 * (a["slot_hit_rate"] or 0),
            "%",
            LABELS["random"],
            100 * (modes["random"]["slot_hit_rate"] or 0),
            runs=runs,
            note="prompt tokens from the cache: "
            + ", ".join(f"{m} {100 * modes[m]['cached_token_share']:.0f}%" for m in MODES)
            + f"; least-loaded slot hits {100 * (modes['least_loaded']['slot_hit_rate'] or 0):.0f}%"
            + f"; a first turn cannot hit: at most {100 * (last - 1) / last:.0f}%",
        )
    )
    rows += _stateless_rows(r["affinity"], runs, "")
    if "modes" in r["replicas"]:
        rows += _stateless_rows(r["replicas"], runs, ", two replicas")
    for k in r["kill"]:
        variant = " (hosts send headers before evaluating)" if k["early_headers"] else ""
        rows += [
            row(
                "routing",
                f"failed turns that had not started streaming, host killed{variant}",
                k["failed_not_started"],
                "turns",
                "",
                None,
                goal="0 (re-routed)",
                passed=k["failed_not_started"] == 0,
                note=f"{k['turns']} turns by {k['clients']} clients, {k['in_flight_at_kill']} in "
                f"flight at the kill ({k['in_flight_before_first_token']} before a token)",
            ),
            row(
                "routing",
                f"failed turns mid-stream (partial kept), host killed{variant}",
                k["failed_mid_stream"],
                "turns",
                "",
                None,
                note=f"partial answers stored: {k['stored_partial_nonempty']}",
            ),
            row(
                "routing",
                f"time to detect a killed host (/metrics, 50 ms polls){variant}",
                k["detect_ms"],
                "ms",
                "",
                None,
                goal="<= 1,000 ms",
                passed=k["detect_ms"] is not None and k["detect_ms"] <= 1000,
            ),
            row(
                "routing",
                f"kill to a first token elsewhere for a conversation on that host{variant}",
                k["first_moved_turn_ms"],
                "ms",
                "",
                None,
                note=f"{k['conversations_on_victim']} conversations were on it",
            ),
        ]
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    """The bench runner's entry point."""
    r = measure(quick)
    _save(r)
    rows = rows_from(r)
    # The per-turn figures and the kill runs; every TTFT stays in results/routing.json.
    details = {k: v for k, v in r.items() if k not in ("affinity", "replicas")}
    details["by_turn"] = {m: d["by_turn"] for m, d in r["affinity"]["modes"].items()}
    rows[0]["details"] = details
    return rows


def _fmt(value: float | None, places: int = 0) -> str:
    return "—" if value is None else f"{value:,.{places}f}"


def _kill_table(k: dict[str, Any]) -> list[str]:
    how = (
        "hosts send status and headers, then evaluate the prompt"
        if k["early_headers"]
        else "hosts send their headers with the first token, as Ollama does"
    )
    lines = [
        f"### Routing: a host killed (SIGKILL) under load: {how}",
        "",
        f"{k['clients']} clients on `/chat/stream` (ollang's sessions), {k['seconds']:g} s, "
        f"host {k['victim']} killed at {k['kill_after_s']:g} s.",
        "",
        "| Measure | Value |",
        "|---|---:|",
        f"| turns (started after the kill) | {k['turns']} ({k['turns_after_kill']}) |",
        f"| turns in flight at the kill (of them before their first token) | "
        f"{k['in_flight_at_kill']} ({k['in_flight_before_first_token']}) |",
        f"| **failed, had not started streaming** (goal 0) | **{k['failed_not_started']}** |",
        f"| failed mid-stream (partial kept) | {k['failed_mid_stream']} |",
        "| stored answers by status | "
        + ", ".join(f"{st} {n}" for st, n in sorted(k["stored_answers_by_status"].items()))
        + " |",
        f"| time to detect (`/metrics` shows the host down, 50 ms polls) | "
        f"{_fmt(k['detect_ms'])} ms |",
        f"| kill to a first token elsewhere, conversations that were on it "
        f"({k['conversations_on_victim']}) | {_fmt(k['first_moved_turn_ms'])} ms |",
        f"| TTFT p50 / p99 before the kill | {_fmt(k['ttft_before_kill']['p50_ms'])} / "
        f"{_fmt(k['ttft_before_kill']['p99_ms'])} ms |",
        f"| TTFT p50 / p99 after the kill | {_fmt(k['ttft_after_kill']['p50_ms'])} / "
        f"{_fmt(k['ttft_after_kill']['p99_ms'])} ms |",
        f"| `/health` at the end | up={k['health_after']['up']}: {k['health_after']['error']} |",
    ]
    if k["failed_samples"]:
        lines += ["", "Failed turns (not started first):", ""]
        for f in k["failed_samples"]:
            lines.append(
                f"- turn {f['turn']}, {f['tokens']} tokens received, started "
                f"{f['started_after_kill_ms']:+} ms, ended {f['ended_after_kill_ms']:+} ms "
                f"from the kill: {f['error']}"
            )
    return lines


def _pair(x: dict[str, Any]) -> str:
    return f"{_fmt(x['p50_ms'])} / {_fmt(x['p99_ms'])}"


def _ratios(x: dict[str, Any], y: dict[str, Any]) -> str:
    return (
        f"{_fmt(_ratio(x['p50_ms'], y['p50_ms']), 2)} ({_fmt(_ratio(x['p99_ms'], y['p99_ms']), 2)})"
    )


def stateless_table(r: dict[str, Any]) -> str:
    """Issue 23's table: stateless clients through one replica and two, by routing mode."""
    cfg = r["config"]
    parts = [(1, r["affinity"])]
    if "modes" in r["replicas"]:
        parts.append((2, r["replicas"]))
    lines = [
        f"Stateless clients (the whole history resent, no session id, streamed "
        f"`/v1/chat/completions`): {cfg['sessions']} conversations x {cfg['turns']} turns, "
        f"{r['hosts']} prompt-caching hosts ({r['slots']} slots each, "
        f"{r['ms_per_token']:g} ms per cold prompt token), {cfg['runs']} run(s) of each mode"
        + (
            ""
            if len(parts) == 2
            else f"; two replicas not measured: {r['replicas'].get('skipped')}"
        )
        + ". TTFT in ms at the client, turns 2 and later.",
        "",
        "| Routing | replicas | TTFT p50 | TTFT p99 | / random p50 (p99) | slot hits, turns 2+ "
        "| prompt tokens from cache | hosts per conversation | failed turns |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for count, part in parts:
        modes = part["modes"]
        shown = [m for m in ("cache_aware", "least_loaded", "random", "affinity") if m in modes]
        for mode in shown:
            m = modes[mode]
            name = LABELS[mode] + (" (reference: names a session)" if mode == "affinity" else "")
            bold = "**" if mode == "cache_aware" else ""
            lines.append(
                f"| {bold}{name}{bold} | {count} | {bold}{_fmt(m['turns_2_on']['p50_ms'])}{bold} "
                f"| {_fmt(m['turns_2_on']['p99_ms'])} "
                f"| {bold}{_ratios(m['turns_2_on'], modes['random']['turns_2_on'])}{bold} "
                f"| {bold}{_fmt(100 * (m['slot_hit_rate_turns_2_on'] or 0))}%{bold} "
                f"| {_fmt(100 * m['cached_token_share'])}% "
                f"| {_fmt(m['hosts_per_conversation'], 2)} | {m['errors']} |"
            )
    lines += [
        "",
        f"Goals: cache-aware / random p50 <= {GOAL_RATIO}, slot hits >= {100 * GOAL_HITS:.0f}% "
        "(a slot hit: the turn continued what one of the host's slots held). Two replicas: "
        "two `ollang serve` on one PostgreSQL, the client sending its requests to them in turn.",
    ]
    return "\n".join(lines)


def markdown(r: dict[str, Any]) -> str:
    """The tables."""
    cfg = r["config"]
    modes = r["affinity"]["modes"]
    ra = modes["random"]
    lines = [
        "### Routing: stateless clients, cache-aware vs least-loaded vs random (issue 23)",
        "",
        stateless_table(r),
        "",
        f"### Routing: session affinity and cache-aware routing vs spreading, per turn "
        f"({cfg['sessions']} conversations x {cfg['turns']} turns, {r['hosts']} hosts, "
        f"{r['slots']} cache slots each, {r['ms_per_token']:g} ms per cold prompt token, "
        f"{cfg['runs']} run(s) of each mode; load average {r['load_avg'][0]} → "
        f"{r['load_avg'][1]} on {r['nproc']} cores)",
        "",
        "TTFT in ms, p50 / p99, at the client of `/v1/chat/completions` (streamed), one replica.",
        "",
        "| Turn | prompt (~tokens) | "
        + " | ".join(LABELS[m] for m in MODES)
        + " | affinity / random p50 (p99) | cache-aware / random p50 (p99) |",
        "|---:|---:|" + "---:|" * (len(MODES) + 2),
    ]
    system_tokens = len(SYSTEM) // 4
    rows_of = [(str(n), f"{system_tokens + n * QUESTION_CHARS // 4 + (n - 1) * 100:,}", n)
               for n in range(1, cfg["turns"] + 1)]  # fmt: skip
    for label, prompt, n in rows_of:
        by = {m: modes[m]["by_turn"][n] for m in MODES}
        lines.append(
            f"| {label} | {prompt} | "
            + " | ".join(_pair(by[m]) for m in MODES)
            + f" | {_ratios(by['affinity'], by['random'])} "
            f"| {_ratios(by['cache_aware'], by['random'])} |"
        )
    for label, key in (("turns 2+", "turns_2_on"), ("all", "all")):
        lines.append(
            f"| **{label}** | | "
            + " | ".join(_pair(modes[m][key]) for m in MODES)
            + f" | **{_ratios(modes['affinity'][key], ra[key])}** "
            f"| **{_ratios(modes['cache_aware'][key], ra[key])}** |"
        )
    secs = r["affinity"]["seconds"]
    lines += [
        "",
        "Failed turns: "
        + ", ".join(f"{m} {modes[m]['errors']}" for m in MODES)
        + ". Hosts per conversation: "
        + ", ".join(f"{m} {_fmt(modes[m]['hosts_per_conversation'], 2)}" for m in MODES)
        + ". Phase wall time: "
        + ", ".join(f"{m} {secs[m]:.0f} s" for m in MODES)
        + f" (order: {', '.join(r['affinity']['order'])}).",
        "",
        f"A slot hit is a turn that continued what one of the host's slots held (a first "
        f"turn cannot hit, so at most {100 * (cfg['turns'] - 1) / cfg['turns']:.0f}% of all "
        "requests); waiting is for a free slot and for the host's one prompt evaluator.",
        "",
        "| Host | replicas | mode | requests | slot hits | hit rate | prompt tokens from cache | "
        "eval time | waiting (slot + evaluator) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    parts = [(1, r["affinity"])] + ([(2, r["replicas"])] if "modes" in r["replicas"] else [])
    for count, part in parts:
        for mode, m in part["modes"].items():
            for port, st in sorted(m["per_host"].items()):
                reqs = st["requests"] or 0
                lines.append(
                    f"| :{port} | {count} | {mode} | {reqs:,.0f} | {st['slot_hits']:,.0f} | "
                    f"{_fmt(100 * st['slot_hits'] / reqs if reqs else None)}% | "
                    f"{_fmt(100 * st['cached_tokens'] / max(1, st['prompt_tokens']))}% | "
                    f"{st['eval_s']:.1f} s | {st['wait_s']:.1f} s |"
                )
    for k in r["kill"]:
        lines += ["", *_kill_table(k)]
    return "\n".join(lines)


def plot(r: dict[str, Any], path: Path) -> bool:
    """TTFT per turn number, by routing mode (p50 solid, p99 dashed)."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colors = {
        "affinity": "#4c72b0",
        "cache_aware": "#8172b3",
        "least_loaded": "#55a868",
        "random": "#dd8452",
    }
    for mode in MODES:
        by_turn = r["affinity"]["modes"][mode]["by_turn"]
        xs = sorted(by_turn)
        for key, style in (("p50_ms", "-"), ("p99_ms", "--")):
            ys = [by_turn[n][key] for n in xs]
            ax.plot(
                xs, ys, style, marker="o", color=colors[mode], label=f"{LABELS[mode]}, {key[:3]}"
            )
    cfg = r["config"]
    ax.set_xlabel("turn of the conversation (the prompt grows ~300 tokens a turn)")
    ax.set_ylabel("time to first token (ms)")
    ax.set_title(
        f"TTFT per turn: {cfg['sessions']} conversations over {r['hosts']} prompt-caching "
        f"hosts ({r['ms_per_token']:g} ms per cold token)",
        fontsize=10,
    )
    ax.set_xticks(xs)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _save(r: dict[str, Any]) -> None:
    out = BENCH_DIR / "results"
    out.mkdir(exist_ok=True)
    payload = {"result": r, "rows": rows_from(r)}
    (out / "routing.json").write_text(
        json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8"
    )
    (out / "routing_stateless.md").write_text(stateless_table(r) + "\n", encoding="utf-8")
    try:
        plot(r, BENCH_DIR / "plots" / "routing_ttft.png")
    except Exception as err:  # a plot is a bonus, never a failure
        log(f"routing bench: no plot: {type(err).__name__}: {err}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer conversations, one run")
    parser.add_argument("--slots", type=int, default=SLOTS, help="cache slots per host")
    parser.add_argument("--ms-per-token", type=float, default=MS_PER_TOKEN)
    parser.add_argument(
        "--stateless", action="store_true", help="parts 1 and 2 only (no host killed)"
    )
    parser.add_argument("--serve-proxy", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--to", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_proxy:  # the random-spreading proxy's process (random_proxy())
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_proxy(args.serve_proxy, args.to))
        return
    r = measure(args.quick, args.slots, args.ms_per_token, stateless_only=args.stateless)
    _save(r)
    print(markdown(r))


if __name__ == "__main__":
    main()
