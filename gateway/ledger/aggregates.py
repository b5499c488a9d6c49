"""Aggregates over the ledger for the dashboard: totals, per-deployment health, per-key usage.

Each query is bounded by a time range, narrowed by optional equality filters (key,
model, provider), and reads whole hours and days from the roll-ups and only the part
hours at either end from the ledger (`gateway.ledger.rollups`), so its cost depends on
the number of keys, models and deployments, not on the number of requests.

Definitions used throughout:
- *refused*: a key's limits turned the request away (402, 403 or 429 with no attempt);
- *error*: any other status of 400 or more;
- *error rate*: errors / (requests - refused);
- *RAG requests*: requests whose prompt went through retrieval (`retrieval_ms` is set).

Latency percentiles are read from the roll-ups' TTFT histogram (log-spaced bins, see
`gateway.db.rollup`): within 9.05% of the exact value between 1 ms and 65.5 s, the same
on SQLite and PostgreSQL, without sorting any row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway.db.rollup import REFUSED_STATUSES, bin_value
from gateway.ledger.rollups import Query, Source, blank, collect, slot_name, total


def error_rate(errors: int, requests: int, refused: int) -> float | None:
    served = requests - refused
    return round(errors / served, 6) if served > 0 else None


_TOTALS = Query(
    group=(),
    measures=[
        total("requests"),
        lambda s: s.total("requests", s.refused),
        lambda s: s.total("requests", s.error),
        total("input_tokens"),
        total("output_tokens"),
        total("cost_usd"),
        total("streamed"),
        total("cancelled"),
        total("rag_requests"),
    ],
)


async def totals(engine: Any, start: datetime, end: datetime, filters: dict[str, str]) -> dict[str, Any]:
    found = await collect(engine, start, end, filters, _TOTALS)
    values = found[()].values if () in found else [0] * len(_TOTALS.measures)
    n, refused, errors, tin, tout, cost, streamed, cancelled, rag = values
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


_DEPLOYMENTS = Query(
    group=("deployment",),
    measures=[
        total("requests"),
        lambda s: s.total("requests", s.error),
        lambda s: s.total("output_tokens", s.ok),
        lambda s: s.total("generating_ms", s.ok),
    ],
    where=lambda s: s.dim("deployment") != "",
    ttft=True,
)


async def deployment_stats(
    engine: Any, start: datetime, end: datetime, filters: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Per deployment: requests, errors, error rate, p50/p95 TTFT and output tokens per second.

    Tokens per second is the deployment's successful output tokens over their generation time
    (latency after the first token for a stream; the whole latency for an answer that came in
    one piece), summed before dividing so long answers weigh more.
    """
    out: dict[str, dict[str, Any]] = {}
    for (deployment,), sums in (await collect(engine, start, end, filters, _DEPLOYMENTS)).items():
        n, errors, tokens, seconds_ms = sums.values
        histogram = [(bin_value(k), c) for k, c in enumerate(sums.ttft) if c]
        out[deployment] = {
            "requests": int(n),
            "errors": int(errors),
            "error_rate": error_rate(int(errors), int(n), 0),
            "ttft_p50_ms": percentile(histogram, 0.5),
            "ttft_p95_ms": percentile(histogram, 0.95),
            "tokens_per_s": round(int(tokens) / (float(seconds_ms) / 1000), 3) if seconds_ms else None,
        }
    return out


def _refused_with(status: int) -> Any:
    return lambda s: s.total("requests", s.refused & (s.dim("status") == status))


_KEYS = Query(
    group=("key_id",),
    measures=[total("requests"), total("cost_usd"), *(_refused_with(s) for s in REFUSED_STATUSES)],
)


async def key_usage(
    engine: Any, start: datetime, end: datetime, filters: dict[str, str]
) -> dict[str | None, dict[str, Any]]:
    """Per key: requests, spend, and refusals by status (402 budget, 403 model, 429 rate)."""
    found = await collect(engine, start, end, filters, _KEYS)
    return {
        blank(key_id): {
            "requests": int(n),
            "cost_usd": round(float(cost), 10),
            "refused": {str(s): int(c) for s, c in zip(REFUSED_STATUSES, counts, strict=True)},
        }
        for (key_id,), (n, cost, *counts) in ((k, v.values) for k, v in found.items())
    }


def _model_tokens_query(bucket: str) -> Query:
    return Query(
        group=("model", "deployment"),
        slot=bucket,
        measures=[total("input_tokens"), total("output_tokens"), total("cost_usd")],
        where=lambda s: s.ok & (s.dim("deployment") != ""),
    )


async def model_tokens(
    engine: Any, bucket: str, start: datetime, end: datetime, filters: dict[str, str]
) -> list[tuple[str, str, str | None, int, int, float]]:
    """Answered requests' tokens and cost per (time slot, model, deployment): what savings are priced on."""
    found = await collect(engine, start, end, filters, _model_tokens_query(bucket))
    rows = [
        (slot_name(hour), model, blank(deployment), int(i), int(o), float(c))
        for (hour, model, deployment), (i, o, c) in ((k, v.values) for k, v in found.items())
    ]
    return sorted(rows, key=lambda r: r[:3])


async def cache_savings(
    engine: Any, bucket: str, start: datetime, end: datetime, filters: dict[str, str]
) -> list[tuple[str, int, float]]:
    """Response-cache hits per time slot: (slot, hits, USD the stored answers had cost)."""
    query = Query(group=(), slot=bucket, measures=[total("cache_hits"), total("cache_saved_usd")], where=_ok)
    found = await collect(engine, start, end, filters, query)
    hits = (
        (slot_name(hour), int(n), float(saved))
        for (hour,), (n, saved) in ((k, v.values) for k, v in found.items())
    )
    return sorted(h for h in hits if h[1])


def _ok(source: Source) -> Any:
    return source.ok
