"""The chat stores: behaviour shared by both, SQLite's durability and safety, open_store."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
import stat
import threading
import time
import uuid
from pathlib import Path

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    RemoveMessage,
    SystemMessage,
    ToolMessage,
    message_chunk_to_message,
)

from ollang.memory import (
    InMemoryChatStore,
    SearchHit,
    SessionInfo,
    SQLiteChatStore,
    message_created,
    message_from_dict,
    message_status,
    message_to_dict,
    open_store,
    set_message_status,
)
from ollang.memory.errors import (
    NotAnOllangDatabaseError,
    SessionExistsError,
    SessionNotFoundError,
    StoreError,
    UnknownStoreURLError,
)
from ollang.memory.sqlite.migrations import APPLICATION_ID, MIGRATIONS

# `store` (tests/conftest.py): an empty store, once per backend (memory, SQLite, PostgreSQL).


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "sessions.db"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def contents(messages: list[BaseMessage]) -> list[object]:
    return [m.content for m in messages]


def turn(n: int) -> list[BaseMessage]:
    return [HumanMessage(f"question {n}"), AIMessage(f"answer {n}")]


def expected(original: BaseMessage, stored: BaseMessage) -> BaseMessage:
    """What the store should return for ``original``: the same, with status and created explicit."""
    want = original.model_copy(deep=True)
    if isinstance(want, AIMessageChunk):  # chunks are stored as the full message
        want = message_chunk_to_message(want)
    want.response_metadata["ollang_status"] = message_status(original)
    want.response_metadata["ollang_created"] = message_created(stored)
    return want


# -- order, limit, isolation ---------------------------------------------------------
def test_messages_come_back_oldest_first_and_limit_takes_the_newest(store):
    for n in range(5):
        store.add_messages("s", turn(n))
    everything = store.get_messages("s")
    assert contents(everything) == [t for n in range(5) for t in (f"question {n}", f"answer {n}")]
    assert contents(store.get_messages("s", limit=3)) == ["answer 3", "question 4", "answer 4"]
    assert contents(store.get_messages("s", limit=100)) == contents(everything)
    assert store.get_messages("s", limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        store.get_messages("s", limit=-1)


def test_unknown_session_reads_as_empty_and_is_not_created(store):
    assert store.get_messages("nobody") == []
    assert store.get_messages("nobody", limit=5) == []
    assert store.get_session("nobody") is None
    assert store.list_sessions() == []


def test_adding_nothing_creates_nothing(store):
    store.add_messages("s", [])
    assert store.get_session("s") is None


def test_sessions_are_isolated(store):
    store.add_messages("a", [HumanMessage("for a")])
    store.add_messages("b", [HumanMessage("for b")])
    assert contents(store.get_messages("a")) == ["for a"]
    assert contents(store.get_messages("b")) == ["for b"]
    store.delete_session("a")
    assert contents(store.get_messages("b")) == ["for b"]


def test_same_message_id_in_two_sessions_is_two_messages(store):
    store.add_messages("a", [HumanMessage("one", id="shared")])
    store.add_messages("b", [HumanMessage("two", id="shared")])
    assert contents(store.get_messages("a")) == ["one"]
    assert contents(store.get_messages("b")) == ["two"]


# -- ids and upsert --------------------------------------------------------------------
def test_add_assigns_uuid_hex_ids_on_the_objects_passed_in(store):
    human, ai = HumanMessage("hi"), AIMessage("hello", id="my-own-id")
    store.add_messages("s", [human, ai])
    assert human.id is not None and uuid.UUID(hex=human.id).hex == human.id
    assert ai.id == "my-own-id"
    assert [m.id for m in store.get_messages("s")] == [human.id, "my-own-id"]


def test_upsert_replaces_in_place_keeping_position_and_created_time(store):
    human = HumanMessage("go")
    reply = AIMessage("par", response_metadata={"ollang_status": "interrupted"})
    store.add_messages("s", [human, reply])
    first_created = message_created(store.get_messages("s")[1])
    store.add_messages("s", [HumanMessage("later question")])
    # The streaming reply is flushed again, then finalised: still one message, same place.
    for text, status in [("partial", "interrupted"), ("partial answer.", "complete")]:
        store.add_messages(
            "s",
            [AIMessage(text, id=reply.id, response_metadata={"ollang_status": status})],
        )
    stored = store.get_messages("s")
    assert contents(stored) == ["go", "partial answer.", "later question"]
    assert [m.id for m in stored][:2] == [human.id, reply.id]
    assert message_status(stored[1]) == "complete"
    assert message_created(stored[1]) == first_created
    assert store.get_session("s").message_count == 3


def test_upsert_of_the_same_id_twice_in_one_call_stores_it_once(store):
    store.add_messages("s", [AIMessage("v1", id="x"), HumanMessage("q"), AIMessage("v2", id="x")])
    assert contents(store.get_messages("s")) == ["v2", "q"]
    assert store.get_session("s").message_count == 2


def test_uuid_and_other_ids_round_trip_and_delete(store):
    ids = [uuid.uuid4().hex, uuid.uuid4().hex.upper(), "msg-1", "0" * 32, "", "ünï ✓"]
    store.add_messages("s", [HumanMessage(str(i), id=mid) for i, mid in enumerate(ids)])
    assert [m.id for m in store.get_messages("s")] == ids
    assert store.delete_messages("s", [ids[1], ids[3], "absent"]) == 2
    assert [m.id for m in store.get_messages("s")] == [ids[0], ids[2], ids[4], ids[5]]


# -- round trip ----------------------------------------------------------------------
ROUND_TRIP = {
    "unicode": HumanMessage("Grüße, 世界! Ünïcödé ∑ \u200b zero-width"),
    "nul": HumanMessage("before\x00after\x00"),
    "emoji": AIMessage("🎉👩🏽‍💻🇫🇷 done"),
    "long": HumanMessage("long text " * 100_000),
    "empty": AIMessage(""),
    "blocks": HumanMessage(
        [
            {"type": "text", "text": "What is in this image?"},
            {"type": "image", "base64": "iVBORw0KGgo=", "mime_type": "image/png"},
            "a bare string block",
        ]
    ),
    "reasoning_usage_metadata": AIMessage(
        "The answer is 42.",
        additional_kwargs={"reasoning_content": "Let me think…", "other": [1, {"x": None}]},
        response_metadata={
            "model_name": "llama3",
            "done_reason": "stop",
            "total_duration": 123456789,
            "ollang_status": "complete",
            "ollang_created": 1700000000.25,
        },
        usage_metadata={
            "input_tokens": 10,
            "output_tokens": 5,
            "total_tokens": 15,
            "output_token_details": {"reasoning": 3},
        },
    ),
    "interrupted": AIMessage("half", response_metadata={"ollang_status": "interrupted"}),
    "error": AIMessage("oops", response_metadata={"ollang_status": "error"}),
    "tool_calls": AIMessage(
        "",
        tool_calls=[{"name": "weather", "args": {"city": "Paris"}, "id": "call-1"}],
        invalid_tool_calls=[{"name": "bad", "args": "{oops", "id": "call-2", "error": "json"}],
    ),
    "tool": ToolMessage("18°C", tool_call_id="call-1", artifact={"raw": [18]}, status="error"),
    "system_named": SystemMessage("Be brief.", name="rules"),
    "named_human": HumanMessage("hi", name="alice"),
    "chat": ChatMessage("aside", role="narrator"),
    "function": FunctionMessage("{}", name="lookup"),
    "chunk": AIMessageChunk("streamed", response_metadata={"model_name": "m"}),
}


@pytest.mark.parametrize("name", list(ROUND_TRIP))
def test_every_field_round_trips(store, name):
    original = ROUND_TRIP[name].model_copy(deep=True)
    before = time.time()
    store.add_messages("s", [original])
    (stored,) = store.get_messages("s")
    want = expected(original, stored)
    assert stored == want
    assert type(stored) is type(want)
    assert stored.content == ROUND_TRIP[name].content  # nothing lost in the text itself
    created = message_created(stored)
    given = message_created(ROUND_TRIP[name])
    assert created == given if given is not None else before <= created <= time.time()


def test_reads_return_new_objects_and_writes_copy(store):
    msg = AIMessage([{"type": "text", "text": "x"}], additional_kwargs={"k": [1]})
    store.add_messages("s", [msg])
    msg.content[0]["text"] = "changed by caller after storing"
    msg.additional_kwargs["k"].append(2)
    first = store.get_messages("s")[0]
    first.content[0]["text"] = "changed by reader"
    first.response_metadata["ollang_status"] = "error"
    again = store.get_messages("s")[0]
    assert again is not first
    assert again.content == [{"type": "text", "text": "x"}]
    assert again.additional_kwargs == {"k": [1]}
    assert message_status(again) == "complete"


def test_invalid_messages_are_rejected_and_nothing_of_the_call_is_stored(store):
    bad_status = AIMessage("x", response_metadata={"ollang_status": "exploded"})
    with pytest.raises(ValueError, match="ollang status"):
        store.add_messages("s", [HumanMessage("fine"), bad_status])
    with pytest.raises(ValueError, match="remove"):
        store.add_messages("s", [HumanMessage("fine"), RemoveMessage(id="r")])
    assert store.get_messages("s") == []


# -- sessions --------------------------------------------------------------------------
def test_list_sessions_fields_and_most_recently_updated_first(store):
    before = time.time()
    store.add_messages(
        "a",
        [
            HumanMessage("Plan a trip\nto Rome"),
            AIMessage("Sure", response_metadata={"model_name": "llama3"}),
        ],
    )
    store.add_messages("b", [HumanMessage("b1")])
    store.add_messages("a", [HumanMessage("more")])
    sessions = store.list_sessions()
    assert [s.id for s in sessions] == ["a", "b"]
    a = sessions[0]
    assert isinstance(a, SessionInfo)
    assert (a.title, a.model, a.message_count) == ("Plan a trip", "llama3", 3)
    assert before <= a.created < a.updated <= time.time()
    assert store.get_session("a") == a
    store.update_session("b", title="Renamed")
    assert [s.id for s in store.list_sessions()] == ["b", "a"]


def test_title_is_derived_from_the_first_human_message_unless_set(store):
    long = "x" * 100
    store.add_messages("s", [SystemMessage("sys"), AIMessage("greeting")])
    assert store.get_session("s").title is None
    store.add_messages("s", [HumanMessage("\n   \n  " + long + "\nsecond line")])
    store.add_messages("s", [HumanMessage("not the title")])
    assert store.get_session("s").title == "x" * 60
    store.update_session("s", title="Chosen")
    store.add_messages("s", [HumanMessage("still not the title")])
    assert store.get_session("s").title == "Chosen"
    store.update_session("t", title="Explicit first")
    store.add_messages("t", [HumanMessage("derived?")])
    assert store.get_session("t").title == "Explicit first"


def test_update_session_creates_and_sets_model_and_ai_messages_record_their_model(store):
    store.update_session("s", model="qwen3")
    info = store.get_session("s")
    assert (info.title, info.model, info.message_count) == (None, "qwen3", 0)
    store.add_messages("s", [AIMessage("a", response_metadata={"model": "gemma3"})])
    assert store.get_session("s").model == "gemma3"
    store.add_messages("s", [HumanMessage("no model here")])
    assert store.get_session("s").model == "gemma3"
    store.update_session("s", title="T")  # model=None leaves it
    assert store.get_session("s").model == "gemma3"


def test_rename_session(store):
    store.add_messages("old", turn(1))
    store.update_session("old", title="Kept")
    store.rename_session("old", "new")
    assert store.get_session("old") is None and store.get_messages("old") == []
    assert contents(store.get_messages("new")) == ["question 1", "answer 1"]
    assert store.get_session("new").title == "Kept"
    store.rename_session("new", "new")  # to itself: nothing to do
    with pytest.raises(SessionNotFoundError) as missing:
        store.rename_session("missing", "other")
    assert missing.value.session_id == "missing"
    store.add_messages("taken", [HumanMessage("t")])
    with pytest.raises(SessionExistsError) as exists:
        store.rename_session("new", "taken")
    assert exists.value.session_id == "taken"
    assert contents(store.get_messages("new")) == ["question 1", "answer 1"]
    assert contents(store.get_messages("taken")) == ["t"]


def test_delete_session(store):
    store.add_messages("s", [HumanMessage("unique-word-zebra")])
    store.add_messages("keep", [HumanMessage("zebra too")])
    assert store.delete_session("s") is True
    assert store.delete_session("s") is False
    assert store.get_session("s") is None and store.get_messages("s") == []
    assert [h.session_id for h in store.search("zebra")] == ["keep"]
    store.add_messages("s", [HumanMessage("fresh")])  # the id can be reused
    assert contents(store.get_messages("s")) == ["fresh"]


def test_delete_messages(store):
    msgs = [HumanMessage(f"m{i}") for i in range(5)]
    store.add_messages("s", msgs)
    assert store.delete_messages("s", [msgs[1].id, msgs[3].id, msgs[3].id, "nope"]) == 2
    assert contents(store.get_messages("s")) == ["m0", "m2", "m4"]
    assert store.get_session("s").message_count == 3
    assert store.delete_messages("s", []) == 0
    assert store.delete_messages("no-session", [msgs[0].id]) == 0
    store.add_messages("s", [msgs[1]])  # re-adding a deleted message appends it
    assert contents(store.get_messages("s")) == ["m0", "m2", "m4", "m1"]
    assert store.get_session("s").message_count == 4


def test_context_manager_closes(tmp_path):
    with SQLiteChatStore(tmp_path / "c.db") as s:
        s.add_messages("s", [HumanMessage("x")])
    with pytest.raises(StoreError, match="closed"):
        s.get_messages("s")
    with InMemoryChatStore() as m:
        m.add_messages("s", [HumanMessage("x")])
    assert contents(m.get_messages("s")) == ["x"]


# -- search ----------------------------------------------------------------------------
def test_search_finds_words_case_insensitively_newest_first(store):
    store.add_messages("s1", [HumanMessage("Where is the Eiffel Tower?")])
    store.add_messages("s2", [AIMessage("The eiffel tower is in Paris.")])
    store.add_messages("s2", [HumanMessage("unrelated")])
    hits = store.search("EIFFEL tower")
    assert [(h.session_id, h.role) for h in hits] == [("s2", "ai"), ("s1", "human")]
    assert all(isinstance(h, SearchHit) for h in hits)
    stored = store.get_messages("s2")[0]
    assert hits[0].message_id == stored.id and hits[0].created == message_created(stored)
    assert "**eiffel**" in hits[0].snippet.lower() and "paris" in hits[0].snippet.lower()
    assert [h.message_id for h in store.search("eiffel paris")] == [stored.id]  # all words
    assert len(store.search("tower", limit=1)) == 1
    assert store.search("absent") == []


def test_search_sees_updates_and_deletes(store):
    msg = AIMessage("draft about kangaroos")
    store.add_messages("s", [msg])
    store.add_messages("s", [AIMessage("final about wombats", id=msg.id)])
    assert store.search("kangaroos") == []
    assert [h.message_id for h in store.search("wombats")] == [msg.id]
    store.delete_messages("s", [msg.id])
    assert store.search("wombats") == []


def test_search_looks_into_text_blocks(store):
    store.add_messages(
        "s",
        [
            HumanMessage(
                [
                    {"type": "text", "text": "describe the platypus"},
                    {"type": "image", "url": "https://x/y.png"},
                ]
            )
        ],
    )
    assert [h.role for h in store.search("platypus")] == ["human"]


@pytest.mark.parametrize(
    "query",
    [
        '"',
        "a OR",
        "*",
        "NEAR(",
        "-x",
        "AND",
        "NOT",
        "content:",
        "^",
        '""""',
        "(",
        ")",
        "'",
        "\x00",
        "a AND OR NOT",
        'NEAR("a" "b", 2)',
        "x*",
        "{content}: a",
        "🎉",
        "",
        "   ",
    ],
)
def test_hostile_queries_are_plain_words_never_errors(store, query):
    store.add_messages("s", [HumanMessage('x-ray a or b AND NOT near "quoted" content')])
    hits = store.search(query)
    assert isinstance(hits, list)
    words = ["".join(ch for ch in w if ch.isalnum()).lower() for w in query.split()]
    words = [w for w in words if w]
    text = "x-ray a or b and not near quoted content"
    if words and all(w in text for w in words):
        assert [h.role for h in hits] == ["human"], f"{query!r} should match as plain words"
    elif not words:
        assert hits == []


def test_search_with_quotes_inside_words(store):
    store.add_messages("s", [HumanMessage('she said "hello" twice')])
    assert len(store.search('said "hello"')) == 1
    assert len(store.search('"hello')) == 1


# -- message helpers -------------------------------------------------------------------
def test_status_helpers():
    msg = AIMessage("x")
    assert message_status(msg) == "complete" and message_created(msg) is None
    set_message_status(msg, "interrupted")
    assert msg.response_metadata["ollang_status"] == "interrupted"
    assert message_status(msg) == "interrupted"
    with pytest.raises(ValueError):
        set_message_status(msg, "done")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        message_created(AIMessage("x", response_metadata={"ollang_created": "yesterday"}))


def test_message_dict_is_readable_and_exact():
    msg = AIMessage(
        "Paris.",
        id="m1",
        additional_kwargs={"reasoning_content": "The user asks..."},
        response_metadata={"model_name": "llama3", "ollang_created": 1.5},
        usage_metadata={"input_tokens": 3, "output_tokens": 1, "total_tokens": 4},
    )
    data = message_to_dict(msg)
    assert data == {
        "id": "m1",
        "role": "ai",
        "content": "Paris.",
        "reasoning": "The user asks...",
        "status": "complete",
        "created": 1.5,
        "usage": {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4},
        "response_metadata": {"model_name": "llama3"},
    }
    back = message_from_dict(data)
    assert message_to_dict(back) == data
    assert back == expected(msg, back)
    assert message_to_dict(HumanMessage("hi"))["created"] is None
    tool = message_to_dict(ToolMessage("r", tool_call_id="c", status="error"))
    assert (tool["tool_call_id"], tool["tool_status"], tool["status"]) == ("c", "error", "complete")
    assert message_to_dict(ChatMessage("x", role="narrator"))["chat_role"] == "narrator"


def test_message_dict_rejects_what_it_cannot_represent():
    with pytest.raises(ValueError, match="remove"):
        message_to_dict(RemoveMessage(id="x"))
    with pytest.raises(ValueError, match="role"):
        message_from_dict({"role": "robot", "content": "x"})
    with pytest.raises(ValueError, match="key"):
        message_from_dict({"role": "human", "content": "x", "mystery": 1})
    with pytest.raises(ValueError, match="status"):
        message_from_dict({"role": "human", "content": "x", "status": "weird"})


# == SQLite only ====================================================================
def test_sqlite_reopen_persists_everything(db_path):
    with SQLiteChatStore(db_path) as s:
        s.add_messages("s", [*turn(1), ToolMessage("t", tool_call_id="c")])
        s.update_session("s", title="T", model="m")
        before_msgs, before_info = s.get_messages("s"), s.get_session("s")
    with SQLiteChatStore(db_path) as s:
        assert s.get_messages("s") == before_msgs
        assert s.get_session("s") == before_info
        assert s.list_sessions() == [before_info]


def test_sqlite_creates_missing_parent_directories(tmp_path):
    path = tmp_path / "a" / "b" / "c" / "sessions.db"
    with SQLiteChatStore(path) as s:
        s.add_messages("s", [HumanMessage("x")])
    assert path.is_file()


def test_sqlite_initialises_an_empty_file(db_path):
    db_path.touch()
    with SQLiteChatStore(db_path) as s:
        s.add_messages("s", [HumanMessage("x")])
    assert db_path.stat().st_size > 0


def _files(directory: Path) -> dict[str, str]:
    return {p.name: sha256(p) for p in directory.iterdir()}


def test_sqlite_refuses_a_file_that_is_not_sqlite_and_leaves_it_alone(db_path):
    db_path.write_bytes(b"hello world" * 100)
    before = _files(db_path.parent)
    with pytest.raises(NotAnOllangDatabaseError) as info:
        SQLiteChatStore(db_path)
    assert info.value.path == str(db_path) and "not an SQLite database" in str(info.value)
    assert _files(db_path.parent) == before


def test_sqlite_refuses_another_programs_database_and_leaves_it_alone(db_path):
    other = sqlite3.connect(db_path)
    other.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
    other.execute("INSERT INTO notes(body) VALUES ('precious')")
    other.commit()
    other.close()
    before = sha256(db_path)
    with pytest.raises(NotAnOllangDatabaseError, match="notes"):
        SQLiteChatStore(db_path)
    assert sha256(db_path) == before
    assert sqlite3.connect(db_path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_sqlite_refuses_a_database_with_another_application_id(db_path):
    other = sqlite3.connect(db_path)
    other.execute("PRAGMA application_id = 1234")
    other.commit()
    other.close()
    before = sha256(db_path)
    with pytest.raises(NotAnOllangDatabaseError, match="application_id"):
        SQLiteChatStore(db_path)
    assert sha256(db_path) == before


def test_sqlite_refuses_a_directory(tmp_path):
    with pytest.raises(StoreError, match="directory"):
        SQLiteChatStore(tmp_path)


def test_sqlite_marks_the_file_and_records_migrations_once(db_path):
    SQLiteChatStore(db_path).close()
    db = sqlite3.connect(db_path)
    recorded = "SELECT name, applied_at FROM _ollang_migrations ORDER BY rowid"
    applied = db.execute(recorded).fetchall()
    assert [name for name, _ in applied] == [name for name, _ in MIGRATIONS]
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    SQLiteChatStore(db_path).close()
    db = sqlite3.connect(db_path)
    assert db.execute(recorded).fetchall() == applied  # nothing re-applied
    db.close()


def test_sqlite_refuses_a_database_from_a_newer_ollang(db_path):
    SQLiteChatStore(db_path).close()
    db = sqlite3.connect(db_path)
    db.execute("INSERT INTO _ollang_migrations VALUES ('m999_from_the_future', 0)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer ollang") as info:
        SQLiteChatStore(db_path)
    assert not isinstance(info.value, NotAnOllangDatabaseError)


def test_sqlite_last_n_query_is_an_index_range_scan(db_path):
    with SQLiteChatStore(db_path) as s:
        for n in range(30):
            s.add_messages(f"s{n % 3}", turn(n))
        executed: list[str] = []  # the SQL get_messages really runs, parameters filled in
        s._conn().set_trace_callback(executed.append)
        assert len(s.get_messages("s1", limit=4)) == 4
        s._conn().set_trace_callback(None)
    (query,) = [sql for sql in executed if sql.lstrip().upper().startswith("SELECT")]
    db = sqlite3.connect(db_path)
    plan = " | ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + query))
    db.close()
    assert "SEARCH messages USING INDEX messages_by_session (session_key=?)" in plan, plan
    assert "USING INDEX" in plan or "USING COVERING INDEX" in plan
    assert "SCAN messages" not in plan and "TEMP B-TREE" not in plan, plan


def test_sqlite_search_index_does_not_store_text_twice_and_stays_consistent(db_path):
    with SQLiteChatStore(db_path) as s:
        for n in range(20):
            s.add_messages(f"s{n % 3}", turn(n))
        s.add_messages("s0", [AIMessage("rewritten", id=s.get_messages("s0")[-1].id)])
        s.delete_messages("s1", [m.id for m in s.get_messages("s1")[:3]])
        s.delete_session("s2")
        s.rename_session("s0", "renamed")
        assert {h.session_id for h in s.search("question")} == {"renamed", "s1"}
    db = sqlite3.connect(db_path)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "messages_fts_content" not in tables  # external content: text lives only in messages
    # Checks the index against the messages table too (rank=1): triggers kept it in sync.
    db.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    db.close()


def test_sqlite_writes_are_transactions_that_wait_then_fail_cleanly(db_path):
    with SQLiteChatStore(db_path, timeout=0.2) as s:
        s.add_messages("s", [HumanMessage("before")])
        blocker = sqlite3.connect(db_path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        try:
            with pytest.raises(StoreError) as info:
                s.add_messages("s", turn(1))
            assert str(db_path) in str(info.value) and "busy" in info.value.hint
            assert contents(s.get_messages("s")) == ["before"]  # readers are not blocked
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        s.add_messages("s", turn(1))
        assert contents(s.get_messages("s")) == ["before", "question 1", "answer 1"]
        assert s.get_session("s").message_count == 3


def test_sqlite_read_only_database_reads_but_refuses_writes(db_path):
    with SQLiteChatStore(db_path) as s:
        s.add_messages("s", turn(1))
    db_path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)  # 0o444
    try:
        before = sha256(db_path)
        # As root the file mode is not enforced, so read-only must be asked for.
        root_bypasses = os.access(db_path, os.W_OK)
        with SQLiteChatStore(db_path, read_only=root_bypasses) as ro:
            assert contents(ro.get_messages("s")) == ["question 1", "answer 1"]
            assert [i.id for i in ro.list_sessions()] == ["s"]
            assert ro.search("question")[0].session_id == "s"
            for write in (
                lambda: ro.add_messages("s", turn(2)),
                lambda: ro.update_session("s", title="x"),
                lambda: ro.delete_session("s"),
                lambda: ro.rename_session("s", "t"),
            ):
                with pytest.raises(StoreError) as info:
                    write()
                assert str(db_path) in str(info.value)
            assert contents(ro.get_messages("s")) == ["question 1", "answer 1"]
        assert sha256(db_path) == before
    finally:
        db_path.chmod(0o644)


def test_sqlite_read_only_mode_even_for_a_writable_file(db_path):
    with SQLiteChatStore(db_path) as s:
        s.add_messages("s", turn(1))
    with SQLiteChatStore(db_path, read_only=True) as ro:
        assert contents(ro.get_messages("s", limit=1)) == ["answer 1"]
        with pytest.raises(StoreError, match="read-only"):
            ro.add_messages("s", turn(2))
    with pytest.raises(StoreError, match="no such file"):
        SQLiteChatStore(db_path.with_name("missing.db"), read_only=True)


def test_sqlite_unwritable_directory_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError) as info:
        SQLiteChatStore(blocker / "sub" / "sessions.db")  # parent "directory" is a file
    assert str(blocker / "sub") in str(info.value)


def test_sqlite_threads_share_a_store(db_path):
    with SQLiteChatStore(db_path) as s:
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            try:
                for i in range(50):
                    s.add_messages("shared", [HumanMessage(f"t{n}-{i}")])
                    s.get_messages("shared", limit=5)
            except BaseException as err:  # surfaced by the assert below
                errors.append(err)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        stored = contents(s.get_messages("shared"))
        assert len(stored) == 400 and len(set(stored)) == 400
        for n in range(8):
            assert [c for c in stored if c.startswith(f"t{n}-")] == [f"t{n}-{i}" for i in range(50)]
        assert s.get_session("shared").message_count == 400


def _process_worker(path: str, n: int) -> None:
    with SQLiteChatStore(path) as s:
        for i in range(50):
            s.add_messages("shared", [HumanMessage(f"p{n}-{i}"), AIMessage(f"p{n}-{i} reply")])


def test_sqlite_processes_share_a_database(db_path):
    SQLiteChatStore(db_path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_worker, args=(str(db_path), n)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with SQLiteChatStore(db_path) as s:
        stored = s.get_messages("shared")
        assert s.get_session("shared").message_count == 400
    texts = contents(stored)
    assert len(texts) == 400 and len(set(texts)) == 400 and len({m.id for m in stored}) == 400
    for n in range(4):
        mine = [t for t in texts if t.startswith(f"p{n}-")]
        assert mine == [x for i in range(50) for x in (f"p{n}-{i}", f"p{n}-{i} reply")]
    db = sqlite3.connect(db_path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


# == open_store =====================================================================
def test_open_store_default_is_sqlite_in_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("OLLANG_HOME", str(tmp_path / "home"))
    with open_store() as s:
        assert isinstance(s, SQLiteChatStore)
        assert s.path == tmp_path / "home" / "sessions.db"
    assert (tmp_path / "home" / "sessions.db").is_file()


def test_open_store_url_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///rel/x.db") as s:
        assert isinstance(s, SQLiteChatStore) and s.path == Path("rel/x.db")
        s.add_messages("s", [HumanMessage("x")])
    assert (tmp_path / "rel" / "x.db").is_file()
    absolute = tmp_path / "abs.db"
    with open_store(f"sqlite:///{absolute}") as s:  # sqlite:////abs/path
        assert s.path == absolute
    with open_store(f"sqlite:///{absolute}?mode=ro") as s:
        assert s.read_only
    with open_store(str(tmp_path / "bare.db")) as s:
        assert isinstance(s, SQLiteChatStore) and s.path == tmp_path / "bare.db"
    assert isinstance(open_store("memory://"), InMemoryChatStore)


@pytest.mark.parametrize(
    ("url", "not_yet"),
    [
        ("redis://localhost:6379/0", True),
        ("postgresql+psycopg://u@h/db", False),  # postgresql:// itself: test_store_postgres
        ("ftp://example.com/x", False),
        ("sqlite://relative.db", False),
        ("sqlite:///:memory:", False),
        ("sqlite:///x.db?cache=shared", False),
        ("memory://somewhere", False),
        ("", False),
    ],
)
def test_open_store_unknown_urls(url, not_yet):
    with pytest.raises(UnknownStoreURLError) as info:
        open_store(url)
    text = str(info.value)
    assert "sqlite:///PATH" in text and "memory://" in text
    assert ("not supported yet" in text) is not_yet


def _fts_consistent(db_path) -> None:
    """The search index holds exactly the rows that are not snapshots: in a copy, the
    snapshots are deleted behind the triggers' back, then FTS5 checks its index against
    the rows left (``integrity-check`` with rank 1 reads the content table)."""
    disk = sqlite3.connect(db_path)
    db = sqlite3.connect(":memory:")
    try:
        disk.backup(db)
        db.execute("DROP TRIGGER messages_fts_delete")
        db.execute("DELETE FROM messages WHERE status IS 'partial'")
        db.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
        disk.close()


def test_sqlite_snapshots_stay_out_of_search_until_the_reply_is_final(db_path):
    with SQLiteChatStore(db_path) as s:
        s.add_messages("s", [HumanMessage("tell me about walruses")])
        reply = AIMessage("Walruses are large", id="r1")
        set_message_status(reply, "interrupted")
        s.add_snapshot("s", reply)
        stored = s.get_messages("s")
        assert [message_status(m) for m in stored] == ["complete", "interrupted"]
        assert stored[-1].content == "Walruses are large"
        assert s.get_session("s").message_count == 2
        assert [h.message_id for h in s.search("large")] == []  # a snapshot: not indexed
        s.add_snapshot("s", AIMessage("Walruses are large marine mammals", id="r1"))
        _fts_consistent(db_path)
        s.add_messages("s", [AIMessage("Walruses are large marine mammals.", id="r1")])
        assert [h.message_id for h in s.search("mammals")] == ["r1"]
        assert s.get_session("s").message_count == 2
    _fts_consistent(db_path)


def test_sqlite_snapshot_left_by_a_crash_is_found_after_reopening(db_path):
    with SQLiteChatStore(db_path) as s:
        s.add_messages("s", [HumanMessage("and narwhals?")])
        s.add_snapshot("s", AIMessage("Narwhals have a tusk", id="r1"))
        s.add_snapshot("t", AIMessage("Belugas sing", id="r2"))
        s.delete_session("t")  # a deleted snapshot leaves nothing in the index
        _fts_consistent(db_path)
    # The process "died" mid-answer: the next open marks the snapshot as cut short.
    with SQLiteChatStore(db_path) as s:
        assert [h.message_id for h in s.search("tusk")] == ["r1"]
        assert message_status(s.get_messages("s")[-1]) == "interrupted"
        _fts_consistent(db_path)
        # A turn still streaming elsewhere goes on writing: the index follows the row.
        s.add_snapshot("s", AIMessage("Narwhals have a long tusk", id="r1"))
        assert s.search("tusk") == []
        s.fork_session("s", "copy")  # a copy is a finished message: cut short, indexed
        assert message_status(s.get_messages("copy")[-1]) == "interrupted"
        assert [h.session_id for h in s.search("tusk")] == ["copy"]
        s.add_messages("s", [AIMessage("Narwhals have a long tusk.", id="r1")])
        assert sorted(h.session_id for h in s.search("tusk")) == ["copy", "s"]
    _fts_consistent(db_path)


def test_sqlite_a_batch_that_deletes_or_renames_a_session_writes_the_next_one_afresh(db_path):
    with SQLiteChatStore(db_path) as s:
        with s.batch():
            s.add_messages("x", [HumanMessage("first")])
            s.delete_session("x")
            s.add_messages("x", [HumanMessage("second")])  # a new session under the old id
            s.add_messages("y", [HumanMessage("third")])
            s.rename_session("y", "z")
            s.add_messages("y", [HumanMessage("fourth")])
        assert [m.content for m in s.get_messages("x")] == ["second"]
        assert [m.content for m in s.get_messages("z")] == ["third"]
        assert [m.content for m in s.get_messages("y")] == ["fourth"]
        assert {i.id: i.message_count for i in s.list_sessions()} == {
            "x": 1,
            "y": 1,
            "z": 1,
        }
