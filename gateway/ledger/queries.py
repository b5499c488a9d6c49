"""Reading the ledger: spend by group and time bucket, per-key spend, and the rows themselves.

Sums come from the roll-ups for whole hours and from the ledger for the part hours at
either end of the range (`gateway.ledger.rollups`); pages of rows come from the ledger,
by a time range on `created_at` (indexed, alone and behind each filter column). Times
are UTC.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.models import ApiKey, LedgerRow
from gateway.ledger.rollups import Query, blank, collect, slot_name, total

GROUPS = {"provider": "provider", "model": "model", "deployment": "deployment", "key": "key_id"}
DIMENSIONS = ("key_id", "model", "provider")  # the filters every report takes
BUCKETS = ("hour", "day")
_SPENT = ("requests", "input_tokens", "output_tokens", "cost_usd")


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    return None if value is None else utc(value).isoformat().replace("+00:00", "Z")


async def spend(
    engine: AsyncEngine,
    group_by: str,
    bucket: str,
    start: datetime,
    end: datetime,
    filters: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    group = GROUPS[group_by]
    query = Query(group=(group,), slot=bucket, measures=[total(name) for name in _SPENT])
    found = await collect(engine, utc(start), utc(end), filters or {}, query)
    rows = sorted(
        ((hour, blank(g), *sums.values) for (hour, g), sums in found.items()),
        key=lambda r: (r[0], r[1] is not None, r[1] or ""),
    )
    names: dict[str, str] = {}
    if group_by == "key":
        async with engine.connect() as connection:
            names = await _key_names(connection, {r[1] for r in rows if r[1]})
    return [
        {
            "group": names.get(g, g) if g is not None else None,
            "bucket": slot_name(hour),
            "requests": int(n),
            "input_tokens": int(i),
            "output_tokens": int(o),
            "cost_usd": round(float(c), 10),
        }
        for hour, g, n, i, o, c in rows
    ]


async def _key_names(connection: Any, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    result = await connection.execute(select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_(ids)))
    return {key_id: name for key_id, name in result.all()}


_KEY_SPEND = Query(group=(), measures=[lambda s: s.total("cost_usd")])


async def key_spend(engine: AsyncEngine, key_id: str, since: datetime) -> float:
    """What a key has spent since `since` (and up to any time): its budget's use."""
    found = await collect(engine, utc(since), None, {"key_id": key_id}, _KEY_SPEND)
    return float(found[()].values[0]) if () in found else 0.0


FILTERS = ("key_id", "model", "provider", "deployment", "status")


def _cursor(row: Any) -> str:
    raw = f"{iso(row.created_at)}|{row.request_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode(cursor: str) -> tuple[datetime, str]:
    stamp, _, request_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
    return utc(datetime.fromisoformat(stamp.replace("Z", "+00:00"))), request_id


def _bounds(start: datetime | None, end: datetime | None, cursor: str | None) -> list[ColumnElement[bool]]:
    """The time range, narrowed to the rows after the cursor's (time, id) in newest-first order.

    Past the cursor, its time is the only upper bound on `created_at`: with the range's end
    beside it, SQLite bounded its index scan by the end and skipped every row already sent,
    so each page of a long export cost more than the last (3 s a page, a month into 10M rows).
    """
    out = [] if start is None else [LedgerRow.created_at >= utc(start)]
    if cursor:
        when, request_id = _decode(cursor)
        if end is None or when < utc(end):
            end = None
            out.append(LedgerRow.created_at <= when)
        out.append(or_(LedgerRow.created_at < when, LedgerRow.request_id < request_id))
    if end is not None:
        out.append(LedgerRow.created_at < utc(end))
    return out


async def ledger_page(
    engine: AsyncEngine,
    filters: dict[str, Any],
    start: datetime | None,
    end: datetime | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """Newest first, keyset-paged: `next_cursor` continues after the last row of this page."""
    query = select(LedgerRow)
    for name, value in filters.items():
        query = query.where(getattr(LedgerRow, name) == value)
    query = query.where(*_bounds(start, end, cursor))
    query = query.order_by(LedgerRow.created_at.desc(), LedgerRow.request_id.desc()).limit(limit + 1)
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    page = rows[:limit]
    data = [row_dict(r) for r in page]
    return {"data": data, "next_cursor": _cursor(page[-1]) if len(rows) > limit else None}


def row_dict(row: Any) -> dict[str, Any]:
    return {c.name: getattr(row, c.name) for c in LedgerRow.__table__.columns} | {
        "created_at": iso(row.created_at)
    }
