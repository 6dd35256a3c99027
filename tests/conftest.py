"""Shared fixtures: a fresh Ollama-protocol server per test, and an isolated data dir."""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.fake_ollama import FakeOllama

if TYPE_CHECKING:
    from ollang.memory import ChatStore


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile ollang's modules once, before the hundreds of CLI and server processes the
    suite starts. An editable install is never compiled, and with
    ``PYTHONDONTWRITEBYTECODE`` set (as on CI machines) no process writes its bytecode:
    each would compile the whole package again (0.3 s of every CLI start here).
    ``compileall`` writes the caches even so; every process then reads them."""
    import compileall

    package = Path(__file__).resolve().parent.parent / "ollang"
    compileall.compile_dir(package, quiet=1, workers=1)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch) -> None:
    """Never touch the real ~/.local/share/ollang or a real Ollama from a test."""
    monkeypatch.setenv("OLLANG_HOME", str(tmp_path_factory.mktemp("ollang-home")))
    monkeypatch.delenv("OLLANG_MODEL", raising=False)
    monkeypatch.delenv("OLLANG_BACKEND", raising=False)
    monkeypatch.delenv("OLLANG_DEBUG", raising=False)
    monkeypatch.delenv("OLLANG_READ_TIMEOUT", raising=False)
    # Server tests are about the Ollama path unless they ask for the embedded one.
    monkeypatch.setenv("OLLANG_SERVER_BACKEND", "ollama")


@pytest.fixture
def fake_ollama(monkeypatch) -> Iterator[FakeOllama]:
    """A started FakeOllama; OLLAMA_HOST points at it for the test's duration."""
    with FakeOllama() as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host_port)
        yield server


# -- the reliability ledger (issue 6) ----------------------------------------------------
# Tests marked ``@pytest.mark.reliability("Group", "case")`` are the rows of the table in
# docs/reliability.md. A test that sends messages accounts for them with the ``ledger``
# fixture; with OLLANG_RELIABILITY_REPORT=FILE the run writes the table to FILE: between
# its ``<!-- reliability:start -->`` and ``<!-- reliability:end -->`` markers when it has
# them (OLLANG_RELIABILITY_REPORT=docs/reliability.md), else as the whole file.


@dataclass
class Ledger:
    """What one test sent and what of it is still stored afterwards."""

    sent: int = 0
    lost: int = 0
    note: str = ""

    def account(self, sent: Iterable[str], stored: Iterable[str]) -> int:
        """Count ``sent`` texts missing from ``stored`` (multiset); returns the number lost."""
        sent = list(sent)
        left = Counter(stored)
        lost = 0
        for text in sent:
            if left[text] > 0:
                left[text] -= 1
            else:
                lost += 1
        self.sent += len(sent)
        self.lost += lost
        return lost


_LEDGERS: dict[str, Ledger] = {}
_OUTCOMES: dict[str, tuple[str, str, str]] = {}  # nodeid -> (group, case, outcome)


@pytest.fixture
def ledger(request) -> Ledger:
    """Accounting of messages sent/lost for the reliability table."""
    return _LEDGERS.setdefault(request.node.nodeid, Ledger())


def _case_of(item: pytest.Item) -> tuple[str, str] | None:
    marker = item.get_closest_marker("reliability")
    if marker is None:
        return None
    group, case = marker.args
    param = getattr(item, "callspec", None)
    if param is not None and marker.kwargs.get("each"):
        case = f"{case} [{param.id}]"  # one row per parameter; else one row for all
    return group, case


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    case = _case_of(item)
    if case is not None and (report.when == "call" or report.outcome != "passed"):
        previous = _OUTCOMES.get(item.nodeid)
        if previous is None or previous[2] == "passed":
            _OUTCOMES[item.nodeid] = (*case, report.outcome)
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("OLLANG_RELIABILITY_REPORT")
    if not target or not _OUTCOMES:
        return
    rows: dict[tuple[str, str], list[tuple[str, Ledger]]] = {}
    for nodeid, (group, case, outcome) in _OUTCOMES.items():
        rows.setdefault((group, case), []).append((outcome, _LEDGERS.get(nodeid, Ledger())))
    lines = [
        "| Group | Case | Result | Messages sent | Messages lost | Measured |",
        "|---|---|---|---|---|---|",
    ]
    order = ["Faults", "Load", "Hostile input", "Security", "Properties"]
    for (group, case), items in sorted(
        rows.items(), key=lambda r: [*order, r[0][0]].index(r[0][0])
    ):
        passed = sum(1 for outcome, _ in items if outcome == "passed")
        result = items[0][0] if len(items) == 1 else f"{passed}/{len(items)} passed"
        sent = sum(ledger.sent for _, ledger in items)
        lost = sum(ledger.lost for _, ledger in items)
        notes = "; ".join(ledger.note for _, ledger in items if ledger.note)
        lines.append(f"| {group} | {case} | {result} | {sent or '—'} | {lost} | {notes} |")
    tried = len(_OUTCOMES)
    passed = sum(1 for *_x, outcome in _OUTCOMES.values() if outcome == "passed")
    total_sent = sum(ledger.sent for ledger in _LEDGERS.values())
    total_lost = sum(ledger.lost for ledger in _LEDGERS.values())
    lines.append(
        f"| **All** | {len(rows)} cases, {tried} tests | **{passed}/{tried} passed** "
        f"| {total_sent} | **{total_lost}** | |"
    )
    _write_report(Path(target), "\n".join(lines) + "\n")


_REPORT_START, _REPORT_END = "<!-- reliability:start -->", "<!-- reliability:end -->"


def _write_report(path: Path, table: str) -> None:
    """The table into ``path``: between its markers if it has them, else as the whole file."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    start, end = text.find(_REPORT_START), text.find(_REPORT_END)
    if 0 <= start < end:
        head = text[: start + len(_REPORT_START)]
        text = f"{head}\n{table}{text[end:]}"
    else:
        text = table
    path.write_text(text, encoding="utf-8")


# -- store backends (PostgreSQL) --------------------------------------------------------
# The store test modules (test_memory, test_memory_owner, test_memory_props) run every
# test against each backend by this one parametrization. PostgreSQL comes from
# tests/pg.py (CI's server or a throwaway cluster); without one, its cases are skipped,
# all with the same one reason.
STORE_BACKENDS = ["memory", "sqlite", "postgresql"]


@contextlib.contextmanager
def open_test_store(kind: str, directory: Path) -> Iterator[ChatStore]:
    """A fresh, empty store of ``kind``: SQLite in ``directory``, PostgreSQL in a new schema."""
    from ollang.memory import InMemoryChatStore, SQLiteChatStore

    if kind == "memory":
        with InMemoryChatStore() as store:
            yield store
    elif kind == "sqlite":
        with SQLiteChatStore(directory / "s.db") as store:
            yield store
    else:
        from tests import pg

        try:
            pg.server()
        except RuntimeError as err:
            pytest.skip(str(err))
        from ollang.memory.postgres.store import PostgresChatStore

        with pg.fresh_schema_url() as url, PostgresChatStore(url) as store:
            yield store


@pytest.fixture(params=STORE_BACKENDS)
def store(request, tmp_path) -> Iterator[ChatStore]:
    """An empty store, once per backend."""
    with open_test_store(request.param, tmp_path) as s:
        yield s
