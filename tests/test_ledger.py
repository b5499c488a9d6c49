"""The ledger: one row per request with every field, batched off the response path, flushed on
SIGTERM, and complete across a database outage (a throwaway PostgreSQL stopped under load)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.db import make_engine, upgrade
from gateway.ledger import LedgerWriter
from gateway.records import RequestRecord
from gateway.simulator import Behaviour
from tests.harness import GatewayProcess, async_wait_for, config_for, database_url, runtime_of, wait_for
from tests.pg_throwaway import ThrowawayPostgres
from tests.test_keys import rows

ADMIN = "admin-secret"
HI = [{"role": "user", "content": "hi"}]
AUTH = {"authorization": f"Bearer {ADMIN}"}


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    url, drop = database_url(request.param, tmp_path)
    yield url
    drop()


def test_one_row_per_request_with_every_field(db, fake, gateway, tmp_path):
    good, bad = fake(name="good"), fake(name="bad", behaviour=Behaviour(status=500))
    config = config_for({"good": good.url, "bad": bad.url}, models={"m": [("good", "g-model")], "broken": [("bad", "b-model")]})  # fmt: skip
    gw = gateway(config, database_url=db, admin_key=ADMIN, ledger_spool_dir=tmp_path / "spool")
    key = httpx.post(f"{gw.url}/admin/api/keys", json={"name": "ledgered"}, headers=AUTH).json()
    api = openai.OpenAI(base_url=gw.url + "/v1", api_key=key["key"], max_retries=0, timeout=20)
    plain = api.chat.completions.create(model="m", messages=HI)
    chunks = list(
        api.chat.completions.create(
            model="m", messages=HI, stream=True, stream_options={"include_usage": True}
        )
    )
    with pytest.raises(openai.APIStatusError):
        api.chat.completions.create(model="broken", messages=HI)

    def booked() -> Any:
        page = httpx.get(f"{gw.url}/admin/api/ledger", params={"key": key["id"]}, headers=AUTH).json()["data"]
        return page if len(page) == 3 else None

    newest_first = wait_for(booked, timeout_s=10)
    failed, streamed, first = newest_first
    assert first["request_id"] == plain.id and streamed["request_id"] == chunks[0].id
    for row in (first, streamed):
        assert row["key_id"] == key["id"] and row["model"] == "m" and row["provider"] == "good"
        assert row["deployment"] and row["attempts"] == 1 and row["status"] == 200
        assert row["input_tokens"] > 0 and row["output_tokens"] == 8 and row["finish_reason"] == "stop"
        assert row["cost_usd"] == pytest.approx((row["input_tokens"] * 1.0 + 8 * 2.0) / 1e6)
        assert row["latency_ms"] > 0 and row["ttft_ms"] is not None and row["cancelled"] is False
        assert row["policy"] and row["created_at"].endswith("Z")
    assert first["cost_usd"] == pytest.approx(plain.usage.model_extra["cost"])
    assert (first["streamed"], streamed["streamed"]) == (False, True)
    assert failed["status"] == 502 and failed["model"] == "broken" and failed["cost_usd"] == 0
    assert failed["attempts"] >= 1 and failed["error"]


def test_rows_written_in_batches_off_the_response_path(fake, gateway, tmp_path):
    gw = gateway(config_for({"a": fake().url}), database_url=f"sqlite+aiosqlite:///{tmp_path}/g.db",
                 ledger_spool_dir=tmp_path / "spool", ledger_flush_interval_s=3600)  # fmt: skip
    writer = runtime_of(gw).accounts.ledger
    api = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=20)
    for _ in range(20):
        api.chat.completions.create(model="m", messages=HI)
    assert writer.written == 0 and writer.pending() == 20  # answered, not yet written
    writer._wake.set()
    wait_for(lambda: writer.written == 20, timeout_s=5)


def test_sigterm_flushes_every_row(fake, tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(config_for({"a": fake().url}))
    db = f"sqlite+aiosqlite:///{tmp_path}/g.db"
    env = {
        "DATABASE_URL": db,
        "GATEWAY_LEDGER_FLUSH_S": "3600",
        "GATEWAY_LEDGER_SPOOL_DIR": str(tmp_path / "spool"),
    }
    server = GatewayProcess(config, env, tmp_path / "serve.log").wait_ready()
    try:
        api = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=20)
        ids = {api.chat.completions.create(model="m", messages=HI).id for _ in range(40)}
        for _ in range(10):
            # Closed explicitly: an abandoned SDK stream is closed by the garbage collector,
            # which can run inside httpcore's pool lock and deadlock the next request.
            with api.chat.completions.create(model="m", messages=HI, stream=True) as stream:
                ids.add(next(iter(stream)).id)
        assert rows(db, "SELECT count(*) FROM ledger")[0][0] == 0  # all still queued in memory
    finally:
        code = server.stop()
    assert code in (0, -15), server.log_path.read_text()
    assert {r[0] for r in rows(db, "SELECT request_id FROM ledger")} == ids
    assert not list((tmp_path / "spool").glob("*.jsonl"))  # written to the database, not spooled


async def test_unwritable_rows_are_spooled_at_shutdown_and_written_by_the_next_start(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/later.db"  # no tables yet: every insert fails
    engine = make_engine(url)
    writer = LedgerWriter(engine, tmp_path / "spool", url, memory_rows=10, flush_interval_s=0.05)
    writer.start()
    for i in range(25):
        writer.record(RequestRecord(request_id=f"r{i}", model="m", cost_usd=0.5))
    await async_wait_for(lambda: writer.spool.rows_written > 0)  # past the bound: spilled already
    assert writer.written == 0
    await writer.aclose(timeout_s=1)
    await engine.dispose()
    spooled = sum(len(p.read_text().splitlines()) for p in (tmp_path / "spool").glob("*.jsonl"))
    assert spooled == 25

    await asyncio.to_thread(upgrade, url)
    engine = make_engine(url)
    writer = LedgerWriter(engine, tmp_path / "spool", url, flush_interval_s=0.05)
    writer.start()
    await async_wait_for(lambda: writer.written >= 25)
    await writer.aclose()
    await engine.dispose()
    assert sorted(r[0] for r in rows(url, "SELECT request_id FROM ledger")) == sorted(
        f"r{i}" for i in range(25)
    )
    assert not list((tmp_path / "spool").glob("*.jsonl"))


def test_postgres_outage_under_load_loses_no_row(fake, gateway, tmp_path):
    pg = ThrowawayPostgres()
    try:
        pg.start()
        _outage_under_load(pg, fake, gateway, tmp_path)
    finally:
        pg.destroy()


def _outage_under_load(pg: ThrowawayPostgres, fake: Any, gateway: Any, tmp_path: Any) -> None:
    gw = gateway(config_for({"a": fake().url}), database_url=pg.url, admin_key=ADMIN, key_cache_ttl_s=600,
                 ledger_spool_dir=tmp_path / "spool", ledger_memory_rows=40, ledger_flush_interval_s=0.1)  # fmt: skip
    key = httpx.post(
        f"{gw.url}/admin/api/keys", json={"name": "load", "budget_usd": 100}, headers=AUTH
    ).json()
    answered: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        api = openai.OpenAI(base_url=gw.url + "/v1", api_key=key["key"], max_retries=0, timeout=20)
        while not stop.is_set():
            try:
                answered.append(api.chat.completions.create(model="m", messages=HI).id)
            except openai.APIError as exc:
                failures.append(repr(exc))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        wait_for(lambda: len(answered) >= 50, timeout_s=20)
        pg.stop()
        down_at = len(answered)
        wait_for(lambda: len(answered) >= down_at + 150, timeout_s=30)  # served while the database is away
        pg.start()
        back_at = len(answered)
        wait_for(lambda: len(answered) >= back_at + 50, timeout_s=30)  # and served after it is back
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=30)
    assert failures == []
    writer = runtime_of(gw).accounts.ledger
    assert writer.spool.rows_written > 0  # the in-memory bound (40 rows) was passed: rows went to the file
    db = pg.url

    def all_booked() -> bool:
        writer._wake.set()
        return int(rows(db, "SELECT count(*) FROM ledger")[0][0]) >= len(answered)

    wait_for(all_booked, timeout_s=30, interval_s=0.2)
    assert {r[0] for r in rows(db, "SELECT request_id FROM ledger")} == set(answered)
