"""Roll-ups: reports read from them equal a scan of the rows, replays count once, the backfill agrees.

A random ledger (keys, models, providers, statuses, refusals, TTFTs from 1 ms to a
minute) is booked the way the ledger writer books it; then every report is asked over
ranges that start and end on and off the hour, inside one hour, across days, with
filters, over HTTP on SQLite and on PostgreSQL, and compared with the same figures
worked out in Python from the rows: sums and counts exactly (money to 1e-9 $), TTFT
percentiles within the histogram's stated bound.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import math
import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from gateway.db import make_engine, upgrade
from gateway.db.models import LEDGER_ROLLUP
from gateway.db.rollup import KEY_COLUMNS, TTFT_EDGES, TTFT_ERROR, VALUES
from gateway.db.rollup_sql import insert_rows
from gateway.keys import KeySpec, KeyStore
from gateway.ledger import LedgerWriter, key_spend
from gateway.ledger.aggregates import cache_savings, model_tokens
from gateway.ledger.writer import spool_tag
from tests.harness import database_url
from tests.ledger_seed import CONFIG, row
from tests.rollup_oracle import Rollup

ADMIN = "admin-secret"
AUTH = {"authorization": f"Bearer {ADMIN}"}
T0 = datetime(2025, 3, 1, 22, 10, 7, tzinfo=UTC)
SPAN_S = 3 * 86400
DEPLOYMENTS = ["p1/m1-up", "p2/m1-up", "p1/m2-up", None]


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    url, drop = database_url(request.param, tmp_path)
    yield url
    drop()


def random_rows(keys: list[str | None], n: int = 1500, seed: int = 11) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        when = T0 + timedelta(seconds=rnd.uniform(0, SPAN_S))
        deployment = rnd.choice(DEPLOYMENTS)
        status = rnd.choice([200] * 8 + [400, 402, 403, 429, 500, 502])
        refused = deployment is None or (status in (402, 403, 429) and rnd.random() < 0.7)
        tout = rnd.choice([0, rnd.randint(1, 900)])
        cache = rnd.choice([None, "miss", "hit", "semantic-hit"])
        out.append(
            row(
                f"r-{i:05d}", when, rnd.choice(keys), None if refused else deployment,
                model=rnd.choice(["m1", "m2"]), attempts=0 if refused else rnd.randint(1, 3), status=status,
                input_tokens=rnd.randint(0, 5000), output_tokens=tout, cost_usd=rnd.uniform(0, 0.02),
                latency_ms=rnd.uniform(1, 90_000), ttft_ms=None if rnd.random() < 0.2 else math.exp(rnd.uniform(0, 11)),
                streamed=rnd.random() < 0.5, cancelled=rnd.random() < 0.1,
                retrieval_ms=rnd.uniform(1, 50) if rnd.random() < 0.3 else None,
                cache=cache, cost_saved_usd=rnd.uniform(0, 0.01) if cache and cache != "miss" else None,
            )
        )  # fmt: skip
    return out


def book(url: str, data: list[dict[str, Any]]) -> list[str]:
    """Keys `a` and `b`, then `data` (its key ids 0 and 1 replaced by theirs) written like the writer does."""

    async def go() -> list[str]:
        await asyncio.to_thread(upgrade, url)
        engine = make_engine(url)
        store = KeyStore(engine)
        ids = [(await store.create(KeySpec(name)))[0].id for name in ("a", "b")]
        for r in data:
            r["key_id"] = ids[r["key_id"]] if isinstance(r["key_id"], int) else r["key_id"]
        async with engine.begin() as connection:
            for i in range(0, len(data), 400):  # the writer's batches
                await connection.run_sync(insert_rows, data[i : i + 400])
        await engine.dispose()
        return ids

    return asyncio.run(go())


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


RANGES = [
    (at("2025-03-01T00:00:00"), at("2025-03-05T00:00:00")),  # whole days, all of it
    (at("2025-03-01T22:17:31"), at("2025-03-04T05:43:12")),  # part hours, hours, days
    (at("2025-03-02T10:05:00"), at("2025-03-02T10:50:00")),  # inside one hour
    (at("2025-03-02T10:30:00"), at("2025-03-02T11:15:00")),  # two part hours, no whole one
    (at("2025-03-02T10:00:00"), at("2025-03-02T13:00:00")),  # whole hours only
    (at("2025-03-02T00:00:00"), at("2025-03-03T00:00:00")),  # one whole day
    (at("2025-03-02T23:59:59"), at("2025-03-04T00:00:01")),  # a day and two seconds
]


def params(start: datetime, end: datetime, filters: dict[str, str]) -> dict[str, str]:
    return {"start": start.isoformat(), "end": end.isoformat(), **filters}


def chosen(data: list[dict[str, Any]], start: datetime, end: datetime, filters: dict[str, str]) -> list[Any]:
    wanted = {("key_id" if k == "key" else k): v for k, v in filters.items()}
    return [r for r in data if start <= r["created_at"] < end and all(r[k] == v for k, v in wanted.items())]


def is_refused(r: dict[str, Any]) -> bool:
    return r["status"] in (402, 403, 429) and r["attempts"] == 0


def expected_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    refused = sum(map(is_refused, rows))
    errors = sum(1 for r in rows if r["status"] >= 400 and not is_refused(r))
    served = len(rows) - refused
    return {
        "requests": len(rows), "refused": refused, "errors": errors,
        "error_rate": round(errors / served, 6) if served else None,
        "input_tokens": sum(r["input_tokens"] for r in rows), "output_tokens": sum(r["output_tokens"] for r in rows),
        "cost_usd": pytest.approx(sum(r["cost_usd"] for r in rows), abs=1e-9),
        "streamed": sum(r["streamed"] for r in rows), "cancelled": sum(r["cancelled"] for r in rows),
        "rag_requests": sum(r["retrieval_ms"] is not None for r in rows),
    }  # fmt: skip


def slot(when: datetime, bucket: str) -> str:
    return when.strftime("%Y-%m-%dT00:00:00Z" if bucket == "day" else "%Y-%m-%dT%H:00:00Z")


def expected_spend(rows: list[dict[str, Any]], group: str, bucket: str, names: dict[str, str]) -> list[Any]:
    sums: dict[tuple[Any, str], list[Any]] = defaultdict(lambda: [0, 0, 0, 0.0])
    for r in rows:
        g = r["key_id" if group == "key" else group]
        s = sums[(g, slot(r["created_at"], bucket))]
        s[0], s[1], s[2], s[3] = (
            s[0] + 1,
            s[1] + r["input_tokens"],
            s[2] + r["output_tokens"],
            s[3] + r["cost_usd"],
        )
    ordered = sorted(sums.items(), key=lambda kv: (kv[0][1], kv[0][0] is not None, kv[0][0] or ""))
    # ordered by slot, then group (keys by id, shown by name), no group first
    return [(names.get(g, g), b, n, i, o, pytest.approx(c, abs=1e-9)) for (g, b), (n, i, o, c) in ordered]


def exact_percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def check_deployments(data: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    got = {d["deployment"]: d for d in data if d["requests"]}
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["deployment"]:
            per[r["deployment"]].append(r)
    assert set(got) == set(per)
    for deployment, rs in per.items():
        d = got[deployment]
        errors = sum(1 for r in rs if r["status"] >= 400 and not is_refused(r))
        assert (d["requests"], d["errors"]) == (len(rs), errors)
        ttfts = [r["ttft_ms"] for r in rs if r["status"] < 400 and r["ttft_ms"] is not None]
        for q, name in ((0.5, "ttft_p50_ms"), (0.95, "ttft_p95_ms")):
            if not ttfts:
                assert d[name] is None
            else:
                exact = exact_percentile(ttfts, q)
                assert abs(d[name] - exact) <= TTFT_ERROR * exact + 0.001, (deployment, name, d[name], exact)


def test_reports_over_rollups_equal_a_scan_of_the_rows(db, fake, gateway, tmp_path):
    data = random_rows([0, 1, None])
    a, b = book(db, data)
    names = {a: "a", b: "b"}
    gw = gateway(
        CONFIG.format(url=fake().url), database_url=db, admin_key=ADMIN, ledger_spool_dir=tmp_path / "s"
    )
    admin = httpx.Client(base_url=gw.url, headers=AUTH, timeout=30)
    for start, end in RANGES:
        for filters in ({}, {"key": a}, {"model": "m2"}, {"provider": "p1", "key": b}):
            rows = chosen(data, start, end, filters)
            where = params(start, end, filters)
            assert admin.get("/admin/api/summary", params=where).json()["data"] == expected_summary(rows)
            for group, bucket in (("provider", "hour"), ("key", "day"), ("deployment", "day")):
                spent = admin.get("/admin/api/spend", params={**where, "group_by": group, "bucket": bucket})
                got = [tuple(r.values()) for r in spent.json()["data"]]
                assert got == expected_spend(rows, group, bucket, names), (start, end, filters, group)
            usage = {
                k["id"]: k["usage"] for k in admin.get("/admin/api/key-usage", params=where).json()["data"]
            }
            for key_id in (a, b, None):
                mine = [r for r in rows if r["key_id"] == key_id]
                refused = {
                    str(s): sum(1 for r in mine if is_refused(r) and r["status"] == s)
                    for s in (402, 403, 429)
                }
                if mine:
                    assert usage[key_id]["requests"] == len(mine) and usage[key_id]["refused"] == refused
                    assert usage[key_id]["cost_usd"] == pytest.approx(
                        sum(r["cost_usd"] for r in mine), abs=1e-9
                    )
            check_deployments(admin.get("/admin/api/deployments", params=where).json()["data"], rows)


async def test_budget_spend_savings_tokens_and_cache_hits_over_rollups(db):
    data = random_rows([0, 1, None], n=600, seed=5)
    a, _ = await asyncio.to_thread(book, db, data)
    engine = make_engine(db)
    try:
        for since in (RANGES[1][0], at("2025-03-03T00:00:00"), at("2025-03-03T07:00:00")):
            spent = sum(r["cost_usd"] for r in data if r["key_id"] == a and r["created_at"] >= since)
            assert await key_spend(engine, a, since) == pytest.approx(spent, abs=1e-9)
        start, end = RANGES[1]
        got = await model_tokens(engine, "day", start, end, {})
        sums: dict[tuple[str, str, str], list[Any]] = defaultdict(lambda: [0, 0, 0.0])
        for r in chosen(data, start, end, {}):
            if r["status"] < 400 and r["deployment"]:
                s = sums[(slot(r["created_at"], "day"), r["model"], r["deployment"])]
                s[0], s[1], s[2] = s[0] + r["input_tokens"], s[1] + r["output_tokens"], s[2] + r["cost_usd"]
        assert [g[:5] for g in got] == [(*k, v[0], v[1]) for k, v in sorted(sums.items())]
        assert [g[5] for g in got] == [pytest.approx(v[2], abs=1e-9) for _, v in sorted(sums.items())]
        hits: dict[str, list[Any]] = defaultdict(lambda: [0, 0.0])
        for r in chosen(data, start, end, {}):
            if r["status"] < 400 and r["cache"] in ("hit", "semantic-hit"):
                h = hits[slot(r["created_at"], "hour")]
                h[0], h[1] = h[0] + 1, h[1] + r["cost_saved_usd"]
        cached = await cache_savings(engine, "hour", start, end, {})
        assert [c[:2] for c in cached] == [(k, v[0]) for k, v in sorted(hits.items())]
        assert [c[2] for c in cached] == [pytest.approx(v[1], abs=1e-9) for _, v in sorted(hits.items())]
    finally:
        await engine.dispose()


def rollup_table(url: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    async def go() -> dict[tuple[Any, ...], tuple[Any, ...]]:
        engine = make_engine(url)
        async with engine.connect() as connection:
            found = (await connection.execute(LEDGER_ROLLUP.select())).mappings().all()
        await engine.dispose()
        return {
            tuple(r[c] for c in KEY_COLUMNS): tuple(
                round(r[c], 6) if isinstance(r[c], float) else r[c] for c in VALUES
            )
            for r in found
        }

    return asyncio.run(go())


def assert_same(got: dict[Any, tuple[Any, ...]], want: dict[Any, tuple[Any, ...]]) -> None:
    """Counts exactly; float sums (money, milliseconds) up to the order they were added in."""
    assert got.keys() == want.keys()
    for key, values in want.items():
        assert got[key] == pytest.approx(values, rel=1e-9, abs=1e-12), key


def test_replays_count_once_and_the_backfill_agrees_with_the_writer(db, tmp_path):
    data = random_rows([0, 1, None], n=800, seed=3)
    book(db, data)
    booked = rollup_table(db)
    assert sum(v[0] for k, v in booked.items() if k[:2] == (0, 1)) == len(data)  # each row once, hourly

    async def replay() -> None:
        """The same rows again: as a batch with a duplicate inside it, then from a spool file, drained."""
        engine = make_engine(db)
        async with engine.begin() as connection:
            again = await connection.run_sync(insert_rows, data[:300] + data[:1])
        assert again == 0
        writer = LedgerWriter(engine, tmp_path / "spool", db)
        journal = [{**r, "created_at": r["created_at"].timestamp()} for r in data[100:500]]
        writer.spool.append(journal)
        assert await writer.write_pending()
        assert not list((tmp_path / "spool").glob(f"ledger-{spool_tag(db)}-*.jsonl"))
        await engine.dispose()

    asyncio.run(replay())
    assert_same(rollup_table(db), booked)

    async def backfill() -> None:
        """Empty the roll-ups and rebuild them the way migration 0005 does for an existing ledger."""
        migration = importlib.import_module("migrations.versions.0005_ledger_rollup")
        engine = make_engine(db)
        async with engine.begin() as connection:
            await connection.execute(LEDGER_ROLLUP.delete())
            await connection.run_sync(migration.backfill)
        await engine.dispose()

    asyncio.run(backfill())
    assert_same(rollup_table(db), booked)


def edge_rows() -> list[dict[str, Any]]:
    """Rows on every edge the roll-ups cut at: hours and days to the microsecond, TTFTs on bin
    edges, just under them and outside the histogram, no TTFT, statuses around 400 and the
    refusals (402/403/429 with and without an attempt), missing key and deployment."""
    midnight = at("2025-03-03T00:00:00")
    tick = timedelta(microseconds=1)
    times = [midnight - tick, midnight, midnight + timedelta(hours=1) - tick, midnight + timedelta(hours=5)]
    below = [math.nextafter(e, 0.0) for e in (TTFT_EDGES[0], TTFT_EDGES[13], TTFT_EDGES[-1])]
    ttfts = [None, 0.0, 0.4, TTFT_EDGES[0], TTFT_EDGES[13], TTFT_EDGES[-1], 90_000.0, *below]
    outcomes = [(200, 1), (399, 1), (400, 2), (402, 0), (402, 1), (403, 0), (429, 0), (429, 3), (500, 1)]
    out = []
    for i, (when, ttft, (status, attempts)) in enumerate(itertools.product(times, ttfts, outcomes)):
        deployment = None if attempts == 0 else DEPLOYMENTS[i % 3]
        out.append(
            row(
                f"e-{i:04d}", when, [0, 1, None][i % 3], deployment, model=["m1", "m2"][i % 2],
                attempts=attempts, status=status, input_tokens=i, output_tokens=i % 4, cost_usd=i * 1e-5,
                latency_ms=float(i % 7) * 100.0, ttft_ms=ttft, streamed=i % 2 == 0, cancelled=i % 5 == 0,
                usage_estimated=i % 3 == 0, retrieval_ms=2.5 if i % 4 == 0 else None,
                cache=[None, "miss", "hit", "semantic-hit"][i % 4], cost_saved_usd=1e-4 if i % 4 > 1 else None,
            )
        )  # fmt: skip
    return out


def test_the_rollup_table_is_what_the_rows_add_up_to_and_a_replay_adds_nothing(db):
    """Every roll-up row, key by key, equals the plain-Python oracle's sums over the same rows."""
    data = random_rows([0, 1, None], n=700, seed=8) + edge_rows()
    random.Random(2).shuffle(data)
    book(db, data)
    oracle = Rollup()
    oracle.extend(data)
    want = {
        k: tuple(round(x, 6) if isinstance(x, float) else x for x in v) for k, v in oracle.table().items()
    }
    assert_same(rollup_table(db), want)

    async def replay() -> int:
        engine = make_engine(db)
        async with engine.begin() as connection:
            again = await connection.run_sync(insert_rows, data[::-1])
        await engine.dispose()
        return int(again)

    assert asyncio.run(replay()) == 0
    assert_same(rollup_table(db), want)
