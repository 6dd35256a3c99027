"""Usage per key x model x UTC day, counted as turns finish and written in batches.

The turn engine reports every finished turn to :meth:`UsageMeter.turn` (the key is the
request's, :func:`~ollang.server.keys.current_key`); the meter adds it to its counters in
memory and to the per-key Prometheus counters (labelled by the key's *name*, never its
secret), and hands what it gathered to the store writer every :data:`FLUSH_S` seconds and
on shutdown (:meth:`ChatStore.add_usage <ollang.memory.base.ChatStore.add_usage>` adds
them up, so replicas on one store count together).
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter

from ollang.memory import ChatStore
from ollang.memory.keys import UsageRow, utc_day
from ollang.server.keys import current_key
from ollang.server.periodic import Periodic
from ollang.server.writer import StoreWriter

__all__ = ["FLUSH_S", "UsageMeter"]

#: Seconds between two writes of the gathered usage.
FLUSH_S = 2.0


class UsageMeter:
    """Counts turns per key, model and day; writes them through ``writer`` in batches.

    Args:
        store: The store the rows are added to.
        writer: The server's store writer (its thread does the writing).
        registry: Where the per-key counters go (the app's ``/metrics`` registry).
    """

    def __init__(
        self, store: ChatStore, writer: StoreWriter, registry: CollectorRegistry | None
    ) -> None:
        self.store = store
        self.writer = writer
        self._pending: dict[tuple[str, str, str], UsageRow] = {}
        self._lock = threading.Lock()
        self._flusher = Periodic(self._flush, FLUSH_S, "hand usage to the store")
        registry = registry if registry is not None else CollectorRegistry()
        self._requests = Counter(
            "ollang_key_requests", "Model requests per key.", ["key"], registry=registry
        )
        self._errors = Counter(
            "ollang_key_errors", "Model requests that failed, per key.", ["key"], registry=registry
        )
        self._tokens = Counter(
            "ollang_key_tokens",
            "Tokens per key as the hosts reported them (direction: input or output).",
            ["key", "direction"],
            registry=registry,
        )
        self._busy = Counter(
            "ollang_key_busy_seconds",
            "Seconds the key's requests held a host.",
            ["key"],
            registry=registry,
        )
        self._queue = Counter(
            "ollang_key_queue_seconds",
            "Seconds the key's requests waited for a host.",
            ["key"],
            registry=registry,
        )

    def turn(
        self,
        model: str,
        *,
        input_tokens: int | None,
        output_tokens: int | None,
        error: bool,
        busy_s: float,
        queue_s: float,
        key: str | None = None,
    ) -> None:
        """Count one finished (or failed) model request of ``key`` (default: the request's)."""
        name = key if key is not None else current_key().name
        row = UsageRow(
            name,
            model,
            utc_day(),
            requests=1,
            input_tokens=input_tokens or 0,
            output_tokens=output_tokens or 0,
            errors=1 if error else 0,
            busy_s=max(0.0, busy_s),
            queue_s=max(0.0, queue_s),
        )
        with self._lock:
            at = (row.key, row.model, row.day)
            old = self._pending.get(at)
            self._pending[at] = row if old is None else old.plus(row)
        self._requests.labels(name).inc()
        if error:
            self._errors.labels(name).inc()
        self._tokens.labels(name, "input").inc(row.input_tokens)
        self._tokens.labels(name, "output").inc(row.output_tokens)
        self._busy.labels(name).inc(row.busy_s)
        self._queue.labels(name).inc(row.queue_s)

    def flush(self) -> None:
        """Hand what was gathered to the store writer (nothing waits for it)."""
        with self._lock:
            rows, self._pending = list(self._pending.values()), {}
        if rows:
            self.writer.submit(self.store.add_usage, rows)

    async def _flush(self) -> None:
        self.flush()

    def start(self) -> None:
        """Flush every :data:`FLUSH_S` seconds from now on."""
        self._flusher.start()

    async def stop(self) -> None:
        """Stop flushing on the timer and flush what is left (before the writer closes)."""
        await self._flusher.stop()
        self.flush()
