"""Roll-ups of the ledger: what a set of ledger rows adds to the `ledger_rollup` table.

Month-wide reports cannot afford to read every ledger row, so every row is also summed
into roll-up rows, in the same transaction that inserts it (`gateway.db.rollup_sql`): the
roll-ups can never disagree with the ledger, even after a crash, and a row the ledger
already had (a re-sent batch, a replayed journal) adds nothing, because only the rows the
INSERT reports as new (`RETURNING`) are rolled up.

A roll-up row sums the ledger rows that share a time slot and a set of dimensions:

- *grain* `HOUR` (1) or `DAY` (24): `hour` is the slot's first hour, counted in hours since
  the Unix epoch (UTC), so days start at 00:00 UTC;
- *cube*: which dimensions are kept. `FULL` keeps all of them (key, model, provider,
  deployment, status, refused); `ROUTE` drops the key; `KEY` keeps only the key, status and
  refused. A report reads the smallest cube that has every dimension it filters or groups
  by, so a month of the whole gateway is a few hundred rows, not hundreds of thousands.
  Dropped dimensions hold `''`; a missing key, provider or deployment is also stored as `''`.

Each row carries sums (`SUMS`) and a histogram of the time to first token of answered
requests (status below 400; the only ones whose latency the reports show) in fixed,
log-spaced bins (`TTFT_EDGES`: four per doubling from 1 ms to 65.5 s), so a p50/p95 over
any range is read from summed bins. The estimate is the bin's geometric middle, which is
within `TTFT_ERROR` (9.05%) of the exact nearest-rank value for a true value between 1 ms
and 65.5 s; below 1 ms it reads 0.5 ms, above 65.5 s it reads 65.5 s.

This module holds the layout and what the numbers mean; the roll-ups themselves are
computed by the database, from the ledger rows, by one statement (`gateway.db.rollup_sql`)
that the ledger writer, the migration's backfill and the benchmark's loader all run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

HOUR, DAY = 1, 24
FULL, ROUTE, KEY = 0, 1, 2
DIMS = ("key_id", "model", "provider", "deployment", "status", "refused")
CUBE_DIMS: dict[int, tuple[str, ...]] = {
    FULL: DIMS,
    ROUTE: ("model", "provider", "deployment", "status", "refused"),
    KEY: ("key_id", "status", "refused"),
}
SUMS = ("requests", "input_tokens", "output_tokens", "cost_usd", "streamed", "cancelled",
        "rag_requests", "retrieval_ms", "usage_estimated", "attempts", "latency_ms",
        "generating_ms", "cache_hits", "cache_saved_usd")  # fmt: skip
FLOAT_SUMS = ("cost_usd", "retrieval_ms", "latency_ms", "generating_ms", "cache_saved_usd")  # the rest count
TTFT_EDGES = tuple(2 ** (k / 4) for k in range(65))  # ms; bin k holds [edge k-1, edge k)
TTFT_BINS = len(TTFT_EDGES) + 1
TTFT_COLUMNS = tuple(f"ttft_{k:02d}" for k in range(TTFT_BINS))
TTFT_ERROR = 2 ** (1 / 8) - 1
VALUES = SUMS + TTFT_COLUMNS
KEY_COLUMNS = ("cube", "grain", "hour", *DIMS)
REFUSED_STATUSES = (402, 403, 429)
CACHE_HITS = ("hit", "semantic-hit")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_HOUR = timedelta(hours=1)


def hour_of(when: datetime) -> int:
    """Hours since the epoch of a time (naive times are UTC), exact to the microsecond."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - EPOCH) // ONE_HOUR


def hour_start(hour: int) -> datetime:
    return EPOCH + hour * ONE_HOUR


def bin_value(k: int) -> float:
    """What a TTFT bin reads as: its geometric middle (see the module's docstring for the bound)."""
    if k == 0:
        return TTFT_EDGES[0] / 2
    if k >= len(TTFT_EDGES):
        return TTFT_EDGES[-1]
    return round((TTFT_EDGES[k - 1] * TTFT_EDGES[k]) ** 0.5, 3)
