"""Reading the ledger: spend by group and time bucket, per-key spend, and the rows themselves.

Every query is bounded by a time range on `created_at` (indexed, alone and behind each
grouping column) and aggregates in the database. Times are UTC; SQLite stores them as
ISO-like text, so buckets there come from `strftime`, in PostgreSQL from `date_trunc`.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.models import ApiKey, LedgerRow

GROUPS = {
    "provider": LedgerRow.provider,
    "model": LedgerRow.model,
    "deployment": LedgerRow.deployment,
    "key": LedgerRow.key_id,
}
DIMENSIONS = {"key_id": LedgerRow.key_id, "model": LedgerRow.model, "provider": LedgerRow.provider}
BUCKETS = ("hour", "day")
_SQLITE_BUCKET = {"hour": "%Y-%m-%dT%H:00:00Z", "day": "%Y-%m-%dT00:00:00Z"}


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    return None if value is None else utc(value).isoformat().replace("+00:00", "Z")


def time_bucket(engine: AsyncEngine, bucket: str) -> ColumnElement[Any]:
    if engine.dialect.name == "postgresql":
        return func.to_char(
            func.date_trunc(bucket, func.timezone("UTC", LedgerRow.created_at)), 'YYYY-MM-DD"T"HH24":00:00Z"'
        )
    return func.strftime(_SQLITE_BUCKET[bucket], LedgerRow.created_at)


def bounded(
    query: Select[Any], start: datetime, end: datetime, filters: dict[str, str] | None
) -> Select[Any]:
    """`query` limited to [start, end) and to rows equal to every filter (key_id, model, provider)."""
    query = query.where(LedgerRow.created_at >= utc(start), LedgerRow.created_at < utc(end))
    for name, value in (filters or {}).items():
        query = query.where(DIMENSIONS[name] == value)
    return query


async def spend(
    engine: AsyncEngine,
    group_by: str,
    bucket: str,
    start: datetime,
    end: datetime,
    filters: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    group = GROUPS[group_by]
    slot = time_bucket(engine, bucket).label("bucket")
    query = (
        bounded(
            select(
                group.label("group"),
                slot,
                func.count().label("requests"),
                func.coalesce(func.sum(LedgerRow.input_tokens), 0),
                func.coalesce(func.sum(LedgerRow.output_tokens), 0),
                func.coalesce(func.sum(LedgerRow.cost_usd), 0.0),
            ),
            start,
            end,
            filters,
        )
        .group_by(group, slot)
        .order_by(slot, group.asc().nulls_first())
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
        names = await _key_names(connection, {r[0] for r in rows if r[0]}) if group_by == "key" else {}
    return [
        {
            "group": names.get(g, g) if group_by == "key" else g,
            "bucket": b,
            "requests": int(n),
            "input_tokens": int(i),
            "output_tokens": int(o),
            "cost_usd": round(float(c), 10),
        }
        for g, b, n, i, o, c in rows
    ]


async def _key_names(connection: Any, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    result = await connection.execute(select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_(ids)))
    return {key_id: name for key_id, name in result.all()}


async def key_spend(engine: AsyncEngine, key_id: str, since: datetime) -> float:
    query = select(func.coalesce(func.sum(LedgerRow.cost_usd), 0.0)).where(
        LedgerRow.key_id == key_id, LedgerRow.created_at >= utc(since)
    )
    async with engine.connect() as connection:
        return float((await connection.execute(query)).scalar_one())


FILTERS = ("key_id", "model", "provider", "deployment", "status")


def _cursor(row: Any) -> str:
    raw = f"{iso(row.created_at)}|{row.request_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _after(cursor: str) -> ColumnElement[bool]:
    stamp, _, request_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
    when = utc(datetime.fromisoformat(stamp.replace("Z", "+00:00")))
    return or_(
        LedgerRow.created_at < when, and_(LedgerRow.created_at == when, LedgerRow.request_id < request_id)
    )


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
    if start is not None:
        query = query.where(LedgerRow.created_at >= utc(start))
    if end is not None:
        query = query.where(LedgerRow.created_at < utc(end))
    if cursor:
        query = query.where(_after(cursor))
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
