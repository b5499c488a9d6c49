"""Latency samples and their percentiles."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0 to 100) by linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: list[float]) -> dict[str, float | None]:
    return {
        "p50_ms": percentile(values, 50),
        "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99),
        "mean_ms": sum(values) / len(values) if values else None,
        "min_ms": min(values) if values else None,
        "max_ms": max(values) if values else None,
    }


@dataclass(slots=True)
class Samples:
    """What one target did in one phase: latencies of the successes, failures by kind."""

    total_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    failure_examples: dict[str, str] = field(default_factory=dict)
    attempted: int = 0

    @property
    def ok(self) -> int:
        return len(self.total_ms)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def add(self, total_ms: float, ttft_ms: float | None) -> None:
        self.total_ms.append(total_ms)
        if ttft_ms is not None:
            self.ttft_ms.append(ttft_ms)

    def fail(self, kind: str, detail: str) -> None:
        self.failures[kind] += 1
        self.failure_examples.setdefault(kind, detail[:300])

    def as_dict(self, streamed: bool) -> dict[str, Any]:
        result: dict[str, Any] = {
            "attempted": self.attempted,
            "ok": self.ok,
            "failed": self.failed,
            "failures": dict(self.failures),
            "failure_examples": self.failure_examples,
            "total": summary(self.total_ms),
        }
        if streamed:
            result["ttft"] = summary(self.ttft_ms)
        return result


def added(gateway: float | None, direct: float | None) -> float | None:
    """Gateway minus direct of the same percentile; None when either side has no sample."""
    if gateway is None or direct is None:
        return None
    return gateway - direct
