"""Aggregates over the ledger for the dashboard: totals, per-deployment health, per-key usage.

Each query is bounded by a time range on `created_at`, narrowed by optional equality
filters (key, model, provider), and aggregates in the database, so the answer is
small however many rows the range holds.

Definitions used throughout:
- *refused*: a key's limits turned the request away (402, 403 or 429 with no attempt);
- *error*: any other status of 400 or more;
- *error rate*: errors / (requests - refused);
- *RAG requests*: requests whose prompt went through retrieval (`retrieval_ms` is set).

Latency percentiles are computed from a histogram built in SQL (`_ttft_bucket`: 0.1 ms
steps under 100 ms, 1 ms under 1 s, 10 ms under 10 s, 100 ms above), so both SQLite
and PostgreSQL answer the same, to within 1%, without sorting every row.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, case, cast, func, not_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.models import LedgerRow
from gateway.ledger.queries import bounded

REFUSED_STATUSES = (402, 403, 429)

_refused = and_(LedgerRow.status.in_(REFUSED_STATUSES), LedgerRow.attempts == 0)
_error = and_(LedgerRow.status >= 400, not_(_refused))


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def error_rate(errors: int, requests: int, refused: int) -> float | None:
    served = requests - refused
    return round(errors / served, 6) if served > 0 else None


async def totals(
    engine: AsyncEngine, start: datetime, end: datetime, filters: dict[str, str]
) -> dict[str, Any]:
    query = bounded(
        select(
            func.count(),
            _count(_refused),
            _count(_error),
            func.coalesce(func.sum(LedgerRow.input_tokens), 0),
            func.coalesce(func.sum(LedgerRow.output_tokens), 0),
            func.coalesce(func.sum(LedgerRow.cost_usd), 0.0),
            _count(LedgerRow.streamed.is_(True)),
            _count(LedgerRow.cancelled.is_(True)),
            _count(LedgerRow.retrieval_ms.is_not(None)),
        ),
        start,
        end,
        filters,
    )
    async with engine.connect() as connection:
        n, refused, errors, tin, tout, cost, streamed, cancelled, rag = (
            await connection.execute(query)
        ).one()
    return {
        "requests": int(n),
        "refused": int(refused),
        "errors": int(errors),
        "error_rate": error_rate(int(errors), int(n), int(refused)),
        "input_tokens": int(tin),
        "output_tokens": int(tout),
        "cost_usd": round(float(cost), 10),
        "streamed": int(streamed),
        "cancelled": int(cancelled),
        "rag_requests": int(rag),
    }


def _ttft_bucket() -> ColumnElement[Any]:
    """A TTFT histogram key in tenths of a millisecond, coarser as latency grows (1% steps)."""
    tenths = cast(LedgerRow.ttft_ms * 10, Integer)
    return case(
        (LedgerRow.ttft_ms < 100, tenths),
        (LedgerRow.ttft_ms < 1000, cast(LedgerRow.ttft_ms, Integer) * 10),
        (LedgerRow.ttft_ms < 10000, cast(LedgerRow.ttft_ms / 10, Integer) * 100),
        else_=cast(LedgerRow.ttft_ms / 100, Integer) * 1000,
    )


def percentile(histogram: list[tuple[float, int]], q: float) -> float | None:
    """Nearest-rank percentile of a sorted (value, count) histogram."""
    total = sum(n for _, n in histogram)
    if total == 0:
        return None
    rank = max(1, -(-q * total // 1))  # ceil(q * total), at least the first sample
    seen = 0
    for value, n in histogram:
        seen += n
        if seen >= rank:
            return value
    return histogram[-1][0]


async def deployment_stats(
    engine: AsyncEngine, start: datetime, end: datetime, filters: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Per deployment: requests, errors, error rate, p50/p95 TTFT and output tokens per second.

    Tokens per second is the deployment's successful output tokens over their generation time
    (latency after the first token for a stream; the whole latency for an answer that came in
    one piece), summed before dividing so long answers weigh more.
    """
    ok = LedgerRow.status < 400
    after_first = LedgerRow.latency_ms - func.coalesce(LedgerRow.ttft_ms, 0.0)
    generating = case((after_first > 0, after_first), else_=LedgerRow.latency_ms)
    slot = case((and_(ok, LedgerRow.ttft_ms.is_not(None)), _ttft_bucket()), else_=None).label("slot")
    query = bounded(  # one pass: counts and sums per (deployment, TTFT slot), added up below
        select(
            LedgerRow.deployment,
            slot,
            func.count(),
            _count(_error),
            func.coalesce(func.sum(case((ok, LedgerRow.output_tokens), else_=0)), 0),
            func.coalesce(
                func.sum(case((and_(ok, LedgerRow.output_tokens > 0), generating), else_=0.0)), 0.0
            ),
        ).where(LedgerRow.deployment.is_not(None)),
        start,
        end,
        filters,
    ).group_by(LedgerRow.deployment, slot)
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    per: dict[str, list[tuple[float, int]]] = defaultdict(list)
    sums: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0, 0.0])
    for deployment, key, n, errors, tokens, generating_ms in rows:
        if key is not None:
            per[deployment].append((int(key) / 10, int(n)))
        total = sums[deployment]
        total[0] += int(n)
        total[1] += int(errors)
        total[2] += int(tokens)
        total[3] += float(generating_ms)
    out: dict[str, dict[str, Any]] = {}
    for deployment, (n, errors, tokens, seconds_ms) in sums.items():
        histogram = sorted(per[deployment])
        out[deployment] = {
            "requests": int(n),
            "errors": int(errors),
            "error_rate": error_rate(int(errors), int(n), 0),
            "ttft_p50_ms": percentile(histogram, 0.5),
            "ttft_p95_ms": percentile(histogram, 0.95),
            "tokens_per_s": round(tokens / (seconds_ms / 1000), 3) if seconds_ms else None,
        }
    return out


async def key_usage(
    engine: AsyncEngine, start: datetime, end: datetime, filters: dict[str, str]
) -> dict[str | None, dict[str, Any]]:
    """Per key: requests, spend, and refusals by status (402 budget, 403 model, 429 rate)."""
    refusals = [_count(and_(_refused, LedgerRow.status == s)) for s in REFUSED_STATUSES]
    # Grouping by an expression, not the bare column, keeps SQLite on the time-range index: on the
    # bare column it walks the (key_id, created_at) index and reads the table out of order
    # (a month of a million rows: about 4x slower). PostgreSQL plans both the same.
    key = LedgerRow.key_id.concat("").label("key")
    query = bounded(
        select(key, func.count(), func.coalesce(func.sum(LedgerRow.cost_usd), 0.0), *refusals),
        start,
        end,
        filters,
    ).group_by(key)
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return {
        key_id: {
            "requests": int(n),
            "cost_usd": round(float(cost), 10),
            "refused": {str(s): int(c) for s, c in zip(REFUSED_STATUSES, counts, strict=True)},
        }
        for key_id, n, cost, *counts in rows
    }


async def model_tokens(
    engine: AsyncEngine, slot: ColumnElement[Any], start: datetime, end: datetime, filters: dict[str, str]
) -> list[tuple[str, str, str | None, int, int, float]]:
    """Answered requests' tokens and cost per (time slot, model, deployment): what savings are priced on."""
    query = (
        bounded(
            select(
                slot,
                LedgerRow.model,
                LedgerRow.deployment,
                func.coalesce(func.sum(LedgerRow.input_tokens), 0),
                func.coalesce(func.sum(LedgerRow.output_tokens), 0),
                func.coalesce(func.sum(LedgerRow.cost_usd), 0.0),
            ).where(LedgerRow.status < 400, LedgerRow.deployment.is_not(None)),
            start,
            end,
            filters,
        )
        .group_by(slot, LedgerRow.model, LedgerRow.deployment)
        .order_by(slot)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [(s, m, d, int(i), int(o), float(c)) for s, m, d, i, o, c in rows]


async def cache_savings(
    engine: AsyncEngine, slot: ColumnElement[Any], start: datetime, end: datetime, filters: dict[str, str]
) -> list[tuple[str, int, float]]:
    """Response-cache hits per time slot: (slot, hits, USD the stored answers had cost)."""
    query = (
        bounded(
            select(
                slot,
                func.count(),
                func.coalesce(func.sum(LedgerRow.cost_saved_usd), 0.0),
            ).where(LedgerRow.status < 400, LedgerRow.cache.in_(("hit", "semantic-hit"))),
            start,
            end,
            filters,
        )
        .group_by(slot)
        .order_by(slot)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [(s, int(n), float(saved)) for s, n, saved in rows]
