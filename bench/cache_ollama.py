"""A fake Ollama whose ``/api/chat`` costs prompt-evaluation time, with a prompt cache.

``tests/fake_ollama.py``'s :class:`FakeOllama` answers at once whatever the prompt. A real
Ollama first evaluates the prompt (the cost grows with its length), but keeps the KV
cache of what each of its *slots* last evaluated: a prompt that continues what a slot
holds costs only the new suffix. That is why ollang keeps a session on the host it used
last. This subclass adds exactly that cost, so routing can be measured:

* **Tokens** are estimated as ``len(text) // 4`` of the prompt rendered as Ollama's
  templates do (``<|role|>content`` per message).
* **Slots** (``--slots N``): the KV caches, chosen as Ollama's runner chooses
  (``runner/ollamarunner/cache.go``, ``findBestCacheSlot``): a free slot whose whole
  content is a prefix of the prompt is reused; otherwise the least recently used free
  slot is overwritten, keeping the longest prefix any slot shares with the prompt (a
  shared system prompt is never evaluated twice). Either way the cost is the prompt
  minus its longest common prefix with some slot. After the answer the slot holds the
  prompt *and* the answer, as Ollama's does, so the next turn of the conversation
  costs only the new user message. A request waits while every slot is busy (Ollama's
  ``OLLAMA_NUM_PARALLEL``: one answer per slot at a time).
* **Cost**: ``--ms-per-token`` (default 0.5 ms) per evaluated token, slept before
  anything is sent (a real Ollama writes its response headers with the first token);
  with ``--early-headers`` the ``200`` and its headers go first, then the evaluation
  (as ``tests/fake_ollama.py``'s ``first_token_delay`` does, or a proxy that answers
  before its upstream has produced anything).
  With ``--serial-eval`` (the default) one prompt is evaluated at a time per host, as a
  GPU does at full speed; concurrent cold prompts queue behind each other.
* **Honest counts**: the final chunk's ``prompt_eval_count`` is the tokens evaluated
  (not the cached ones, as Ollama reports it) and ``prompt_eval_duration`` the time
  slept for them.
* **Answers** are ``--tokens`` pieces of a few words at ``--rate`` pieces/s; the first
  piece names the host (``[h:PORT]``) so a client sees who answered.
* ``GET /bench/stats``: requests, slot hits, prompt/cached/evaluated tokens, seconds of
  evaluation and of waiting; ``POST /bench/reset`` empties the slots and the counters.

Run one per host::

    python bench/cache_ollama.py --port 11501 --model bench --slots 12 --ms-per-token 0.5
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fake_ollama import FakeOllama, Reply  # noqa: E402

__all__ = ["CacheOllama", "render_prompt", "tokens_of"]

_WORDS = (
    "the", "model", "answers", "with", "a", "few", "words", "about", "routing", "caches",
    "hosts", "sessions", "prompts", "tokens", "latency", "load", "balancing", "affinity",
    "spreading", "evaluation", "prefix", "slot", "memory", "GPU", "stream",
)  # fmt: skip


def render_prompt(messages: list[dict[str, Any]]) -> str:
    """The prompt as a chat template renders it (what the KV cache holds)."""
    return "".join(f"<|{m.get('role', 'user')}|>{m.get('content', '')}\n" for m in messages)


def tokens_of(text: str) -> int:
    """Estimated tokens: four characters each."""
    return len(text) // 4


def _common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix of ``a`` and ``b``."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    low, high = 0, n  # a[:low] == b[:low] and a[:high] != b[:high]
    while high - low > 1:
        mid = (low + high) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid
    return low


@dataclass
class _Slot:
    text: str = ""
    last_used: float = 0.0
    in_use: bool = False


@dataclass
class _Stats:
    requests: int = 0
    slot_hits: int = 0  # reused a slot that held an earlier turn of this conversation
    prompt_tokens: int = 0
    cached_tokens: int = 0
    evaluated_tokens: int = 0
    eval_s: float = 0.0
    wait_s: float = 0.0  # for a slot and for the evaluator
    per_request: list[dict[str, Any]] = field(default_factory=list)


class CacheOllama(FakeOllama):
    """:class:`FakeOllama` with a prompt cache and a prompt-evaluation cost (module docstring).

    Args:
        models: Installed models.
        slots: KV cache slots (and answers at a time).
        ms_per_token: Cost of evaluating one prompt token, in milliseconds.
        serial_eval: Evaluate one prompt at a time (a GPU), else all at once.
        answer_pieces: Pieces (of a few words) per answer.
        rate: Pieces per second (0: all at once).
        early_headers: Send the stream's status and headers before evaluating the prompt.
        **kwargs: Passed to :class:`FakeOllama` (``port``, ``host``...).
    """

    def __init__(
        self,
        models: list[str],
        *,
        slots: int = 4,
        ms_per_token: float = 0.5,
        serial_eval: bool = True,
        answer_pieces: int = 30,
        rate: float = 50.0,
        early_headers: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(models, token_delay=1.0 / rate if rate else 0.0, **kwargs)
        self.ms_per_token = ms_per_token
        self.serial_eval = serial_eval
        self.answer_pieces = answer_pieces
        self.early_headers = early_headers
        self.slots = [_Slot() for _ in range(max(1, slots))]
        self.stats = _Stats()
        self._slots_free = threading.Condition()
        self._evaluator = threading.Lock()
        self._local = threading.local()

    # -- the cache ---------------------------------------------------------------
    def _take_slot(self, prompt: str) -> tuple[_Slot, int, bool, float]:
        """A slot for ``prompt`` (waits while all are busy): (slot, cached chars, hit, waited)."""
        started = time.monotonic()
        with self._slots_free:
            while True:
                best, longest = None, -1
                for slot in self.slots:
                    count = _common_prefix(slot.text, prompt)
                    if count > longest:
                        best, longest = slot, count
                free = [s for s in self.slots if not s.in_use]
                assert best is not None
                if best.text and longest == len(best.text) and not best.in_use:
                    chosen, hit = best, True
                    break
                if free:
                    chosen, hit = min(free, key=lambda s: s.last_used), False
                    break
                self._slots_free.wait(timeout=1.0)
            chosen.in_use = True
            chosen.text = prompt[:longest]
            chosen.last_used = time.monotonic()
        return chosen, longest, hit, time.monotonic() - started

    def _give_back(self, slot: _Slot, text: str) -> None:
        with self._slots_free:
            slot.text = text
            slot.in_use = False
            slot.last_used = time.monotonic()
            self._slots_free.notify_all()

    def reset(self) -> None:
        """Empty the slots and the counters (between benchmark phases)."""
        with self._slots_free:
            for slot in self.slots:
                if not slot.in_use:
                    slot.text, slot.last_used = "", 0.0
            self.stats = _Stats()

    # -- FakeOllama's hooks ------------------------------------------------------
    def _next_reply(self, kind: str, body: dict[str, Any]) -> Reply:
        """Evaluate the prompt (sleep for its uncached part), then script the answer."""
        if kind != "chat":
            return super()._next_reply(kind, body)
        messages = body.get("messages") or []
        prompt = render_prompt(messages)
        handler = getattr(self._local, "handler", None)
        if self.early_headers and handler is not None and body.get("stream") is not False:
            FakeOllama._start_stream(handler)
            self._local.headers_sent = True
        slot, cached_chars, hit, waited = self._take_slot(prompt)
        total = tokens_of(prompt)
        cached = min(tokens_of(prompt[:cached_chars]), total)
        evaluated = max(1, total - cached)
        cost = evaluated * self.ms_per_token / 1000
        queued = time.monotonic()
        with self._evaluator if self.serial_eval else contextlib.nullcontext():
            waited += time.monotonic() - queued
            time.sleep(cost)
        pieces = self._answer(messages)
        self._local.turn = {
            "slot": slot,
            "prompt": prompt,
            "answer": "".join(pieces),
            "eval_ns": int(cost * 1e9),
            "evaluated": evaluated,
        }
        with self._slots_free:
            s = self.stats
            s.requests += 1
            s.slot_hits += hit
            s.prompt_tokens += total
            s.cached_tokens += cached
            s.evaluated_tokens += evaluated
            s.eval_s += cost
            s.wait_s += waited
            if len(s.per_request) < 10_000:
                s.per_request.append(
                    {"prompt": total, "cached": cached, "hit": hit, "wait_s": round(waited, 4)}
                )
        return Reply(pieces, prompt_eval_count=evaluated)

    def _answer(self, messages: list[dict[str, Any]]) -> list[str]:
        """Pieces of a few words each, deterministic per conversation; the first names us."""
        seed = hashlib.sha256(json.dumps(messages[-1:]).encode()).digest()
        pieces = [f"[h:{self.port}]"]
        for i in range(1, self.answer_pieces):
            words = [_WORDS[(seed[(i * 3 + k) % len(seed)] + i) % len(_WORDS)] for k in range(3)]
            pieces.append(" " + " ".join(words))
        return pieces

    def _start_stream(self, h: BaseHTTPRequestHandler) -> None:  # type: ignore[override]
        if not getattr(self._local, "headers_sent", False):  # else sent before evaluating
            FakeOllama._start_stream(h)

    def _counted(self, h: BaseHTTPRequestHandler, body: dict[str, Any], kind: str) -> None:
        self._local.turn, self._local.handler, self._local.headers_sent = None, h, False
        try:
            super()._counted(h, body, kind)
        finally:
            turn = self._local.turn
            self._local.turn, self._local.handler, self._local.headers_sent = None, None, False
            if turn is not None:
                # The slot keeps the prompt and the answer (Ollama caches what it generated).
                self._give_back(turn["slot"], turn["prompt"] + f"<|assistant|>{turn['answer']}\n")

    def _line(self, obj: Any) -> bytes:  # type: ignore[override]
        turn = getattr(self._local, "turn", None)
        if turn is not None and isinstance(obj, dict) and obj.get("done") is True:
            obj = {
                **obj,
                "prompt_eval_count": turn["evaluated"],
                "prompt_eval_duration": turn["eval_ns"],
                "load_duration": 0,
            }
        return super()._line(obj)

    def _dispatch(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = h.path.split("?", 1)[0]
        if path == "/bench/stats" and method == "GET":
            with self._slots_free:
                payload = {
                    k: v
                    for k, v in vars(self.stats).items()
                    if k != "per_request" or "full" in h.path
                }
                payload["slots"] = len(self.slots)
                payload["port"] = self.port
            return self._json(h, 200, payload)
        if path == "/bench/reset" and method == "POST":
            length = int(h.headers.get("Content-Length") or 0)
            if length:
                h.rfile.read(length)
            self.reset()
            return self._json(h, 200, {"reset": True})
        return super()._dispatch(h, method)


def main(argv: list[str] | None = None) -> None:
    """Serve one host until killed (or stdin closes with ``--stdin``)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--model", action="append", default=[], help="installed (repeatable)")
    parser.add_argument("--slots", type=int, default=4, help="KV cache slots (default 4)")
    parser.add_argument("--ms-per-token", type=float, default=0.5, help="cold prompt cost")
    parser.add_argument(
        "--parallel-eval",
        action="store_true",
        help="evaluate prompts concurrently (default: one at a time, as a GPU)",
    )
    parser.add_argument("--tokens", type=int, default=30, help="answer pieces (default 30)")
    parser.add_argument("--rate", type=float, default=50.0, help="pieces/s (0: all at once)")
    parser.add_argument(
        "--early-headers",
        action="store_true",
        help="send the stream's status and headers before evaluating the prompt",
    )
    args = parser.parse_args(argv)
    server = CacheOllama(
        args.model or ["bench:latest"],
        host=args.host,
        port=args.port,
        slots=args.slots,
        ms_per_token=args.ms_per_token,
        serial_eval=not args.parallel_eval,
        answer_pieces=args.tokens,
        rate=args.rate,
        early_headers=args.early_headers,
    )
    print(f"cache fake Ollama on {server.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server._server.serve_forever()


if __name__ == "__main__":
    main()
