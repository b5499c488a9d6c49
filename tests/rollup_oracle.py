"""The roll-ups worked out in plain Python, row by row: an independent oracle for the SQL.

`gateway.db.rollup_sql` sums ledger rows into `ledger_rollup` inside the database; this
computes what that table must then hold from the same rows, written the obvious way, so a
test can compare the two key by key (see `tests/test_ledger_rollup.py`).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.db.rollup import (
    CACHE_HITS,
    DAY,
    FULL,
    HOUR,
    KEY,
    REFUSED_STATUSES,
    ROUTE,
    SUMS,
    TTFT_EDGES,
    VALUES,
    hour_of,
)


def ttft_bin(ttft_ms: float) -> int:
    return bisect_right(TTFT_EDGES, ttft_ms)


def is_refused(status: int, attempts: int) -> bool:
    return status in REFUSED_STATUSES and attempts == 0


def generating_ms(latency_ms: float, ttft_ms: float | None, output_tokens: int) -> float:
    if output_tokens <= 0:
        return 0.0
    after_first = latency_ms - (ttft_ms or 0.0)
    return after_first if after_first > 0 else latency_ms


class Rollup:
    """Roll-up deltas of some ledger rows, keyed like the table; `add` them, then `table()`."""

    def __init__(self) -> None:
        self._hourly: dict[tuple[Any, ...], list[Any]] = {}

    def add(self, row: Mapping[str, Any]) -> None:
        """One ledger row (a mapping with the ledger's columns; `created_at` a datetime)."""
        status, attempts = int(row["status"]), int(row["attempts"] or 0)
        latency, ttft, tout = float(row["latency_ms"] or 0.0), row["ttft_ms"], int(row["output_tokens"] or 0)
        key = (
            hour_of(row["created_at"]), row["key_id"] or "", row["model"], row["provider"] or "",
            row["deployment"] or "", status, is_refused(status, attempts),
        )  # fmt: skip
        acc = self._hourly.setdefault(key, [0] * len(VALUES))
        acc[0] += 1
        acc[1] += int(row["input_tokens"] or 0)
        acc[2] += tout
        acc[3] += float(row["cost_usd"] or 0.0)
        acc[4] += 1 if row["streamed"] else 0
        acc[5] += 1 if row["cancelled"] else 0
        retrieval = row.get("retrieval_ms")
        acc[6] += 0 if retrieval is None else 1
        acc[7] += float(retrieval or 0.0)
        acc[8] += 1 if row["usage_estimated"] else 0
        acc[9] += attempts
        acc[10] += latency
        acc[11] += generating_ms(latency, ttft, tout)
        if row.get("cache") in CACHE_HITS:
            acc[12] += 1
            acc[13] += float(row.get("cost_saved_usd") or 0.0)
        if ttft is not None and status < 400:
            acc[len(SUMS) + ttft_bin(float(ttft))] += 1

    def extend(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.add(row)

    def table(self) -> dict[tuple[Any, ...], list[Any]]:
        """Every cube at both grains, derived from the hourly full rows: roll-up key -> `VALUES`."""
        out: dict[tuple[Any, ...], list[Any]] = {}
        for (hour, key_id, model, provider, deployment, status, refused), acc in self._hourly.items():
            for grain, slot in ((HOUR, hour), (DAY, hour - hour % DAY)):
                for key in (
                    (FULL, grain, slot, key_id, model, provider, deployment, status, refused),
                    (ROUTE, grain, slot, "", model, provider, deployment, status, refused),
                    (KEY, grain, slot, key_id, "", "", "", status, refused),
                ):
                    into = out.get(key)
                    out[key] = list(acc) if into is None else [a + b for a, b in zip(into, acc, strict=True)]
        return out
