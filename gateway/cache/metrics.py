"""`/metrics` for the cache: lookups by model and result, store failures, writes.

Read from the service's counters at scrape time, so a lookup pays one `Counter`
increment and no label binding.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


class CacheCollector(Collector):
    def __init__(self, service: Any) -> None:
        self._service = service  # gateway.cache.service.CacheService

    def collect(self) -> Iterator[Metric]:
        lookups = CounterMetricFamily(
            "gateway_cache_lookups",
            "Cache lookups by result (hit, semantic_hit, miss, bypass: Cache-Control no-cache)",
            labels=["model", "result"],
        )
        for (model, result), n in sorted(self._service.lookups.items()):
            lookups.add_metric([model, result], n)
        yield lookups
        errors = CounterMetricFamily(
            "gateway_cache_errors",
            "Cache store calls that failed or were skipped while it is down",
            labels=["store"],
        )
        for store, n in sorted(self._service.errors.items()):
            errors.add_metric([store], n)
        yield errors
        stored = CounterMetricFamily("gateway_cache_stored", "Answers written to the cache", labels=["store"])
        for store, n in sorted(self._service.stored.items()):
            stored.add_metric([store], n)
        yield stored
