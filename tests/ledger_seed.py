"""A small, hand-computed ledger for the admin reports and the dashboard, on SQLite or PostgreSQL.

Model `m1` has two deployments: `p1/m1-up` ($1/$2 per Mtok) and `p2/m1-up` ($3/$6).
`EXPECTED` holds the figures each report must give for DAY1 and DAY2, worked out by hand.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.db import make_engine, upgrade
from gateway.db.rollup_sql import insert_rows
from gateway.keys import KeySpec, KeyStore

T0 = datetime(2025, 3, 1, 10, 15, tzinfo=UTC)
DAY1 = {"start": "2025-03-01T00:00:00Z", "end": "2025-03-02T00:00:00Z"}
BOTH_DAYS = {"start": "2025-03-01T00:00:00Z", "end": "2025-03-03T00:00:00Z"}

CONFIG = """\
providers:
  - name: p1
    base_url: {url}
  - name: p2
    base_url: {url}
models:
  - name: m1
    deployments:
      - provider: p1
        model: m1-up
        input_price_per_mtok: 1.0
        output_price_per_mtok: 2.0
      - provider: p2
        model: m1-up
        input_price_per_mtok: 3.0
        output_price_per_mtok: 6.0
"""

FAILOVER = [
    {"deployment": "p1/m1-up", "provider": "p1", "outcome": "server_error", "status": 500, "start_ms": 0.0,
     "elapsed_ms": 12.5, "message": "upstream said 500"},
    {"deployment": "p2/m1-up", "provider": "p2", "outcome": "ok", "status": 200, "start_ms": 13.0,
     "elapsed_ms": 517.0},
]  # fmt: skip


def row(
    request_id: str, when: datetime, key_id: str | None, deployment: str | None, **values: Any
) -> dict[str, Any]:
    base = {
        "request_id": request_id, "created_at": when, "key_id": key_id, "kind": "chat", "model": "m1",
        "deployment": deployment, "provider": deployment.partition("/")[0] if deployment else None,
        "attempts": 1 if deployment else 0, "input_tokens": 0, "output_tokens": 0, "usage_estimated": False,
        "cost_usd": 0.0, "latency_ms": 0.0, "ttft_ms": None, "status": 200, "finish_reason": "stop",
        "streamed": False, "cancelled": False, "policy": "balanced", "error": None, "attempt_log": None, "retrieval_ms": None, "rag_chunks": None,
    }  # fmt: skip
    return base | values


def rows(key_a: str, key_b: str, t: datetime = T0) -> list[dict[str, Any]]:
    return [
        row("gen-1", t, key_a, "p1/m1-up", input_tokens=1000, output_tokens=500, cost_usd=0.002,
            ttft_ms=10.0, latency_ms=110.0, streamed=True, retrieval_ms=15.0,
            rag_chunks=[{"id": "doc-1#0", "score": 0.9}]),
        row("gen-2", t + timedelta(minutes=10), key_a, "p2/m1-up", input_tokens=2000, output_tokens=1000,
            cost_usd=0.012, ttft_ms=30.0, latency_ms=530.0, attempts=2, attempt_log=FAILOVER),
        row("gen-3", t + timedelta(minutes=20), None, "p1/m1-up", input_tokens=100, status=502,
            finish_reason=None, error="upstream said 502", latency_ms=40.0),
        row("gen-4", t + timedelta(minutes=30), key_a, None, status=429, finish_reason=None),
        row("gen-5", t + timedelta(minutes=40), key_a, None, status=402, finish_reason=None),
        row("gen-6", t + timedelta(days=1), key_b, "p1/m1-up", input_tokens=1000, output_tokens=1000,
            cost_usd=0.003, ttft_ms=20.0, latency_ms=220.0),
    ]  # fmt: skip


def write(connection: Any, data: list[dict[str, Any]]) -> None:
    """Ledger rows and their roll-ups, the way the ledger writer books them."""
    insert_rows(connection, data)


def seed(url: str, extra: list[dict[str, Any]] | None = None, t0: datetime = T0) -> tuple[str, str]:
    """Migrate, create keys `team-a` (budget $1/day) and `team-b`, insert the rows from `t0` on; return the key ids."""

    async def go() -> tuple[str, str]:
        await asyncio.to_thread(upgrade, url)
        engine = make_engine(url)
        store = KeyStore(engine)
        a, _ = await store.create(KeySpec("team-a", budget_usd=1.0, budget_period="day"))
        b, _ = await store.create(KeySpec("team-b"))
        async with engine.begin() as connection:
            await connection.run_sync(write, rows(a.id, b.id, t0) + (extra or []))
        await engine.dispose()
        return a.id, b.id

    return asyncio.run(go())


def insert(url: str, data: list[dict[str, Any]]) -> None:
    async def go() -> None:
        engine = make_engine(url)
        async with engine.begin() as connection:
            await connection.run_sync(write, data)
        await engine.dispose()

    asyncio.run(go())
