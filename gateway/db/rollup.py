"""Roll-ups of the ledger: what a set of ledger rows adds to the `ledger_rollup` table.

Month-wide reports cannot afford to read every ledger row, so every row is also summed
into roll-up rows, in the same transaction that inserts it (see `insert_rows`): the
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
  Dropped dimensions hold `''` (`0` for status); a missing key, provider or deployment is
  also stored as `''`.

Each row carries sums (`SUMS`) and a histogram of the time to first token of answered
requests (status below 400; the only ones whose latency the reports show) in fixed,
log-spaced bins (`TTFT_EDGES`: four per doubling from 1 ms to 65.5 s), so a p50/p95 over
any range is read from summed bins. The estimate is the bin's geometric middle, which is
within `TTFT_ERROR` (9.05%) of the exact nearest-rank value for a true value between 1 ms
and 65.5 s; below 1 ms it reads 0.5 ms, above 65.5 s it reads 65.5 s.

Pure Python plus two statements: the ledger writer, the migration's backfill, the tests'
seeds and the benchmark's bulk loader all roll up through `Rollup`, so none can drift.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, FromClause
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

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
_N_SUMS = len(SUMS)


def hour_of(when: datetime) -> int:
    """Hours since the epoch of a time (naive times are UTC), exact to the microsecond."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - EPOCH) // ONE_HOUR


def hour_start(hour: int) -> datetime:
    return EPOCH + hour * ONE_HOUR


def ttft_bin(ttft_ms: float) -> int:
    return bisect_right(TTFT_EDGES, ttft_ms)


def bin_value(k: int) -> float:
    """What a TTFT bin reads as: its geometric middle (see the module's docstring for the bound)."""
    if k == 0:
        return TTFT_EDGES[0] / 2
    if k >= len(TTFT_EDGES):
        return TTFT_EDGES[-1]
    return round((TTFT_EDGES[k - 1] * TTFT_EDGES[k]) ** 0.5, 3)


def is_refused(status: int, attempts: int) -> bool:
    """Turned away by the key's limits (budget, model, rate) before any upstream was tried."""
    return status in REFUSED_STATUSES and attempts == 0


def generating_ms(latency_ms: float, ttft_ms: float | None, output_tokens: int) -> float:
    """Time spent producing output: after the first token for a stream, all of it otherwise."""
    if output_tokens <= 0:
        return 0.0
    after_first = latency_ms - (ttft_ms or 0.0)
    return after_first if after_first > 0 else latency_ms


class Rollup:
    """Roll-up deltas of some ledger rows, keyed like the table; `add` them, then `rows()`."""

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
        acc = self._hourly.get(key)
        if acc is None:
            acc = self._hourly[key] = [0] * len(VALUES)
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
            acc[_N_SUMS + ttft_bin(float(ttft))] += 1

    def extend(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.add(row)

    def __len__(self) -> int:
        return len(self._hourly)

    def rows(self) -> list[tuple[Any, ...]]:
        """Every cube at both grains, derived from the hourly full rows, as `COLUMNS` tuples in key order.

        Sorted so concurrent writers (replicas sharing PostgreSQL) lock roll-up rows in the
        same order and cannot deadlock.
        """
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
        return [(*key, *out[key]) for key in sorted(out)]


COLUMNS = KEY_COLUMNS + VALUES


def _upsert_sql(dialect: str) -> str:
    """INSERT … ON CONFLICT DO UPDATE adding every sum: the same text for SQLite and PostgreSQL
    but the placeholders. Sent as is to the driver's executemany: for a few thousand rows of
    ninety columns, building SQLAlchemy parameters would cost more than the database does."""
    marks = [f"${i}" for i in range(1, len(COLUMNS) + 1)] if dialect == "postgresql" else ["?"] * len(COLUMNS)
    return (
        f"INSERT INTO ledger_rollup ({', '.join(COLUMNS)}) VALUES ({', '.join(marks)}) "
        f"ON CONFLICT ({', '.join(KEY_COLUMNS)}) DO UPDATE SET "
        + ", ".join(f"{v} = ledger_rollup.{v} + excluded.{v}" for v in VALUES)
    )


def upsert(connection: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Add `rows` (from `Rollup.rows`) to the roll-up table: new keys inserted, existing ones summed."""
    if rows:
        connection.exec_driver_sql(_upsert_sql(connection.dialect.name), rows)


def _insert(connection: Connection, table: Any) -> Any:
    return pg_insert(table) if connection.dialect.name == "postgresql" else sqlite_insert(table)


def insert_rows(connection: Connection, ledger: FromClause, rows: list[dict[str, Any]]) -> int:
    """Insert ledger rows (duplicates by request id ignored) and roll up the new ones; one transaction.

    Returns how many rows were new.
    """
    if not rows:
        return 0
    statement = (
        _insert(connection, ledger)
        .on_conflict_do_nothing(index_elements=["request_id"])
        .returning(ledger.c.request_id)
    )
    new = {request_id for (request_id,) in connection.execute(statement, rows)}
    count = len(new)
    deltas = Rollup()
    for row in rows:
        if row["request_id"] in new:
            new.discard(row["request_id"])  # a request id twice in one batch is inserted once
            deltas.add(row)
    upsert(connection, deltas.rows())
    return count
