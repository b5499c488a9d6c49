"""Reading a time range from the roll-ups where they cover it and from the ledger where they do not.

A range [start, end) is cut into: whole UTC days (daily roll-ups), whole hours at either
side of them (hourly roll-ups), and the parts of an hour at either end (raw ledger rows,
at most two pieces, each inside one hour). `collect` runs one grouped query over the
roll-ups and one per raw piece, in the same shape, and adds the answers up, so reports
are written once and a sum over roll-ups equals the sum over the rows behind them.

A report describes what it wants with the names of `gateway.db.rollup`: dimensions to
group by (plus an optional time slot, `hour` or `day`), sums, each optionally under a
condition on dimensions (`status`, `refused`, …), and optionally the TTFT histogram
of answered requests.
Conditions and filters only ever look at dimensions, which every roll-up row keeps, so
they select whole roll-up rows and the answer is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.db.models import LEDGER_ROLLUP, LedgerRow
from gateway.db.rollup import (
    CUBE_DIMS,
    DAY,
    FULL,
    HOUR,
    KEY,
    ROUTE,
    TTFT_BINS,
    TTFT_COLUMNS,
    hour_of,
    hour_start,
)
from gateway.db.rollup_sql import const, dimension, refused, row_value, ttft_bin

FAR_HOURS = 2**31 - 1  # an end that never comes, for open ranges
R = LEDGER_ROLLUP.c
L = LedgerRow
Condition = Callable[["Source"], ColumnElement[bool]]
Measure = Callable[["Source"], ColumnElement[Any]]


@dataclass(frozen=True)
class Pieces:
    """A range cut up: raw ledger pieces (start, end, hour) and roll-up pieces (grain, first hour, end hour)."""

    raw: list[tuple[datetime, datetime, int]] = field(default_factory=list)
    rolled: list[tuple[int, int, int]] = field(default_factory=list)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def pieces(start: datetime, end: datetime | None, days: bool = True) -> Pieces:
    """Cut [start, end) (end None: open); `days=False` keeps whole days as hours (hourly slots)."""
    out = Pieces()
    a = hour_of(start)
    first = a if hour_start(a) == start else a + 1
    b = FAR_HOURS if end is None else hour_of(end)
    if end is not None and a == b:
        out.raw.append((start, end, a))
        return out
    if first != a:
        out.raw.append((start, hour_start(first), a))
    if end is not None and hour_start(b) != end:
        out.raw.append((hour_start(b), end, b))
    day0, day1 = -(-first // DAY) * DAY, b // DAY * DAY
    spans = (
        [(HOUR, first, day0), (DAY, day0, day1), (HOUR, day1, b)]
        if days and day0 < day1
        else [(HOUR, first, b)]
    )
    out.rolled.extend(p for p in spans if p[1] < p[2])
    return out


class Source:
    """Column expressions with the same meaning over roll-up rows and over raw ledger rows."""

    rolled: bool

    def dim(self, name: str) -> ColumnElement[Any]:
        raise NotImplementedError

    def value(self, name: str) -> ColumnElement[Any]:
        """The sum `name` of one row of this source (a raw row contributes its own value)."""
        raise NotImplementedError

    @property
    def refused(self) -> ColumnElement[bool]:
        raise NotImplementedError

    @property
    def ok(self) -> ColumnElement[bool]:
        return self.dim("status") < 400

    @property
    def error(self) -> ColumnElement[bool]:
        return and_(self.dim("status") >= 400, ~self.refused)

    def total(self, name: str, when: ColumnElement[bool] | None = None) -> ColumnElement[Any]:
        value = self.value(name)
        return func.coalesce(func.sum(value if when is None else case((when, value), else_=0)), 0)


class Rolled(Source):
    rolled = True

    def dim(self, name: str) -> ColumnElement[Any]:
        return R[name]

    def value(self, name: str) -> ColumnElement[Any]:
        return R[name]

    @property
    def refused(self) -> ColumnElement[bool]:
        return R.refused == true()


class Raw(Source):
    """Raw ledger rows, in the very expressions the roll-ups were summed from (`gateway.db.rollup_sql`)."""

    rolled = False

    def dim(self, name: str) -> ColumnElement[Any]:
        return dimension(name)

    def value(self, name: str) -> ColumnElement[Any]:
        return row_value(name)

    @property
    def refused(self) -> ColumnElement[bool]:
        return refused()


@dataclass(slots=True)
class Sums:
    values: list[Any]
    ttft: list[int]


def _cube(dims: set[str]) -> int:
    """The smallest cube with every dimension needed: routes are usually fewer than keys."""
    for cube in (ROUTE, KEY):
        if dims <= set(CUBE_DIMS[cube]):
            return cube
    return FULL


@dataclass
class Query:
    """What a report wants: groups, sums, an optional condition, and optionally a TTFT histogram."""

    group: Sequence[str]
    measures: Sequence[Measure]
    where: Condition | None = None
    slot: str | None = None  # "hour" or "day": the slot's first hour is the first group value
    ttft: bool = False  # also the TTFT histogram (of answered requests, see gateway.db.rollup)
    dims: set[str] = field(default_factory=set)  # dimensions named in `where` or measures


def _filtered(source: Source, query: Query, filters: Mapping[str, str]) -> list[ColumnElement[bool]]:
    conditions = [source.dim(name) == value for name, value in filters.items()]
    if query.where is not None:
        conditions.append(query.where(source))
    return conditions


def _rolled_select(query: Query, filters: Mapping[str, str], spans: list[tuple[int, int, int]]) -> Any:
    source = Rolled()
    cube = _cube(set(query.group) | set(filters) | query.dims)
    slot = [R.hour - R.hour % const(DAY) if query.slot == "day" else R.hour] if query.slot else []
    groups = [*slot, *(source.dim(g) for g in query.group)]
    histogram = [func.coalesce(func.sum(R[c]), 0) for c in TTFT_COLUMNS] if query.ttft else []
    covered = or_(*(and_(R.grain == g, R.hour >= h0, R.hour < h1) for g, h0, h1 in spans))
    return (
        select(*groups, *(m(source) for m in query.measures), *histogram)
        .where(R.cube == cube, covered, *_filtered(source, query, filters))
        .group_by(*groups)
    )


def _raw_select(query: Query, filters: Mapping[str, str], piece: tuple[datetime, datetime, int]) -> Any:
    source = Raw()
    start, end, hour = piece
    slot = [const(hour - hour % DAY if query.slot == "day" else hour)] if query.slot else []
    groups = [source.dim(g) for g in query.group]
    binned = []
    if query.ttft:
        binned = [case((and_(source.ok, L.ttft_ms.is_not(None)), ttft_bin()), else_=None)]
    return (
        select(*slot, *groups, *(m(source) for m in query.measures), *binned, func.count())
        .where(L.created_at >= start, L.created_at < end, *_filtered(source, query, filters))
        .group_by(*groups, *binned)
    )


async def _run(connection: AsyncConnection, statement: Any) -> list[Any]:
    return list((await connection.execute(statement)).all())


async def collect(
    engine: AsyncEngine, start: datetime, end: datetime | None, filters: Mapping[str, str], query: Query
) -> dict[tuple[Any, ...], Sums]:
    """The query's sums per group over [start, end) (end None: open), roll-ups and raw edges added up."""
    cut = pieces(_utc(start), None if end is None else _utc(end), days=query.slot != "hour")
    width = len(query.group) + (1 if query.slot else 0)
    n = len(query.measures)
    out: dict[tuple[Any, ...], Sums] = {}

    def sums(key: tuple[Any, ...]) -> Sums:
        found = out.get(key)
        if found is None:
            found = out[key] = Sums([0] * n, [0] * TTFT_BINS)
        return found

    async with engine.connect() as connection:
        if cut.rolled:
            for row in await _run(connection, _rolled_select(query, filters, cut.rolled)):
                into = sums(tuple(row[:width]))
                into.values = [a + b for a, b in zip(into.values, row[width : width + n], strict=True)]
                if query.ttft:
                    into.ttft = [a + int(b) for a, b in zip(into.ttft, row[width + n :], strict=True)]
        for piece in cut.raw:
            for row in await _run(connection, _raw_select(query, filters, piece)):
                into = sums(tuple(row[:width]))
                into.values = [a + b for a, b in zip(into.values, row[width : width + n], strict=True)]
                if query.ttft and row[width + n] is not None:
                    into.ttft[int(row[width + n])] += int(row[-1])
    return out


def total(name: str) -> Measure:
    """The measure "sum of `name`"."""
    return lambda source: source.total(name)


def slot_name(hour: int) -> str:
    """A slot's first hour as the reports name it: `2025-03-01T10:00:00Z`."""
    return hour_start(int(hour)).strftime("%Y-%m-%dT%H:00:00Z")


def blank(value: str) -> str | None:
    """Roll-ups store a missing key, provider or deployment as ''; reports say None."""
    return value or None
