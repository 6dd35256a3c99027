"""The server's chat turns: the chat chain's semantics on a lean path to the model hosts.

Every route that talks to a model — ``/chat``, ``/generate`` and the OpenAI and Ollama
dialects — runs its turn here. What :class:`~ollang.chains.chat.ChatChain` guarantees
holds here too, by the same code where it can be shared (:mod:`ollang.turns.history`
for the question and the history, :class:`~ollang.turns.recorder.TurnRecorder` for the
reply, :mod:`ollang.turns.context` for the window):

1. the session is claimed and the question stored **before** the model is called (one
   awaited store call with the history read: one thread hop per turn set-up);
2. the answer is flushed at least once a second while it streams, never per token;
3. the final answer is stored before the client is told it is done; on an error, a
   cancellation or a client gone, what arrived is kept (``error``/``interrupted``);
4. what is sent fits the window, and the window is sent as ``num_ctx`` unless the
   caller set one (Ollama's own default would silently cut the prompt);
5. the host comes from the router; before the first token a failing host fails over to
   the next one, after it the error keeps the partial answer and the next turn goes
   elsewhere (the host is marked down). A named session prefers the host of its last
   answer; a turn that names none (the OpenAI and Ollama dialects, ``/generate``)
   prefers the host that served the longest prefix of its messages
   (:mod:`ollang.server.prefix_routing`), unless ``OLLANG_SERVER_PREFIX_ROUTING=false``.

A stateless client's turn (``messages`` given) can be *recorded* in a session
(:mod:`ollang.server.recording`): its ``record`` hook runs in the place of guarantee 1
(one awaited call on the writer thread: claim, store what the session lacks of the
client's messages), the client's messages are sent as given, and the answer is stored
by guarantees 2 and 3 like any turn's.

It differs from the chain in what it does *not* do per token: no LangChain message
chunks, callbacks or merging; upstream lines arrive in batches from
:mod:`ollang.transport.wire` and leave as one write per batch.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from ollang.errors import OllamaUnavailableError, OllangError
from ollang.memory import ChatStore
from ollang.routing.failover import Failover, is_cut, tells_about_host
from ollang.routing.hosts import Host
from ollang.routing.router import HostLease, Router
from ollang.server.errors import session_not_found
from ollang.server.keys import current_key
from ollang.server.limits import Limiter
from ollang.server.metrics import Metrics
from ollang.server.prefix_routing import PrefixLookup, PrefixRouting
from ollang.server.usage import UsageMeter
from ollang.server.writer import StoreWriter
from ollang.transport.translate import read_lines
from ollang.transport.wire import Line, wire_messages
from ollang.turns.context import (
    DEFAULT_CONTEXT_WINDOW,
    MAX_AUTO_CONTEXT,
    ContextBudget,
    fit_history,
    reserve_for,
)
from ollang.turns.history import RETRY_LOOKBACK, answered, prepare_turn
from ollang.turns.lifecycle import TurnLifecycle, Write
from ollang.turns.recorder import Status, TurnRecorder, TurnResult

__all__ = ["HOST_KEY", "TurnChunk", "TurnDone", "TurnEngine", "TurnRequest"]

#: Where a stored reply records the host that wrote it (the next turn prefers it).
HOST_KEY = "ollang_host"
#: Body fields of ``/api/chat`` that are not model ``options``.
_TOP_LEVEL = ("keep_alive", "format", "think", "tools")


@dataclass
class TurnRequest:
    """One turn as a route asks for it.

    Attributes:
        model: The model, as installed (resolved by the route's gate).
        human: The user's message (stored, in a session).
        system: The system prompt, if any.
        context: Messages sent after the history and before ``human``, never stored.
        session_id: The session; ``None`` for a stateless turn (nothing read or stored).
        owner: The key's owner id (sessions of another owner answer 404).
        options: Ollama ``options`` (temperature, num_ctx, num_predict, stop, ...).
        extra: Other ``/api/chat`` body fields: keep_alive, format, think, tools.
        messages: A stateless turn's whole conversation as the client sent it (the
            OpenAI and Ollama dialects); when given, ``system``/``context``/``human``
            are not used to build what is sent.
        route: The route's name, for metrics.
        record: For a stateless turn (``messages``) recorded in ``session_id``: called
            with the store on the writer thread before the model is called, in the
            place of claiming and reading the history; stores what the session lacks
            and returns the host of its last answer (or ``None``).
        remember: Set when the session's settings change (or it is new): the options to
            store with it, beside ``model`` and ``system`` (stored in the set-up call).
        fresh: The session id was just made by the server (nothing stored under it yet):
            the set-up stores the question without reading anything back.
    """

    model: str
    human: HumanMessage
    system: str | None = None
    context: list[BaseMessage] = field(default_factory=list)
    session_id: str | None = None
    owner: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    messages: list[BaseMessage] | None = None
    route: str = "chat"
    record: Callable[[ChatStore], str | None] | None = None
    remember: dict[str, Any] | None = None
    fresh: bool = False


@dataclass(slots=True)
class TurnChunk:
    """One batch of the answer: its text and reasoning joined, and the raw Ollama lines."""

    text: str
    reasoning: str
    lines: list[Line]


@dataclass(slots=True)
class TurnDone:
    """The end of a turn: everything known about it, and the host that answered."""

    result: TurnResult
    host: str


@dataclass
class _Setup:
    messages: list[BaseMessage]
    budget: ContextBudget
    affinity: str | None  # the host the session's last answer came from
    avoid: str | None = None  # the host the session's last answer failed on
    error: OllangError | None = None
    queued: float = 0.0  # seconds spent waiting for a host's slot


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route options (``ChatOptions.as_kwargs()``) as ``(options, top-level fields)``."""
    inner = {k: v for k, v in options.items() if k not in _TOP_LEVEL}
    top = {k: v for k, v in options.items() if k in _TOP_LEVEL}
    if isinstance(inner.get("stop"), str):
        inner["stop"] = [inner["stop"]]
    return inner, top


class TurnEngine:
    """Runs turns over the router's hosts and the store (see the module docstring).

    Args:
        router: The model hosts.
        store: The session store (reads and writes go through ``writer``).
        writer: The store writer thread.
        metrics: Where turns are counted.
        flush_interval: At most this many seconds of a streaming answer are lost in a
            crash: flushes are handed to ``writer`` that much sooner than its linger.
        prefix: Cache-aware routing of turns that name no session (``None``: off).
        usage: Where each finished model request is counted for its key (``None``: not).
        limits: The keys' rate limits, checked as a turn starts (``None``: none).
    """

    def __init__(
        self,
        router: Router,
        store: ChatStore,
        writer: StoreWriter,
        metrics: Metrics,
        *,
        flush_interval: float = 1.0,
        prefix: PrefixRouting | None = None,
        usage: UsageMeter | None = None,
        limits: Limiter | None = None,
    ) -> None:
        self.router = router
        self.store = store
        self.writer = writer
        self.metrics = metrics
        self.flush_interval = max(0.0, flush_interval - writer.linger)
        self.prefix = prefix
        self.usage = usage
        self.limits = limits

    # -- set-up -----------------------------------------------------------------
    async def _window(self, model: str, options: dict[str, Any]) -> tuple[int, bool]:
        """The context window, and whether ollang chose it (then it is sent as num_ctx)."""
        num_ctx = options.get("num_ctx")
        if isinstance(num_ctx, int) and num_ctx > 0:
            return num_ctx, False
        length = await self.router.context_length(model)
        return (min(length, MAX_AUTO_CONTEXT) if length else DEFAULT_CONTEXT_WINDOW), True

    def _setup(self, req: TurnRequest, life: TurnLifecycle, window: int, reserve: int) -> _Setup:
        """Claim, store the question (unless retried), read and fit the history: one call
        on the writer thread, so one hop and one transaction for all of it."""
        store, session_id = self.store, req.session_id
        assert session_id is not None
        if req.owner is not None and not store.claim_session(session_id, req.owner):
            raise session_not_found(session_id)
        recent = [] if req.fresh else store.get_messages(session_id, limit=RETRY_LOOKBACK)
        opening = life.open(req.human, recent)
        if opening.write is not None:  # before the model is called
            opening.write.run(store)
        if req.remember is not None:  # the session continues as this turn runs
            store.update_session(
                session_id, model=req.model, system=req.system or "", options=req.remember
            )
        if req.fresh:  # an id the server just made: nothing to read back
            return self._fresh(req, window, reserve)
        human = opening.question
        last = next((m for m in reversed(recent) if m.type == "ai"), None)
        host = str(last.response_metadata.get(HOST_KEY) or "") if last is not None else ""
        affinity = host if last is not None and host and answered(last) else None
        avoid = host if last is not None and host and not answered(last) else None
        try:
            prepared = prepare_turn(
                store,
                session_id,
                human,
                system=req.system,
                context=req.context,
                window=window,
                reserve=reserve,
            )
        except OllangError as err:  # the question stays stored; the turn fails after
            return _Setup([], _empty_budget(window, reserve), affinity, avoid, err)
        return _Setup(prepared.messages, prepared.budget, affinity, avoid)

    def _fresh(self, req: TurnRequest, window: int, reserve: int) -> _Setup:
        """The first turn of a new session (its question and settings stored): fit it."""
        system = [SystemMessage(req.system)] if req.system else []
        fixed = [*system, *req.context, req.human]
        try:
            _, budget = fit_history([], window=window, reserve=reserve, fixed=fixed)
        except OllangError as err:  # the question stays stored; the turn fails after
            return _Setup([], _empty_budget(window, reserve), None, None, err)
        return _Setup(fixed, budget, None)

    # -- recorded stateless turns (server/recording.py) -------------------------
    def _recorded(self, req: TurnRequest, window: int, reserve: int) -> _Setup:
        """Record what the session lacks (claimed, on the writer thread), then send the
        client's messages as given."""
        assert req.record is not None
        affinity = req.record(self.store)
        try:
            setup = self._stateless(req, window, reserve)
        except OllangError as err:  # raised here, it would roll the recording back
            return _Setup([], _empty_budget(window, reserve), affinity, None, err)
        setup.affinity = affinity
        return setup

    # -- end of recorded stateless turns ----------------------------------------
    def _stateless(self, req: TurnRequest, window: int, reserve: int) -> _Setup:
        if req.messages is not None:
            messages = list(req.messages)
        else:
            system = [SystemMessage(req.system)] if req.system else []
            messages = [*system, *req.context, req.human]
        # Only checks that it fits (a client's own history is sent as given).
        _, budget = fit_history([], window=window, reserve=reserve, fixed=messages)
        return _Setup(messages, budget, None)

    def _body(
        self,
        req: TurnRequest,
        host: Host,
        messages: Sequence[BaseMessage],
        window: int,
        chosen: bool,
    ) -> dict[str, Any]:
        options = dict(req.options)
        if chosen and host.sizes_window:  # an engine of the openai kind has its own
            options["num_ctx"] = window
        body: dict[str, Any] = {
            "model": host.installed_name(req.model),
            "messages": wire_messages(messages),
            "stream": True,
            "options": options,
        }
        body.update({k: v for k, v in req.extra.items() if v is not None})
        return body

    # -- the turn ---------------------------------------------------------------
    async def stream(self, req: TurnRequest) -> AsyncIterator[TurnChunk | TurnDone]:
        """Run one turn: :class:`TurnChunk` items as the answer arrives, then :class:`TurnDone`.

        Raises:
            OllangError: before the first chunk as an ordinary error (no host, model not
                found, session of another key, too long for the window); after it, with
                the partial answer stored first.
        """
        self.router.check_model(req.model)
        key = current_key()
        if self.limits is not None:
            await self.limits.admit(key)  # 429 when over a limit: nothing sent upstream
        window, chosen = await self._window(req.model, req.options)
        reserve = reserve_for(req.options.get("num_predict"), window)
        life = TurnLifecycle(
            req.session_id, model_name=req.model, flush_interval=self.flush_interval
        )
        if req.session_id is not None and req.record is not None:  # stateless, recorded
            setup = await self.writer.call(self._recorded, req, window, reserve)
        elif req.session_id is not None:
            setup = await self.writer.call(self._setup, req, life, window, reserve)
        else:
            setup = self._stateless(req, window, reserve)
        if setup.error is not None:
            raise setup.error
        prefix = await self._prefix_lookup(req, setup)
        recorder = life.begin(setup.budget)
        try:
            lease, stream, first = await self._first_batch(req, setup, window, chosen, recorder)
        except BaseException as err:
            self._used(req, recorder, setup, error=isinstance(err, Exception))
            raise
        host = lease.host.name
        if prefix is not None and self.prefix is not None:
            self.prefix.served(prefix, host)
        recorder.set_metadata(**{HOST_KEY: host})
        status: Status = "complete"
        try:
            chunk = self._chunk(recorder, first)
            self.metrics.first_token(req.route, host, time.perf_counter() - recorder.started)
            yield chunk
            async for lines in stream:
                yield self._chunk(recorder, lines)
                self._write(life.streamed())
        except BaseException as err:  # errors, cancellation, a client gone: keep what arrived
            status = "error" if isinstance(err, Exception) else "interrupted"
            if isinstance(err, Exception):
                self.metrics.failed(req.route, host, type(err).__name__)
                if isinstance(err, OllamaUnavailableError) or is_cut(err):
                    self.router.failed(lease.host, err)  # down: checked again at once
            write = life.stopped(err)
            if write is not None and write.wait:  # stored before the error reaches the client
                await self.writer.call(write.run, self.store)
            else:  # cancelled: not awaited (a further await could itself be cancelled)
                self._write(write)
            raise
        finally:
            await stream.aclose()
            lease.release()
            self.metrics.finished(req.route, host, status, recorder.output_tokens)
            if self.limits is not None:  # tokens are known at the end: charged now
                self.limits.charge(
                    key, (recorder.input_tokens or 0) + (recorder.output_tokens or 0)
                )
            self._used(req, recorder, setup, error=status == "error")
        write, result = life.finish()
        if prefix is not None and self.prefix is not None:  # in the batch of `write`, if any
            await self.prefix.answered(prefix, result.message, host, wait=write is None)
        if write is not None:
            await self.writer.call(write.run, self.store)
        yield TurnDone(result, host)

    async def _prefix_lookup(self, req: TurnRequest, setup: _Setup) -> PrefixLookup | None:
        """For a turn that names no session (or records a stateless client's turn with no
        answer yet): the host of the longest known prefix of its messages becomes its
        affinity. ``None``: prefix routing is off or not for this turn."""
        if self.prefix is None or setup.affinity is not None or setup.avoid is not None:
            return None
        if sum(1 for host in self.router.hosts if host.has(req.model)) < 2:
            # No choice to make: one host has the model (on a server of one host, always).
            # Its digests would be a store read and two writes a turn for nothing.
            return None
        if req.session_id is not None and req.record is None:
            # A named session follows the host of its last answer, as ever; a session the
            # server just made for this turn is named from its next turn on, so recording
            # its prefixes (a store read and two writes a turn) would buy nothing.
            return None
        found = await self.prefix.lookup(req.model, setup.messages)
        setup.affinity = found.host
        self.metrics.prefix_lookup(found.source)
        return found

    def _used(
        self, req: TurnRequest, recorder: TurnRecorder, setup: _Setup, *, error: bool
    ) -> None:
        """Count the model request for the request's key (:class:`UsageMeter`)."""
        if self.usage is not None:
            elapsed = time.perf_counter() - recorder.started
            self.usage.turn(
                req.model,
                input_tokens=recorder.input_tokens,
                output_tokens=recorder.output_tokens,
                error=error,
                busy_s=elapsed - setup.queued,
                queue_s=setup.queued,
            )

    def _write(self, write: Write | None) -> None:
        """Hand a write to the store writer without waiting (flushes, cancellations)."""
        if write is not None:
            self.writer.submit(write.run, self.store)

    @staticmethod
    def _chunk(recorder: TurnRecorder, lines: list[Line]) -> TurnChunk:
        text, reasoning = recorder.observe_delta(read_lines(lines))
        return TurnChunk(text, reasoning, lines)

    async def _first_batch(
        self,
        req: TurnRequest,
        setup: _Setup,
        window: int,
        chosen: bool,
        recorder: TurnRecorder,
    ) -> tuple[HostLease, AsyncGenerator[list[Line], None], list[Line]]:
        """Open the stream on the best host, failing over (:class:`Failover`'s rules)
        until one sends its first batch."""
        failover = Failover(req.model, [h for h in self.router.hosts if h.name == setup.avoid])
        while True:
            try:
                asked = time.perf_counter()
                try:
                    lease = await self.router.lease(
                        req.model,
                        affinity=setup.affinity,
                        exclude=failover.exclude(),
                        key=current_key(),  # its place in the waiting room
                    )
                finally:
                    setup.queued += time.perf_counter() - asked
            except OllangError as err:
                installed = [d.name for d, _ in self.router.models()]
                final = failover.no_host_left(err, installed)
                if final is None:
                    continue
                if final is err:
                    raise
                raise final from err
            host = lease.host
            stream = host.chat(self._body(req, host, setup.messages, window, chosen))
            try:
                first = await stream.__anext__()
            except StopAsyncIteration:
                first = []
            except BaseException as err:
                await stream.aclose()
                lease.release()
                if isinstance(err, Exception):
                    self.metrics.failed(req.route, host.name, type(err).__name__)
                if tells_about_host(err):
                    self.router.failed(host, err, req.model)
                if not failover.failed(host, err):
                    raise
                continue
            return lease, stream, first


def _empty_budget(window: int, reserve: int) -> ContextBudget:
    return ContextBudget(
        window=window, reserve=reserve, prompt_tokens=0, history_sent=0, history_dropped=0
    )
