"""``GET /metrics``: Prometheus' text format (prometheus_client), one registry per app.

* ``ollang_requests_total{route,host,status}``, ``ollang_request_errors_total{route,host,kind}``;
* ``ollang_in_flight{host}``, ``ollang_host_up{host}`` (read from the router when scraped);
* ``ollang_ttft_seconds{route,host}`` and ``ollang_tokens_per_answer{route,host}`` histograms;
* ``ollang_queue_length{key}`` (when scraped), ``ollang_queue_wait_seconds{key}``: requests
  waiting for a host's slot, and how long they waited (keys by name);
* ``ollang_store_batches_total``, ``ollang_store_calls_total`` (the store writer's batching);
* ``ollang_prefix_lookups_total{found}``: turns that name no session, by where the host of
  their longest known prefix was found (``cache``, ``store``) or ``none``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ollang.routing.router import Router
from ollang.server.writer import StoreWriter

__all__ = ["Metrics"]

_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_TOKEN_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


class _Live(Collector):
    """Values read when scraped: host health and load, store batching."""

    def __init__(self, router: Router, writer: StoreWriter) -> None:
        self.router = router
        self.writer = writer

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        up = GaugeMetricFamily(
            "ollang_host_up", "Whether the host answered its last check.", labels=["host"]
        )
        flight = GaugeMetricFamily(
            "ollang_in_flight", "Requests in flight on the host.", labels=["host"]
        )
        for host in self.router.hosts:
            up.add_metric([host.name], 1.0 if host.state.up else 0.0)
            flight.add_metric([host.name], float(host.in_flight))
        yield up
        yield flight
        queued = GaugeMetricFamily(
            "ollang_queue_length", "Requests waiting for a host's slot, per key.", labels=["key"]
        )
        for key, count in sorted(self.router.queue.queued().items()):
            queued.add_metric([key], float(count))
        yield queued
        yield CounterMetricFamily(
            "ollang_store_batches",
            "Store transactions run by the writer.",
            value=self.writer.batches,
        )
        yield CounterMetricFamily(
            "ollang_store_calls", "Store calls run by the writer.", value=self.writer.calls
        )


class Metrics:
    """The app's metrics; the turn engine and the routes report into it."""

    def __init__(self, router: Router, writer: StoreWriter) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ollang_requests",
            "Model requests by route, host and outcome.",
            ["route", "host", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "ollang_request_errors",
            "Failed model requests by route, host and error kind.",
            ["route", "host", "kind"],
            registry=self.registry,
        )
        self.ttft = Histogram(
            "ollang_ttft_seconds",
            "Seconds from the request to its first token.",
            ["route", "host"],
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Histogram(
            "ollang_tokens_per_answer",
            "Tokens generated per answer.",
            ["route", "host"],
            buckets=_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.prefix = Counter(
            "ollang_prefix_lookups",
            "Cache-aware routing lookups by where the conversation's host was found.",
            ["found"],
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "ollang_queue_wait_seconds",
            "Seconds a request waited for a host's slot (all hosts full), per key.",
            ["key"],
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_Live(router, writer))
        router.queue.on_wait = self.waited

    def first_token(self, route: str, host: str, seconds: float) -> None:
        """A stream's first token arrived."""
        self.ttft.labels(route, host).observe(seconds)

    def finished(self, route: str, host: str, status: str, tokens: int | None) -> None:
        """A model request ended (``complete``, ``interrupted`` or ``error``)."""
        self.requests.labels(route, host, status).inc()
        if tokens is not None and status == "complete":
            self.tokens.labels(route, host).observe(tokens)

    def prefix_lookup(self, found: str) -> None:
        """A turn that names no session looked up its prefixes (``cache``, ``store``, ``none``)."""
        self.prefix.labels(found).inc()

    def waited(self, key: str, seconds: float) -> None:
        """A request of key ``key`` left the waiting room after ``seconds``."""
        self.queue_wait.labels(key).observe(seconds)

    def failed(self, route: str, host: str, kind: str) -> None:
        """A model request failed on ``host`` (before or during its answer)."""
        self.errors.labels(route, host, kind).inc()
