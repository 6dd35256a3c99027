"""Property tests of context-window trimming (``chains.context.fit_history``).

The issue: "trimming always keeps the system prompt, starts on a human message,
fits the budget and keeps the newest turn". The properties are checked on
generated histories (alternating human/AI turns of any text: unicode, empty,
very long; interrupted turns with no reply; empty replies; tool round trips;
a page cut that starts on a reply) and through the real chat chain.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from ollang.chains.chat import ChatChain
from ollang.chains.fake import FakeChatModel, FakeReply
from ollang.errors import ContextWindowError
from ollang.memory import ChatStore, InMemoryChatStore, SQLiteChatStore
from ollang.turns.context import (
    SAFETY_MARGIN,
    ContextBudget,
    estimate_tokens,
    fit_history,
    reply_reserve,
)
from ollang.turns.history import RETRY_LOOKBACK, answered

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- strategies -----------------------------------------------------------------

# Any Unicode text without lone surrogates (they cannot be stored as UTF-8).
_chars = st.characters(blacklist_categories=("Cs",))
short_text = st.text(_chars, max_size=80)
# Very long strings, cheaply: a random piece repeated up to a few thousand times
# (a 40k-character message is ~10k tokens, more than most generated windows).
long_text = st.builds(
    lambda piece, times: piece * times,
    st.text(_chars, min_size=1, max_size=12),
    st.integers(min_value=20, max_value=4000),
)
texts = st.one_of(st.just(""), short_text, short_text, short_text, long_text)
# Chat input cannot be blank; built rather than filtered, so no example is wasted.
_visible = st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"))
nonblank_texts = st.builds(
    lambda before, mark, after: before + mark + after,
    texts,
    _visible,
    st.one_of(st.just(""), short_text),
)


@st.composite
def turns(draw: st.DrawFn, texts: st.SearchStrategy[str] = texts) -> list[BaseMessage]:
    """One turn of a stored conversation."""
    kind = draw(
        st.sampled_from(["complete"] * 6 + ["interrupted", "empty_reply", "tool"]),
    )
    human = HumanMessage(draw(texts))
    if kind == "complete":
        return [human, AIMessage(draw(texts))]
    if kind == "interrupted":  # Ctrl-C / error before any reply arrived
        return [human]
    if kind == "empty_reply":
        return [human, AIMessage("")]
    call_id = f"call_{draw(st.integers(0, 999))}"
    return [
        human,
        AIMessage("", tool_calls=[{"name": "lookup", "args": {"q": "x"}, "id": call_id}]),
        ToolMessage(draw(texts), tool_call_id=call_id),
        AIMessage(draw(texts)),
    ]


@st.composite
def histories(
    draw: st.DrawFn, max_turns: int = 12, texts: st.SearchStrategy[str] = texts
) -> list[BaseMessage]:
    """Earlier messages of a session, oldest first."""
    messages: list[BaseMessage] = []
    if draw(st.integers(0, 9)) == 0:  # a page cut in the middle of a turn
        messages.append(AIMessage(draw(texts)))
    for turn in draw(st.lists(turns(texts), max_size=max_turns)):
        messages.extend(turn)
    return messages


@st.composite
def fixed_messages(draw: st.DrawFn) -> list[BaseMessage]:
    """What is always sent: an optional system prompt and the new human message."""
    system = draw(st.none() | nonblank_texts)
    human = HumanMessage(draw(nonblank_texts))
    return [SystemMessage(system), human] if system is not None else [human]


windows = st.integers(min_value=64, max_value=32768)


@st.composite
def window_and_reserve(draw: st.DrawFn) -> tuple[int, int]:
    window = draw(windows)
    if draw(st.booleans()):
        reserve = reply_reserve(object(), window)  # what the chain uses with no num_predict
    else:
        reserve = draw(st.integers(min_value=0, max_value=window // 2))
    return window, reserve


# -- helpers --------------------------------------------------------------------


def margin_budget(window: int, reserve: int) -> int:
    """Tokens the fixed messages plus kept history may take (the documented margin)."""
    return int((window - reserve) * SAFETY_MARGIN)


def is_suffix(kept: list[BaseMessage], history: list[BaseMessage]) -> bool:
    if len(kept) > len(history):
        return False
    tail = history[len(history) - len(kept) :]
    return all(a is b for a, b in zip(kept, tail, strict=True))


def last_complete_turn_start(history: list[BaseMessage]) -> int | None:
    """Index of the human message opening the newest turn that got a reply."""
    for i in range(len(history) - 2, -1, -1):
        if isinstance(history[i], HumanMessage) and isinstance(history[i + 1], AIMessage):
            return i
    return None


def fit_or_none(
    history: list[BaseMessage], window: int, reserve: int, fixed: list[BaseMessage]
) -> tuple[list[BaseMessage], ContextBudget] | None:
    try:
        return fit_history(history, window=window, reserve=reserve, fixed=fixed)
    except ContextWindowError:
        return None


# -- 1. shape and budget ----------------------------------------------------------


@pytest.mark.reliability(
    "Properties", "trimming: a suffix starting on a human message, within the budget"
)
@SETTINGS
@given(history=histories(), wr=window_and_reserve(), fixed=fixed_messages())
def test_kept_is_a_human_led_suffix_within_budget(history, wr, fixed):
    window, reserve = wr
    fixed_tokens = estimate_tokens(fixed)
    assume(fixed_tokens <= window - reserve)
    snapshot = [m.model_copy() for m in history]
    kept, budget = fit_history(history, window=window, reserve=reserve, fixed=fixed)
    kept_tokens = estimate_tokens(kept)
    note(f"fixed={fixed_tokens} kept={kept_tokens} ({len(kept)}/{len(history)} messages)")
    event("kept all" if len(kept) == len(history) else "kept none" if not kept else "kept some")

    assert is_suffix(kept, history), "kept history is not the newest contiguous tail"
    assert not kept or isinstance(kept[0], HumanMessage), f"kept starts on {kept[0].type}"
    # Never more than the window leaves after the reply reserve ...
    assert fixed_tokens + kept_tokens <= window - reserve
    # ... and history is only added within the safety margin of that.
    if kept:
        assert fixed_tokens + kept_tokens <= margin_budget(window, reserve)

    assert budget.window == window and budget.reserve == reserve
    assert budget.history_sent == len(kept)
    assert budget.history_sent + budget.history_dropped == len(history)
    assert budget.prompt_tokens == fixed_tokens + kept_tokens
    assert history == snapshot, "fit_history changed the history it was given"


def test_history_fills_only_the_safety_margin():
    fixed = [SystemMessage("be brief"), HumanMessage("and now?")]
    window, reserve = 1000, 200
    limit = margin_budget(window, reserve)  # 720 of the 800 tokens available
    turn_tokens = limit - estimate_tokens(fixed)

    def turn_of(tokens: int) -> list[BaseMessage]:
        # Grow the human message until the turn estimates to exactly `tokens`.
        for size in range(4 * tokens):
            turn = [HumanMessage("h" * size), AIMessage("ok")]
            if estimate_tokens(turn) == tokens:
                return turn
        raise AssertionError(f"no turn of {tokens} tokens")

    at_margin = turn_of(turn_tokens)
    kept, budget = fit_history(at_margin, window=window, reserve=reserve, fixed=fixed)
    assert kept == at_margin and budget.prompt_tokens == limit

    over_margin = turn_of(turn_tokens + 1)  # fits in the window, not in the margin
    assert estimate_tokens(fixed) + estimate_tokens(over_margin) <= window - reserve
    kept, budget = fit_history(over_margin, window=window, reserve=reserve, fixed=fixed)
    assert kept == [] and budget.history_dropped == 2


# -- 3. newest turn, maximality, monotonicity -------------------------------------


@pytest.mark.reliability("Properties", "trimming keeps the newest turn")
@SETTINGS
@given(history=histories(), wr=window_and_reserve(), fixed=fixed_messages())
def test_keeps_the_newest_turn_when_it_fits(history, wr, fixed):
    window, reserve = wr
    fixed_tokens = estimate_tokens(fixed)
    assume(fixed_tokens <= window - reserve)
    start = last_complete_turn_start(history)
    assume(start is not None)
    tail = history[start:]  # the newest complete turn and anything after it
    room = margin_budget(window, reserve) - fixed_tokens
    assume(estimate_tokens(tail) <= room)

    kept, _ = fit_history(history, window=window, reserve=reserve, fixed=fixed)
    event("older turns dropped" if len(kept) < len(history) else "everything kept")
    assert len(kept) >= len(tail), (
        f"newest turn dropped: {len(tail)} tail messages fit in {room} tokens, kept {len(kept)}"
    )
    assert kept[len(kept) - len(tail) :] == tail


@SETTINGS
@given(history=histories(), wr=window_and_reserve(), fixed=fixed_messages())
def test_keeps_the_longest_human_led_suffix_that_fits(history, wr, fixed):
    window, reserve = wr
    fixed_tokens = estimate_tokens(fixed)
    assume(fixed_tokens <= window - reserve)
    room = margin_budget(window, reserve) - fixed_tokens
    expected: list[BaseMessage] = []
    if room > 0:
        for j, message in enumerate(history):
            if isinstance(message, HumanMessage) and estimate_tokens(history[j:]) <= room:
                expected = history[j:]
                break
    kept, _ = fit_history(history, window=window, reserve=reserve, fixed=fixed)
    assert len(kept) == len(expected), f"room={room}: kept {len(kept)}, expected {len(expected)}"


@SETTINGS
@given(
    history=histories(),
    small=windows,
    extra=st.integers(min_value=0, max_value=16384),
    reserve_fraction=st.floats(min_value=0, max_value=0.5),
    fixed=fixed_messages(),
)
def test_bigger_window_never_keeps_fewer(history, small, extra, reserve_fraction, fixed):
    reserve = int(small * reserve_fraction)  # the same reserve for both windows
    smaller = fit_or_none(history, small, reserve, fixed)
    bigger = fit_or_none(history, small + extra, reserve, fixed)
    if smaller is not None:
        assert bigger is not None, "a bigger window raised where a smaller one fit"
        assert len(bigger[0]) >= len(smaller[0])


@SETTINGS
@given(history=histories(), small=windows, extra=st.integers(0, 16384), fixed=fixed_messages())
def test_bigger_window_never_keeps_fewer_with_the_chains_reserve(history, small, extra, fixed):
    big = small + extra
    smaller = fit_or_none(history, small, reply_reserve(object(), small), fixed)
    bigger = fit_or_none(history, big, reply_reserve(object(), big), fixed)
    if smaller is not None:
        assert bigger is not None, "a bigger window raised where a smaller one fit"
        assert len(bigger[0]) >= len(smaller[0])


# -- 4. when it raises --------------------------------------------------------------


@pytest.mark.reliability(
    "Properties", "trimming raises a clear error exactly when the message alone cannot fit"
)
@SETTINGS
@given(history=histories(max_turns=4), wr=window_and_reserve(), fixed=fixed_messages())
def test_raises_context_window_error_exactly_when_fixed_does_not_fit(history, wr, fixed):
    window, reserve = wr
    too_big = estimate_tokens(fixed) > window - reserve
    note(f"fixed={estimate_tokens(fixed)} available={window - reserve}")
    try:
        fit_history(history, window=window, reserve=reserve, fixed=fixed)
    except ContextWindowError as err:
        event("raised")
        assert too_big, f"raised although the fixed messages fit: {err}"
        assert err.hint
    else:
        assert not too_big, "the fixed messages do not fit, yet no ContextWindowError"


def test_raises_at_the_exact_boundary():
    fixed = [SystemMessage("be brief"), HumanMessage("x" * 400)]
    tokens = estimate_tokens(fixed)
    fit_history([], window=tokens + 10, reserve=10, fixed=fixed)  # exactly fits
    with pytest.raises(ContextWindowError):
        fit_history([], window=tokens + 9, reserve=10, fixed=fixed)


# -- 2. the real chain never drops the system prompt or the new message ----------


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def store(request, tmp_path_factory) -> Iterator[ChatStore]:
    # One store per module; every example uses a fresh session.
    s: ChatStore = (
        InMemoryChatStore()
        if request.param == "memory"
        else SQLiteChatStore(tmp_path_factory.mktemp("ctx-props") / "ctx.db")
    )
    yield s
    s.close()


chain_inputs = st.builds(
    lambda text, mark: text + mark,
    st.one_of(
        short_text,
        st.builds(
            lambda piece, times: piece * times,
            st.text(_chars, min_size=1, max_size=8),
            st.integers(min_value=10, max_value=600),
        ),
    ),
    _visible,
)
system_prompts = st.builds(lambda text, mark: mark + text, short_text, _visible)
# A reply, or a failure after a few pieces (what arrived is stored as an error;
# after 0 pieces nothing is, leaving a human message with no reply).
model_replies = st.one_of(
    st.text(_chars, max_size=40),
    long_text,
    st.builds(FakeReply, texts, fail_after=st.integers(min_value=0, max_value=3)),
)


class CountingStore:
    """Delegates to a store, counting the history pages the chain reads."""

    def __init__(self, inner: ChatStore) -> None:
        self.inner = inner
        self.pages = 0

    def get_messages(self, session_id: str, **kwargs):
        self.pages += 1
        return self.inner.get_messages(session_id, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def _without_retried_turn(
    stored: list[BaseMessage], before: list[BaseMessage], text: str
) -> list[BaseMessage]:
    """Issue 13's retry rule: the same question again while the last one has no complete
    answer (within the chain's lookback of stored messages) retries that turn, so neither
    it nor its failed attempt is history."""
    for message in reversed(stored[-RETRY_LOOKBACK:]):
        if message.type != "human":
            if message.type == "ai" and answered(message):
                return before
            continue
        if message.content != text:
            return before
        return before[: next(i for i, m in enumerate(before) if m.id == message.id)]
    return before


def _is_empty_reply(message: BaseMessage) -> bool:
    return message.type == "ai" and not message.content and not getattr(message, "tool_calls", None)


@pytest.mark.reliability(
    "Properties", "the chain always sends the system prompt and the new message"
)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(
    window=st.integers(min_value=64, max_value=2048),
    system=st.none() | system_prompts,
    # Many short turns make the chain read its history in several pages.
    stored=histories(max_turns=20) | histories(max_turns=60, texts=st.text(_chars, max_size=12)),
    inputs=st.lists(chain_inputs, min_size=2, max_size=5),
    replies=st.lists(model_replies, min_size=5, max_size=5),
)
def test_chain_sends_system_prompt_history_from_human_and_the_new_message(
    store, window, system, stored, inputs, replies
):
    model = FakeChatModel(replies=list(replies))
    counting = CountingStore(store)
    chain = ChatChain(model, store=counting, system=system, context_window=window)  # type: ignore[arg-type]
    session = uuid.uuid4().hex
    config = {"configurable": {"session_id": session}}
    if stored:
        store.add_messages(session, [m.model_copy() for m in stored])
    reserve = reply_reserve(model, window)
    for text in inputs:
        stored_now = store.get_messages(session)
        before = [m for m in stored_now if not _is_empty_reply(m)]
        sent_before, pages_before = len(model.prompts), counting.pages
        fixed = [*([SystemMessage(system)] if system else []), HumanMessage(text)]
        try:
            chain.invoke(text, config)
        except ContextWindowError:
            event("a turn was too long for the window")
            assert estimate_tokens(fixed) > window - reserve
            assert len(model.prompts) == sent_before, "the model was called anyway"
            continue
        except RuntimeError as err:  # a scripted model failure, after the prompt was sent
            assert str(err) == "fake model failure"
            event("a reply failed")
        assert estimate_tokens(fixed) <= window - reserve
        assert len(model.prompts) == sent_before + 1
        prompt = model.prompts[-1]
        if system:
            assert isinstance(prompt[0], SystemMessage) and prompt[0].content == system
            body = prompt[1:]
        else:
            assert not any(isinstance(m, SystemMessage) for m in prompt)
            body = prompt
        assert isinstance(body[-1], HumanMessage) and body[-1].content == text
        assert isinstance(body[0], HumanMessage), f"what is sent starts on {body[0].type}"
        assert estimate_tokens(prompt) <= window - reserve
        # Reading history a page at a time keeps exactly what fitting the whole
        # stored history would keep (and never resends the new message).
        history = _without_retried_turn(stored_now, before, text)
        expected, _ = fit_history(history, window=window, reserve=reserve, fixed=fixed)
        assert [m.id for m in body[:-1]] == [m.id for m in expected]
        if history is not before:
            event("a retry of the failed turn")
        event("history trimmed" if len(body) - 1 < len(history) else "whole history sent")
        if counting.pages - pages_before > 1:
            event("history read in several pages")
