"""Property tests of the chat stores: any text survives, any query is safe, upserts behave."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from ollang.memory import (
    ChatStore,
    SearchHit,
    message_from_dict,
    message_status,
    message_to_dict,
)
from tests.conftest import STORE_BACKENDS, open_test_store


@pytest.fixture(scope="module", params=STORE_BACKENDS)
def store(request, tmp_path_factory) -> Iterator[ChatStore]:
    # One store per module; every example writes to its own fresh session, so
    # examples cannot see each other (and no function-scoped fixture is reused).
    with open_test_store(request.param, tmp_path_factory.mktemp("props")) as s:
        yield s


def fresh_session() -> str:
    return uuid.uuid4().hex


# Any Unicode text without lone surrogates (not encodable as UTF-8), NUL included.
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


@pytest.mark.reliability("Properties", "store round-trips any text exactly")
@settings(max_examples=150, deadline=None)
@given(content=texts, reasoning=texts, name=st.none() | texts)
def test_any_text_round_trips_exactly(store, content, reasoning, name):
    session = fresh_session()
    human = HumanMessage(content, name=name)
    ai = AIMessage(content, additional_kwargs={"reasoning_content": reasoning})
    store.add_messages(session, [human, ai])
    got_human, got_ai = store.get_messages(session)
    assert got_human.content == content and got_human.name == name
    assert got_ai.content == content
    assert got_ai.additional_kwargs == {"reasoning_content": reasoning}
    assert message_from_dict(message_to_dict(got_ai)) == got_ai


@settings(max_examples=150, deadline=None)
@given(
    content=st.lists(
        st.one_of(
            texts,
            st.fixed_dictionaries({"type": st.just("text"), "text": texts}),
            st.fixed_dictionaries({"type": st.just("image"), "url": texts}),
        ),
        max_size=4,
    )
)
@pytest.mark.reliability("Properties", "store round-trips any content blocks exactly")
def test_any_content_blocks_round_trip_exactly(store, content):
    session = fresh_session()
    store.add_messages(session, [HumanMessage(content)])
    assert store.get_messages(session)[0].content == content


@settings(max_examples=200, deadline=None)
@given(query=st.text(max_size=40) | st.sampled_from(['"', "NEAR(", "a OR", "*", "-x", "^"]))
def test_any_query_is_safe(store, query):
    session = fresh_session()
    store.add_messages(session, [HumanMessage('a OR b NEAR(x) "quoted" * -x ^y')])
    hits = store.search(query, limit=5)
    assert isinstance(hits, list) and len(hits) <= 5
    assert all(isinstance(hit, SearchHit) for hit in hits)


# An operation on one session: ("add", [(slot, text), ...]) adds/upserts messages
# (slot None = a new message, else an earlier message's id by position),
# ("delete", [slot, ...]) deletes, ("read", limit) checks get_messages.
slots = st.none() | st.integers(min_value=0, max_value=15)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(st.tuples(slots, st.text(max_size=5)), max_size=3)),
        st.tuples(st.just("delete"), st.lists(st.integers(min_value=0, max_value=15), max_size=3)),
        st.tuples(st.just("read"), st.none() | st.integers(min_value=0, max_value=8)),
    ),
    max_size=12,
)


@pytest.mark.reliability("Properties", "store agrees with a list model under random ops")
@settings(max_examples=100, deadline=None)
@given(ops=operations)
def test_upserts_deletes_and_reads_agree_with_a_list_model(store, ops):
    session = fresh_session()
    model: list[tuple[str, str]] = []  # (id, text) in stored order
    known: list[str] = []  # every id ever used, addressable by slot
    for op, arg in ops:
        if op == "add":
            batch: list[BaseMessage] = []
            for slot, text in arg:
                mid = known[slot % len(known)] if slot is not None and known else None
                batch.append(HumanMessage(text, id=mid))
            store.add_messages(session, batch)
            for msg in batch:
                assert msg.id is not None
                if msg.id not in known:
                    known.append(msg.id)
                position = next((i for i, (mid, _) in enumerate(model) if mid == msg.id), None)
                if position is None:
                    model.append((msg.id, str(msg.content)))
                else:
                    model[position] = (msg.id, str(msg.content))
        elif op == "delete":
            doomed = {known[slot % len(known)] for slot in arg} if known else set()
            expected = sum(1 for mid, _ in model if mid in doomed)
            assert store.delete_messages(session, sorted(doomed)) == expected
            model = [(mid, text) for mid, text in model if mid not in doomed]
        else:
            want = model if arg is None else model[-arg:] if arg else []
            got = store.get_messages(session, limit=arg)
            assert [(m.id, m.content) for m in got] == want
            assert all(message_status(m) == "complete" for m in got)
    info = store.get_session(session)
    assert (info.message_count if info else 0) == len(model)
