"""Store features of issue 12, for every backend (the shared ``store`` fixture): sessions that
keep their settings, images stored once, search by word stems and prefixes."""

from __future__ import annotations

import base64
import sqlite3

from langchain_core.messages import AIMessage, HumanMessage

from ollang.memory import SQLiteChatStore
from ollang.memory.sqlite.migrations import MIGRATIONS

# A real 1x1 PNG (what a vision model gets), and a second, different image.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
OTHER = PNG[:-12] + b"\x00" * 12


def image_message(text: str, *images: bytes) -> HumanMessage:
    blocks: list = [{"type": "text", "text": text}]
    blocks += [
        {"type": "image", "base64": base64.b64encode(data).decode(), "mime_type": "image/png"}
        for data in images
    ]
    return HumanMessage(blocks)


def test_a_session_keeps_its_system_prompt_and_options(store):
    store.update_session("s", model="mistral", system="Be terse.", options={"temperature": 0.2})
    info = store.get_session("s")
    assert (info.model, info.system, info.options) == ("mistral", "Be terse.", {"temperature": 0.2})
    store.add_messages("s", [HumanMessage("hi"), AIMessage("yo")])
    store.update_session("s", title="renamed")  # other fields untouched
    info = store.get_session("s")
    assert (info.title, info.system, info.options) == ("renamed", "Be terse.", {"temperature": 0.2})
    store.update_session("s", system="", options={})  # cleared
    info = store.get_session("s")
    assert info.system is None and info.options is None
    assert [s.system for s in store.list_sessions()] == [None]


def test_fork_copies_the_settings(store):
    store.update_session("a", model="phi3", system="Pirate.", options={"seed": 7})
    store.add_messages("a", [HumanMessage("arr")])
    assert store.fork_session("a", "b") == 1
    info = store.get_session("b")
    assert (info.model, info.system, info.options) == ("phi3", "Pirate.", {"seed": 7})


def test_images_round_trip_exactly(store):
    message = image_message("what is this?", PNG, OTHER)
    store.add_messages("img", [message, AIMessage("a dot")])
    back = store.get_messages("img")[0]
    assert back.content == message.content
    assert back.text == "what is this?"


def test_the_same_image_in_many_messages_reads_back_in_each(store):
    store.add_messages("i1", [image_message("one", PNG)])
    store.add_messages("i1", [image_message("two", PNG)])
    store.add_messages("i2", [image_message("three", PNG)])
    for session in ("i1", "i2"):
        for message in store.get_messages(session):
            assert message.content[1]["base64"] == base64.b64encode(PNG).decode()


def test_sqlite_keeps_each_image_once_and_forgets_unused_ones(tmp_path):
    path = tmp_path / "s.db"
    with SQLiteChatStore(path) as store:
        for i in range(5):
            store.add_messages("a", [image_message(f"look {i}", PNG)])
        store.add_messages("b", [image_message("another", OTHER)])
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM images").fetchone()[0] == 2
            blocks = [r[0] for r in conn.execute("SELECT content_blocks FROM messages")]
        assert all("base64" not in b and "ollang_image" in b for b in blocks), "no inline copies"
        store.delete_session("b")
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM images").fetchone()[0] == 1
        first, *rest = store.get_messages("a")
        store.delete_messages("a", [first.id])  # the others still show the image
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM images").fetchone()[0] == 1
            assert conn.execute("SELECT count(*) FROM message_images").fetchone()[0] == 4
        assert all(m.content[1]["base64"] for m in store.get_messages("a"))
        store.delete_messages("a", [m.id for m in rest])
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM images").fetchone()[0] == 0
        assert first.content[1]["base64"]


def test_copying_sessions_keeps_their_settings(store, tmp_path):
    from ollang.memory.transfer import copy_sessions

    store.update_session("s", model="phi3", system="Be terse.", options={"temperature": 0.2})
    store.add_messages("s", [image_message("look", PNG), AIMessage("a dot")])
    with SQLiteChatStore(tmp_path / "copy.db") as target:
        report = copy_sessions(store, target)
        info = target.get_session("s")
        assert (report.sessions, report.new_messages) == (1, 2)
        assert (info.model, info.system, info.options) == (
            "phi3",
            "Be terse.",
            {"temperature": 0.2},
        )
        assert target.get_messages("s")[0].content == store.get_messages("s")[0].content


def test_search_finds_word_stems(store):
    store.add_messages("zoo", [HumanMessage("We watched the penguins diving."), AIMessage("Fun!")])
    store.add_messages("run", [HumanMessage("She runs every morning.")])
    assert [h.session_id for h in store.search("penguin")] == ["zoo"]
    assert [h.session_id for h in store.search("running")] == ["run"]
    hit = store.search("penguin")[0]
    assert "**penguins**" in hit.snippet


def test_search_prefix_with_a_star(store):
    store.add_messages("fb", [HumanMessage("print fizzbuzz up to 100")])
    assert store.search("fizz") == []
    assert [h.session_id for h in store.search("fizz*")] == ["fb"]
    assert [h.session_id for h in store.search("FIZZ* print")] == ["fb"]
    assert store.search("*") == []


def test_an_old_database_is_upgraded_and_its_index_rebuilt(tmp_path):
    path = tmp_path / "old.db"
    # A database as ollang left it before these migrations (m001-m003).
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    for number, (name, fn) in enumerate(MIGRATIONS[:3], start=1):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _ollang_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        fn(conn)
        conn.execute("INSERT INTO _ollang_migrations VALUES (?, 0)", (name,))
        conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("PRAGMA application_id = 1330400327")
        conn.execute("COMMIT")
    conn.execute("INSERT INTO sessions(id, created, updated) VALUES ('old', 1, 1)")
    conn.execute(
        "INSERT INTO messages(session_key, id, role, content, created) "
        "VALUES (1, 'm1', 'human', 'my penguins were fed', 1)"
    )
    conn.close()
    with SQLiteChatStore(path) as store:
        assert [h.session_id for h in store.search("penguin")] == ["old"]
        assert store.get_session("old").system is None
        store.update_session("old", system="kept")
        assert store.get_session("old").system == "kept"
