"""Roll-ups computed by the database: ledger rows to `ledger_rollup` rows in one INSERT … SELECT.

The ledger writer, migration 0005's backfill and the benchmark's loader all run the
statement built here, over the rows a batch has just added (`insert_rows`) or over the
whole ledger (`backfill`), so none can drift from another. It runs in the database's own
code, not in Python: the summing that cost the writer about 200 µs of CPU per row (and
the GIL, beside the event loop) costs the database a few.

The statement has three steps (the layout and meaning are in `gateway.db.rollup`):

1. *binned*: the chosen ledger rows grouped by hour, every dimension and TTFT bin, so
   each row's bin is computed once (as a GROUP BY key), never once per histogram column;
2. *hourly*: those groups folded into one row per hour and dimensions, the histogram
   spread into its 66 columns;
3. every hourly row copied into the three cubes at both grains (a cross join with the six
   cube-and-grain pairs), summed per roll-up key, then added to the table with
   INSERT … ON CONFLICT DO UPDATE.

The rows are inserted in roll-up key order (ORDER BY), so replicas writing to the same
PostgreSQL lock shared roll-up rows in the same order and cannot deadlock each other.
Exactly once: `insert_rows` rolls up only the request ids its INSERT reports as new.

Every statement's text is the same whatever the batch's size: the database connection
keeps each distinct text prepared (SQLite's statement cache holds 128 per connection,
asyncpg's 100), and a prepared INSERT of 500 rows or roll-up of 500 ids takes 0.4 to 1.5 MB
of the gateway's memory. With one text per batch size, the ledger path grew by about
37 MB per 10k requests until every pooled connection's cache was full. So rows go in
pages of `INSERT_PAGE_ROWS`, the rest of a batch in pages of falling powers of two (eight
INSERT texts in all, about 0.8 MB prepared; a batch of 500 rows takes seven statements,
each a round trip to aiosqlite's thread), and the new ids are one parameter, not one per id.

Row-level meanings (`refused`, `row_value`, `ttft_bin`) are shared with the reports'
reads of raw ledger rows (`gateway.ledger.rollups`), so a sum over roll-ups and a sum
over the rows behind them are the same expression.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Connection,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    case,
    column,
    false,
    func,
    literal_column,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from gateway.db.models import LEDGER_ROLLUP, LedgerRow
from gateway.db.rollup import (
    CACHE_HITS,
    DAY,
    DIMS,
    FLOAT_SUMS,
    FULL,
    HOUR,
    KEY,
    KEY_COLUMNS,
    REFUSED_STATUSES,
    ROUTE,
    SUMS,
    TTFT_COLUMNS,
    TTFT_EDGES,
    VALUES,
)

LEDGER = cast(Table, LedgerRow.__table__)
L = LEDGER.c
BACKFILL_SPAN = timedelta(days=1)  # the backfill's slice of the ledger per statement
BACKFILL_WORK_MEM = "256MB"
INSERT_PAGE_ROWS = 128  # rows per INSERT statement (a power of two), ~3 kB prepared per row


def const(value: float | str) -> ColumnElement[Any]:
    """A constant written into the SQL, not bound: PostgreSQL only matches a GROUP BY
    expression to the same expression in the select list if their text is identical."""
    return literal_column(repr(value))


class utc_hour(FunctionElement[int]):
    """Hours since the Unix epoch of a ledger time, floored: `gateway.db.rollup.hour_of` in SQL."""

    type = Integer()
    inherit_cache = True


@compiles(utc_hour, "postgresql")
def _utc_hour_postgresql(element: utc_hour, compiler: Any, **kw: Any) -> str:
    # extract(epoch …) is numeric in PostgreSQL 14+, so the floor is exact to the microsecond.
    return f"CAST(floor(extract(epoch FROM {compiler.process(element.clauses, **kw)}) / 3600) AS INTEGER)"


@compiles(utc_hour, "sqlite")
def _utc_hour_sqlite(element: utc_hour, compiler: Any, **kw: Any) -> str:
    # Times are stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC). Cutting the text at the hour
    # keeps a row at 21:59:59.9999 in hour 21, as the text comparisons of the reports do;
    # strftime('%s') of the full text would round it to milliseconds first.
    arg = compiler.process(element.clauses, **kw)
    return f"(CAST(strftime('%s', substr({arg}, 1, 13) || ':00:00') AS INTEGER) / 3600)"


class int_sum(FunctionElement[int]):
    """sum() of integers, kept an integer: PostgreSQL widens sum(bigint) to numeric, whose
    arithmetic made each further step of the roll-up several times slower."""

    type = BigInteger()
    inherit_cache = True


@compiles(int_sum)
def _int_sum(element: int_sum, compiler: Any, **kw: Any) -> str:
    return f"sum({compiler.process(element.clauses, **kw)})"


@compiles(int_sum, "postgresql")
def _int_sum_postgresql(element: int_sum, compiler: Any, **kw: Any) -> str:
    return f"CAST(sum({compiler.process(element.clauses, **kw)}) AS BIGINT)"


def _total(value: ColumnElement[Any], name: str) -> ColumnElement[Any]:
    """The sum of a roll-up column `name` (a sum or a TTFT bin) over rows, typed as the column is."""
    return func.sum(value) if name in FLOAT_SUMS else int_sum(value)


def refused() -> ColumnElement[bool]:
    """Turned away by the key's limits (budget, model, rate) before any upstream was tried."""
    return and_(L.status.in_([const(s) for s in REFUSED_STATUSES]), L.attempts == const(0))


def _flag(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return case((condition, const(1)), else_=const(0))


def row_value(name: str) -> ColumnElement[Any]:
    """What one ledger row adds to the sum `name` of `gateway.db.rollup.SUMS`."""
    after_first = L.latency_ms - func.coalesce(L.ttft_ms, const(0.0))
    special: dict[str, ColumnElement[Any]] = {
        "requests": const(1),
        "streamed": _flag(L.streamed.is_(True)),
        "cancelled": _flag(L.cancelled.is_(True)),
        "usage_estimated": _flag(L.usage_estimated.is_(True)),
        "rag_requests": _flag(L.retrieval_ms.is_not(None)),
        "retrieval_ms": func.coalesce(L.retrieval_ms, const(0.0)),
        "cache_hits": _flag(L.cache.in_(CACHE_HITS)),
        "cache_saved_usd": case(
            (L.cache.in_(CACHE_HITS), func.coalesce(L.cost_saved_usd, const(0.0))), else_=const(0.0)
        ),
        # Time spent producing output: after the first token for a stream, all of it otherwise.
        "generating_ms": case(
            (L.output_tokens <= 0, 0.0), (after_first > 0, after_first), else_=L.latency_ms
        ),
    }
    return special[name] if name in special else L[name]


def ttft_bin(lo: int = 0, hi: int = len(TTFT_EDGES)) -> ColumnElement[Any]:
    """The TTFT bin of a row (`bisect_right` over `TTFT_EDGES`): a binary search of CASEs."""
    if lo == hi:
        return const(lo)
    mid = (lo + hi) // 2
    return case((L.ttft_ms < const(TTFT_EDGES[mid]), ttft_bin(lo, mid)), else_=ttft_bin(mid + 1, hi))


def dimension(name: str) -> ColumnElement[Any]:
    """A dimension of a ledger row as roll-ups store it: a missing key, provider or deployment is ''."""
    if name == "refused":
        return case((refused(), true()), else_=false())
    return func.coalesce(L[name], const("")) if name in ("key_id", "provider", "deployment") else L[name]


def _binned(where: ColumnElement[bool]) -> Any:
    answered = and_(L.status < const(400), L.ttft_ms.is_not(None))
    dims = [dimension(d).label(d) for d in DIMS]
    hour, binned = utc_hour(L.created_at).label("hour"), case((answered, ttft_bin()), else_=None).label("bin")
    sums = [_total(row_value(s), s).label(s) for s in SUMS]
    return (
        select(hour, *dims, binned, int_sum(const(1)).label("n"), *sums)
        .where(where)
        .group_by(hour, *dims, binned)
        .subquery("binned")
    )


def _hourly(where: ColumnElement[bool]) -> Any:
    b = _binned(where).c
    keys = [b.hour, *(b[d] for d in DIMS)]
    bins = [
        int_sum(case((b.bin == const(k), b.n), else_=const(0))).label(c) for k, c in enumerate(TTFT_COLUMNS)
    ]
    return select(*keys, *(_total(b[s], s).label(s) for s in SUMS), *bins).group_by(*keys).subquery("hourly")


def _cubes() -> Any:
    """The six (cube, grain) pairs as a VALUES list: its columns are column1 and column2 in
    both databases (a UNION of six one-row SELECTs drew a parallel plan in PostgreSQL)."""
    pairs = ", ".join(f"({cube}, {grain})" for cube in (FULL, ROUTE, KEY) for grain in (HOUR, DAY))
    return (
        text(f"VALUES {pairs}")
        .columns(column("column1", Integer), column("column2", Integer))
        .subquery("cubes")
    )


def rollup_select(where: ColumnElement[bool]) -> Any:
    """The roll-up rows of the ledger rows matching `where` (`KEY_COLUMNS` then `VALUES`), in key order."""
    hourly, cubes = _hourly(where), _cubes()
    h, (cube, grain) = hourly.c, (cubes.c.column1, cubes.c.column2)
    keys = [
        cube,
        grain,
        case((grain == const(DAY), h.hour - h.hour % const(DAY)), else_=h.hour),
        case((cube == const(ROUTE), const("")), else_=h.key_id),
        *(case((cube == const(KEY), const("")), else_=h[d]) for d in ("model", "provider", "deployment")),
        h.status,
        h.refused,
    ]
    return (
        select(
            *(k.label(name) for k, name in zip(keys, KEY_COLUMNS, strict=True)),
            *(_total(h[v], v) for v in VALUES),
        )
        .select_from(hourly.join(cubes, true()))
        .group_by(*keys)
        .order_by(*keys)
    )


def _in_ids(dialect: str) -> ColumnElement[bool]:
    """`request_id` in the list bound as `ids`, one parameter whatever its length (an expanding
    IN would give every list length its own statement text, each prepared and cached apart):
    an array in PostgreSQL, a JSON array read with json_each in SQLite."""
    if dialect == "postgresql":
        return L.request_id == func.any(bindparam("ids", type_=ARRAY(String)))
    ids = func.json_each(bindparam("ids", type_=String)).table_valued("value")
    return L.request_id.in_(select(ids.c.value))


def _ids_parameter(dialect: str, ids: list[str]) -> Any:
    return ids if dialect == "postgresql" else json.dumps(ids)


@cache
def _upsert(dialect: str, scope: str) -> Any:
    """INSERT … SELECT … ON CONFLICT DO UPDATE adding every sum; `scope` "ids" or "span"."""
    where: ColumnElement[bool]
    if scope == "ids":
        where = _in_ids(dialect)
    else:
        where = and_(L.created_at >= bindparam("start"), L.created_at < bindparam("end"))
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(LEDGER_ROLLUP).from_select(list(KEY_COLUMNS + VALUES), rollup_select(where))
    return statement.on_conflict_do_update(
        index_elements=list(KEY_COLUMNS),
        set_={v: LEDGER_ROLLUP.c[v] + statement.excluded[v] for v in VALUES},
    )


def insert_rows(connection: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert ledger rows (duplicates by request id ignored) and roll up the new ones; one transaction.

    Returns how many rows were new.
    """
    if not rows:
        return 0
    dialect = connection.dialect.name
    new = [
        request_id for page in _pages(rows) for (request_id,) in connection.execute(_insert(dialect), page)
    ]
    if new:
        connection.execute(_upsert(dialect, "ids"), {"ids": _ids_parameter(dialect, new)})
    return len(new)


def _pages(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Pages of `INSERT_PAGE_ROWS` rows, then of 64, 32, … 2 and 1 as the rest needs: one INSERT
    text per page length, so eight in all whatever the batch sizes."""
    start, size = 0, INSERT_PAGE_ROWS
    while start < len(rows):
        while size > len(rows) - start:
            size //= 2
        yield rows[start : start + size]
        start += size


@cache
def _insert(dialect: str) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING request_id, for one page of rows (`_pages`)."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(LEDGER).on_conflict_do_nothing(index_elements=["request_id"]).returning(L.request_id)


def backfill(connection: Connection) -> None:
    """Roll up every row the ledger holds into an empty `ledger_rollup`, a day of rows per statement.

    On PostgreSQL the transaction gets more sort and hash memory than a request's default
    (which made a day's roll-up spill to disk).
    """
    first, last = connection.execute(select(func.min(L.created_at), func.max(L.created_at))).one()
    if first is None:
        return
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SET LOCAL work_mem = '{BACKFILL_WORK_MEM}'")
    statement = _upsert(connection.dialect.name, "span")
    start = first.replace(minute=0, second=0, microsecond=0)
    while start <= last:
        connection.execute(statement, {"start": start, "end": start + BACKFILL_SPAN})
        start += BACKFILL_SPAN
