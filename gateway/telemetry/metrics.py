"""Prometheus metrics: per-request counters and histograms, and gauges read at scrape time.

Request metrics are fed from each finished `RequestRecord` (this is a record sink):
one dictionary lookup finds the pre-bound label children for the request's model,
deployment and status, so the hot path pays a few increments and never builds label
sets. Everything that is state rather than an event — in-flight attempts and breaker
state per deployment, the ledger's queue and spill file, Redis and database health —
is read from the live objects only when `/metrics` is scraped (`StateCollector`).

Each process keeps its own registry (one per app, so tests can run several gateways
in one process): with several gateway processes, scrape each one (per-process scrape).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.records import RequestRecord

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
OVERHEAD_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
BREAKER_STATES = ("closed", "open", "half_open")


@dataclass(slots=True)
class _Bound:
    """The label children one kind of outcome updates, bound once and reused."""

    requests: Any
    errors: Any  # None for successful requests
    latency: Any
    ttft: Any
    overhead: Any
    input_tokens: Any
    output_tokens: Any
    cost: Any


class RequestMetrics:
    """Counters and histograms per model, deployment and status; a record sink."""

    def __init__(self, registry: CollectorRegistry) -> None:
        by_outcome = ["model", "deployment", "status"]
        by_model = ["model", "deployment"]
        self.requests = Counter("gateway_requests", "Requests finished", by_outcome, registry=registry)
        self.errors = Counter(
            "gateway_errors",
            "Requests that failed or were refused",
            [*by_outcome, "error_type"],
            registry=registry,
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds",
            "Whole request, from routing to the last byte",
            by_model,
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.ttft = Histogram(
            "gateway_time_to_first_token_seconds",
            "Time to the first content (streams) or the whole answer",
            by_model,
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.overhead = Histogram(
            "gateway_overhead_seconds",
            "Time spent in the gateway itself, upstream and client waits excluded",
            by_model,
            buckets=OVERHEAD_BUCKETS_S,
            registry=registry,
        )
        by_provider = ["model", "provider"]
        self.input_tokens = Counter("gateway_input_tokens", "Prompt tokens", by_provider, registry=registry)
        self.output_tokens = Counter(
            "gateway_output_tokens", "Completion tokens", by_provider, registry=registry
        )
        self.cost = Counter("gateway_cost_usd", "Cost in USD", by_provider, registry=registry)
        self._bound: dict[tuple[str, str, str, int, str | None], _Bound] = {}

    def _bind(self, key: tuple[str, str, str, int, str | None]) -> _Bound:
        model, deployment, provider, status, error = key
        bound = _Bound(
            requests=self.requests.labels(model, deployment, str(status)),
            errors=self.errors.labels(model, deployment, str(status), error) if error else None,
            latency=self.latency.labels(model, deployment),
            ttft=self.ttft.labels(model, deployment),
            overhead=self.overhead.labels(model, deployment),
            input_tokens=self.input_tokens.labels(model, provider),
            output_tokens=self.output_tokens.labels(model, provider),
            cost=self.cost.labels(model, provider),
        )
        self._bound[key] = bound
        return bound

    def record(self, record: RequestRecord) -> None:
        key = (record.model, record.deployment or "", record.provider or "", record.status, record.error)
        bound = self._bound.get(key) or self._bind(key)
        bound.requests.inc()
        if bound.errors is not None:
            bound.errors.inc()
        if record.deployment is None:
            return  # refused or failed before any upstream answered: nothing was timed or spent
        bound.latency.observe(record.latency_ms / 1000)
        if record.ttft_ms is not None:
            bound.ttft.observe(record.ttft_ms / 1000)
        if record.overhead_ms is not None:
            bound.overhead.observe(record.overhead_ms / 1000)
        bound.input_tokens.inc(record.prompt_tokens)
        bound.output_tokens.inc(record.completion_tokens)
        bound.cost.inc(record.cost_usd)


class StateCollector(Collector):
    """Gauges computed from live state when `/metrics` is scraped, never on a request's path."""

    def __init__(self, sources: Callable[[], dict[str, Any]]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        s = self._sources()
        in_flight = GaugeMetricFamily(
            "gateway_in_flight", "Upstream attempts in flight, this process", labels=["deployment"]
        )
        breaker = GaugeMetricFamily(
            "gateway_breaker_state", "1 for the breaker's current state", labels=["deployment", "state"]
        )
        now = s["now"]
        for deployment_id, state in sorted(s["deployments"].items()):
            in_flight.add_metric([deployment_id], state.in_flight)
            current = state.breaker.state(now)
            for name in BREAKER_STATES:
                breaker.add_metric([deployment_id, name], 1.0 if current == name else 0.0)
        yield in_flight
        yield breaker
        yield GaugeMetricFamily("gateway_ledger_queue_rows", "Ledger rows waiting to be written", s["queue"])
        yield GaugeMetricFamily(
            "gateway_ledger_spool_bytes", "Size of the ledger's overflow files on disk", s["spool_bytes"]
        )
        health = GaugeMetricFamily(
            "gateway_dependency_up", "1 when the dependency answered", labels=["dependency"]
        )
        for name, up in sorted(s["health"].items()):
            health.add_metric([name], 1.0 if up else 0.0)
        yield health
