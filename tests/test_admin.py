"""Admin API reports over a seeded ledger: spend by group and bucket, paging and filters, access."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.db import make_engine, upgrade
from gateway.keys import KeySpec, KeyStore
from tests.harness import config_for, database_url
from tests.ledger_seed import write

ADMIN = "admin-secret"
AUTH = {"authorization": f"Bearer {ADMIN}"}
T0 = datetime(2025, 3, 1, 10, 15, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    url, drop = database_url(request.param, tmp_path)
    yield url
    drop()


def _row(
    i: int, when: datetime, key_id: str | None, model: str, provider: str, cost: float
) -> dict[str, Any]:
    return {
        "request_id": f"gen-{i:04d}", "created_at": when, "key_id": key_id, "kind": "chat", "model": model,
        "deployment": f"{provider}/{model}-up", "provider": provider, "attempts": 1, "input_tokens": 10,
        "output_tokens": 20, "usage_estimated": False, "cost_usd": cost, "latency_ms": 5.0, "ttft_ms": 2.0,
        "status": 200 if i % 5 else 502, "finish_reason": "stop", "streamed": bool(i % 2), "cancelled": False,
        "policy": "price", "error": None, "attempt_log": None,
    }  # fmt: skip


def seed(db: str) -> str:
    """Four rows across two hours and two days, plus 25 for paging; returns the key's id."""

    async def go() -> str:
        await asyncio.to_thread(upgrade, db)
        engine = make_engine(db)
        key, _ = await KeyStore(engine).create(KeySpec("team-a"))
        data = [
            _row(1, T0, key.id, "m1", "p1", 0.25),
            _row(2, T0 + timedelta(minutes=30), key.id, "m1", "p2", 0.5),
            _row(3, T0 + timedelta(minutes=50), None, "m2", "p1", 1.0),
            _row(4, T0 + timedelta(days=1), key.id, "m2", "p2", 2.0),
        ]
        data += [_row(100 + i, T0 + timedelta(days=10, seconds=i), None, "m3", "p3", 0.01) for i in range(25)]
        async with engine.begin() as connection:
            await connection.run_sync(write, data)
        await engine.dispose()
        return key.id

    return asyncio.run(go())


def start(gateway: Any, fake: Any, db: str, tmp_path: Any) -> httpx.Client:
    gw = gateway(
        config_for({"a": fake().url}), database_url=db, admin_key=ADMIN, ledger_spool_dir=tmp_path / "s"
    )
    return httpx.Client(base_url=gw.url, headers=AUTH, timeout=20)


def test_spend_by_group_and_bucket(db, fake, gateway, tmp_path):
    seed(db)
    admin = start(gateway, fake, db, tmp_path)
    window = {"start": "2025-03-01T00:00:00Z", "end": "2025-03-03T00:00:00Z"}
    hourly = admin.get("/admin/api/spend", params={"group_by": "provider", "bucket": "hour", **window}).json()
    assert hourly["data"] == [
        {"group": "p1", "bucket": "2025-03-01T10:00:00Z", "requests": 1, "input_tokens": 10, "output_tokens": 20, "cost_usd": 0.25},
        {"group": "p2", "bucket": "2025-03-01T10:00:00Z", "requests": 1, "input_tokens": 10, "output_tokens": 20, "cost_usd": 0.5},
        {"group": "p1", "bucket": "2025-03-01T11:00:00Z", "requests": 1, "input_tokens": 10, "output_tokens": 20, "cost_usd": 1.0},
        {"group": "p2", "bucket": "2025-03-02T10:00:00Z", "requests": 1, "input_tokens": 10, "output_tokens": 20, "cost_usd": 2.0},
    ]  # fmt: skip
    by_key = admin.get("/admin/api/spend", params={"group_by": "key", "bucket": "day", **window}).json()[
        "data"
    ]
    assert [(r["group"], r["bucket"], r["requests"], r["cost_usd"]) for r in by_key] == [
        (None, "2025-03-01T00:00:00Z", 1, 1.0),
        ("team-a", "2025-03-01T00:00:00Z", 2, 0.75),
        ("team-a", "2025-03-02T00:00:00Z", 1, 2.0),
    ]
    by_model = admin.get("/admin/api/spend", params={"group_by": "model", "bucket": "day", **window}).json()[
        "data"
    ]
    assert [(r["group"], r["bucket"][:10], r["requests"]) for r in by_model] == [
        ("m1", "2025-03-01", 2),
        ("m2", "2025-03-01", 1),
        ("m2", "2025-03-02", 1),
    ]
    by_deployment = admin.get("/admin/api/spend", params={"group_by": "deployment", **window}).json()["data"]
    assert {r["group"] for r in by_deployment} == {"p1/m1-up", "p2/m1-up", "p1/m2-up", "p2/m2-up"}
    narrow = {"start": "2025-03-01T10:40:00Z", "end": "2025-03-01T11:00:00Z"}
    assert [
        r["cost_usd"]
        for r in admin.get("/admin/api/spend", params={"group_by": "model", **narrow}).json()["data"]
    ] == [0.5]  # 10:45 is inside [10:40, 11:00); 11:05 is not


def test_spend_rejects_bad_parameters_and_non_admins(db, fake, gateway, tmp_path):
    admin = start(gateway, fake, db, tmp_path)
    for params in ({"group_by": "colour"}, {"bucket": "minute"}, {"start": "yesterday"},
                   {"start": "2025-03-02T00:00:00Z", "end": "2025-03-01T00:00:00Z"}):  # fmt: skip
        assert admin.get("/admin/api/spend", params=params).status_code == 400, params
    key = admin.post("/admin/api/keys", json={"name": "app"}).json()["key"]
    for path in ("/admin/api/spend", "/admin/api/ledger", "/admin/api/keys"):
        assert admin.get(path, headers={"authorization": f"Bearer {key}"}).status_code == 403
        assert admin.get(path, headers={"authorization": "Bearer nope"}).status_code == 401


def test_ledger_is_paged_newest_first_and_filterable(db, fake, gateway, tmp_path):
    key_id = seed(db)
    admin = start(gateway, fake, db, tmp_path)
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"model": "m3", "limit": 10, **({"cursor": cursor} if cursor else {})}
        page = admin.get("/admin/api/ledger", params=params).json()
        seen += [r["request_id"] for r in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"gen-{100 + i:04d}" for i in reversed(range(25))]
    mine = admin.get("/admin/api/ledger", params={"key": key_id}).json()["data"]
    assert [r["request_id"] for r in mine] == ["gen-0004", "gen-0002", "gen-0001"]
    failed = admin.get("/admin/api/ledger", params={"status": 502}).json()["data"]
    assert {r["request_id"] for r in failed} == {
        f"gen-{100 + i:04d}" for i in range(25) if (100 + i) % 5 == 0
    }
    window = admin.get(
        "/admin/api/ledger", params={"start": "2025-03-02T00:00:00Z", "end": "2025-03-03T00:00:00Z"}
    )
    assert [r["request_id"] for r in window.json()["data"]] == ["gen-0004"]
    assert admin.get("/admin/api/ledger", params={"cursor": "%%%"}).status_code == 400


def test_pages_cut_through_rows_of_one_time_and_keep_to_the_range(db, fake, gateway, tmp_path):
    """Seven rows share a time and pages of three cut through them; past a cursor the range's
    start and end still hold (the rows at the end and a second before the start stay out)."""
    seed(db)
    tie = T0 + timedelta(days=20)
    extra = [_row(200 + i, tie, None, "m4", "p4", 0.01) for i in range(7)] + [
        _row(210, tie + timedelta(seconds=1), None, "m4", "p4", 0.01),  # at the end: out
        _row(211, tie - timedelta(seconds=1), None, "m4", "p4", 0.01),  # at the start: in
        _row(212, tie - timedelta(seconds=2), None, "m4", "p4", 0.01),  # before it: out
    ]

    async def add() -> None:
        engine = make_engine(db)
        async with engine.begin() as connection:
            await connection.run_sync(write, extra)
        await engine.dispose()

    asyncio.run(add())
    admin = start(gateway, fake, db, tmp_path)
    span = {
        "start": (tie - timedelta(seconds=1)).isoformat(),
        "end": (tie + timedelta(seconds=1)).isoformat(),
    }
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {**span, "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = admin.get("/admin/api/ledger", params=params).json()
        seen += [r["request_id"] for r in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"gen-{200 + i:04d}" for i in reversed(range(7))] + ["gen-0211"]
