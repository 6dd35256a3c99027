"""Shared helpers of the benchmarks: timing, medians, sample text, the fake Ollama server.

The benchmark module contract
-----------------------------
Every benchmark is a module in ``bench/`` with a function::

    def run(quick: bool) -> list[dict]: ...

``run.py`` calls it in a fresh Python process (``python -c``, with ``bench/`` on
``sys.path`` and the repository root as working directory), so benchmarks never
share warm caches, threads or imported modules, and one that crashes or hangs
only loses its own rows. ``quick=True`` must keep the module's run to a few tens of
seconds. Whatever the module prints goes to the runner's stderr (progress is
welcome there). Each returned dict is one row of the results table:

==================  ========================================================================
key                 meaning
==================  ========================================================================
``group``           section of the table: ``"memory"``, ``"streaming"``, ``"ttft"``,
                    ``"server"``, ``"cli"``, ``"embedded"``, ...
``name``            what is measured, in words (``"chunks/s through the full chat chain"``)
``value``           ollang's figure: the MEDIAN of several runs (a number, or ``None`` if
                    it could not be measured; then say why in ``note``)
``unit``            unit of ``value`` and ``anchor_value`` (``"ms"``, ``"chunks/s"``, ``"x"``)
``anchor``          what ollang is compared with, measured in the same run
``anchor_value``    the anchor's median (number or ``None``)
``ratio``           ``value / anchor_value`` (or ``None``)
``goal``            the goal in words, naming what it applies to (``"ratio >= 0.8"``)
``passed``          ``True`` / ``False`` against the goal; ``None`` when there is no goal
``runs``            how many runs each median is taken over
==================  ========================================================================

Optional keys: ``note`` (a short string shown in the table, e.g. why a figure is
missing), ``details`` (anything JSON-serialisable; kept in ``results.json`` only).
Unknown keys are kept in ``results.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

Row = dict[str, Any]

REQUIRED_KEYS = (
    "group",
    "name",
    "value",
    "unit",
    "anchor",
    "anchor_value",
    "ratio",
    "goal",
    "passed",
    "runs",
)


def ensure_import_paths() -> None:
    """Make ``tests.fake_ollama`` and ``tests.net`` importable from ``bench/`` scripts (ollang
    itself is installed)."""
    for path in (str(ROOT), str(BENCH_DIR)):
        if path not in sys.path:
            sys.path.insert(0, path)


def row(
    group: str,
    name: str,
    value: float | None,
    unit: str,
    anchor: str,
    anchor_value: float | None,
    goal: str = "reported",
    passed: bool | None = None,
    runs: int = 1,
    **extra: Any,
) -> Row:
    """One result row (see the module docstring); ``ratio`` is computed here."""
    ratio = value / anchor_value if value is not None and anchor_value else None
    return {
        "group": group,
        "name": name,
        "value": value,
        "unit": unit,
        "anchor": anchor,
        "anchor_value": anchor_value,
        "ratio": ratio,
        "goal": goal,
        "passed": passed,
        "runs": runs,
        **extra,
    }


# -- timing -------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (which must not be empty)."""
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def timed(fn: Callable[[], Any]) -> float:
    """Seconds ``fn()`` takes (``perf_counter``)."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def log(message: str) -> None:
    """Progress on stderr (stdout is reserved for results)."""
    print(message, file=sys.stderr, flush=True)


# -- sample text ---------------------------------------------------------------------

_VOCAB = (
    "the of and to in is that it for was on are as with his they at be this from have or by "
    "one had not but what all were when we there can an your which their said if do will "
    "each about how up out them then she many some so these would other into has more her "
    "two like him see time could no make than first been its who now people my made over "
    "did down only way find use may water long little very after words called just where "
    "most know get through back much before go good new write our used me man too any day "
    "same right look think also around another came come work three word must because does "
    "part even place well such here take why things help put years different away again "
    "off went old number great tell men say small every found still between name should "
    "home big give air line set own under read last never us left end along while might "
    "next sound below saw something thought both few those always looked show large often "
    "together asked house world going want school important until form food keep children "
    "feet land side without boy once animals life enough took sometimes four head above "
    "kind began almost live page got earth need far hand high year mother light parts "
    "country father let night following picture being study second eyes soon times story "
    "boys since white days ever paper hard near sentence better best across during today "
    "others however sure means knew try told young miles sun ways thing whole hear example "
    "heard several change answer room sea against top turned learn point city play toward "
    "five using himself usually model memory context window token stream server question"
)
_WORDS = _VOCAB.split()


def english_text(rng: random.Random, chars: int = 300) -> str:
    """About ``chars`` characters of English-like prose (sentences of common words)."""
    sentences: list[str] = []
    length = 0
    while length < chars:
        words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 16))]
        sentence = " ".join(words).capitalize() + rng.choice(".....?!")
        sentences.append(sentence)
        length += len(sentence) + 1
    text = " ".join(sentences)
    if len(text) > chars:  # cut at a word boundary near `chars`, end like a sentence
        cut = text.rfind(" ", 0, chars)
        text = text[: cut if cut > chars // 2 else chars].rstrip(" .?!,") + "."
    return text


def chat_history(n: int, rng: random.Random, model: str = "fake") -> list[Any]:
    """``n`` alternating user/assistant messages of ~300 characters, oldest first.

    Assistant messages carry the response and usage metadata a chat model
    returns, as real turns store them (it is part of what each memory stores).
    """
    from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

    messages: list[BaseMessage] = []
    for i in range(n):
        text = english_text(rng, 300)
        if i % 2 == 0:
            messages.append(HumanMessage(text))
            continue
        usage = {"input_tokens": 900, "output_tokens": len(text) // 4, "total_tokens": 0}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        messages.append(
            AIMessage(
                text,
                response_metadata={"model_name": model, "done_reason": "stop"},
                usage_metadata=usage,  # type: ignore[arg-type]
            )
        )
    return messages


# -- disk ----------------------------------------------------------------------------


def bytes_on_disk(*paths: Path) -> int:
    """Total size of the files (missing ones count 0), e.g. a database with its -wal and -shm."""
    return sum(p.stat().st_size for p in paths if p.exists())


def sqlite_files(db: Path) -> list[Path]:
    """A database file with its WAL and shared-memory companions."""
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]


# -- the fake Ollama server ------------------------------------------------------------


# Run as a separate process by fake_ollama(). Real Ollama (Go's net/http) sends with
# TCP_NODELAY; Python's http.server does not, so without this every stream's first
# chunk (written right after the headers) waits ~40 ms for the client's delayed ACK,
# which would swamp every latency figure. No-op once tests/fake_ollama.py sets it.
_SERVER = """
import sys
sys.path.insert(0, {root!r})
from tests.fake_ollama import FakeOllama, Reply, iter_tokens

class NoDelayFakeOllama(FakeOllama):
    def _handler_class(self):
        handler = super()._handler_class()
        handler.disable_nagle_algorithm = True
        return handler

server = NoDelayFakeOllama(models=[{model!r}], port={port}, token_delay={delay})
server.default_reply = lambda kind, body: Reply(list(iter_tokens({tokens})))
server.start()
sys.stdin.read()  # serve until the parent closes our stdin (or dies)
server.stop()
"""


@contextlib.contextmanager
def fake_ollama(tokens: int, model: str = "bench", rate: float = 0.0) -> Iterator[str]:
    """``tests/fake_ollama.py`` in its own process, answering every chat with ``tokens`` tokens.

    Its own process, not a thread of ours: the server's JSON encoding must not
    compete with the client being measured for the GIL. With ``rate`` 0 it writes
    as fast as the client reads, in large writes, so the client is the bottleneck.

    Yields:
        The server's URL (``http://127.0.0.1:PORT``).

    Raises:
        FileNotFoundError: ``tests/fake_ollama.py`` is not there.
        RuntimeError: the server did not start within 15 s.
    """
    if not (ROOT / "tests" / "fake_ollama.py").exists():
        raise FileNotFoundError(ROOT / "tests" / "fake_ollama.py")
    ensure_import_paths()
    from tests.net import free_port

    port = free_port()
    code = _SERVER.format(
        root=str(ROOT), model=model, port=port, delay=1.0 / rate if rate else 0.0, tokens=tokens
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"fake Ollama exited with {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("fake Ollama did not start within 15 s") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- running benchmark modules -----------------------------------------------------------


@dataclass
class ModuleOutcome:
    """What running one benchmark module produced."""

    module: str
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0
    note: str | None = None  # why it was skipped or failed; None when it ran


_CHILD = """
import json, sys
sys.path[:0] = [{root!r}, {bench!r}]
import {module} as mod
rows = mod.run({quick!r})
with open({out!r}, "w", encoding="utf-8") as f:
    json.dump(rows, f, default=str)
"""


def run_module(module: str, quick: bool, timeout: float) -> ModuleOutcome:
    """Run ``bench/<module>.py``'s ``run(quick)`` in a fresh interpreter.

    A missing module, a crash, a timeout or malformed rows become a ``note``
    rather than an exception, so one broken benchmark never hides the others.
    """
    if not (BENCH_DIR / f"{module}.py").exists():
        return ModuleOutcome(module, note=f"skipped: bench/{module}.py is not there (yet)")
    fd, out_name = tempfile.mkstemp(prefix=f"bench-{module}-", suffix=".json")
    os.close(fd)
    out = Path(out_name)
    code = _CHILD.format(
        root=str(ROOT), bench=str(BENCH_DIR), module=module, quick=quick, out=str(out)
    )
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            stdout=sys.stderr,  # the child's chatter must not mix with our stdout
            timeout=timeout,
            check=False,
        )
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            return ModuleOutcome(module, seconds=seconds, note=f"failed (exit {proc.returncode})")
        rows = json.loads(out.read_text(encoding="utf-8") or "null")
    except subprocess.TimeoutExpired:
        return ModuleOutcome(
            module, seconds=time.perf_counter() - started, note=f"timed out after {timeout:.0f} s"
        )
    finally:
        out.unlink(missing_ok=True)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return ModuleOutcome(module, seconds=seconds, note="malformed: run() must return dicts")
    missing = sorted({k for r in rows for k in REQUIRED_KEYS if k not in r})
    if missing:
        for r in rows:
            for key in missing:
                r.setdefault(key, None)
        return ModuleOutcome(
            module, rows, seconds, note=f"rows lack {', '.join(missing)} (shown as blank)"
        )
    return ModuleOutcome(module, rows, seconds)
