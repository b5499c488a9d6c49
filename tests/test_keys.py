"""Virtual keys end to end: CLI and admin API, hash-only storage, allow-lists, revocation, the key cache."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import create_engine, event, text

from gateway.keys import KeyCache, KeyRecord, hash_key
from tests.harness import clean_env, config_for, database_url, runtime_of, wait_for

ADMIN = "admin-secret"
GATEWAY = [sys.executable, "-m", "gateway.cli"]


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    url, drop = database_url(request.param, tmp_path)
    yield url
    drop()


def cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(DATABASE_URL=db)
    return subprocess.run([*GATEWAY, *args], capture_output=True, text=True, timeout=60, env=env)


def rows(db: str, sql: str) -> list[Any]:
    """Read the database from the test side (asyncpg for PostgreSQL, sqlite3 for SQLite)."""
    if "sqlite" in db:
        engine = create_engine(db.replace("+aiosqlite", ""))
        with engine.connect() as connection:
            result = list(connection.execute(text(sql)).all())
        engine.dispose()
        return result
    import asyncpg

    async def go() -> list[Any]:
        conn = await asyncpg.connect(db.replace("postgresql+asyncpg", "postgresql"))
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return asyncio.run(go())


def two_models(url: str) -> str:
    return config_for({"a": url}, models={"m": [("a", "a-model")], "other": [("a", "a-model")]})


def chat(base: str, key: str, model: str = "m") -> Any:
    client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=20)
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


def test_cli_create_list_revoke_and_the_key_works_until_revoked(db, fake, gateway, tmp_path):
    made = cli(db, "keys", "create", "--name", "app-one", "--budget-usd", "5", "--budget-period", "day",
               "--rpm", "100", "--tpm", "100000", "--models", "m,other", "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    secret = created["key"]
    assert secret.startswith("gw-") and len(secret) > 40
    assert (
        created["prefix"] == secret[:9]
        and created["budget_period"] == "day"
        and created["models"] == ["m", "other"]
    )

    listed = cli(db, "keys", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [shown] = [k for k in json.loads(listed.stdout) if k["id"] == created["id"]]
    assert "key" not in shown and "key_hash" not in shown and secret not in listed.stdout

    [(stored_hash,)] = rows(db, f"SELECT key_hash FROM api_keys WHERE id = '{created['id']}'")
    assert stored_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in json.dumps([list(map(str, r)) for r in rows(db, "SELECT * FROM api_keys")])

    up = fake()
    gw = gateway(two_models(up.url), database_url=db, admin_key=ADMIN, key_cache_ttl_s=0.3,
                 ledger_spool_dir=tmp_path / "spool")  # fmt: skip
    assert chat(gw.url, secret).choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        chat(gw.url, "gw-" + "x" * 43)

    revoked = cli(db, "keys", "revoke", created["id"])
    assert revoked.returncode == 0, revoked.stderr
    assert cli(db, "keys", "revoke", created["id"]).returncode == 1  # already revoked

    def refused() -> bool:
        try:
            chat(gw.url, secret)
        except openai.AuthenticationError:
            return True
        return False

    wait_for(refused, timeout_s=5)  # the cache TTL bounds how long another process's revoke takes


def test_admin_api_keys_allow_list_and_immediate_revoke(db, fake, gateway, tmp_path):
    up = fake()
    gw = gateway(two_models(up.url), database_url=db, admin_key=ADMIN, key_cache_ttl_s=600,
                 ledger_spool_dir=tmp_path / "spool")  # fmt: skip
    admin = httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=20)
    made = admin.post("/admin/api/keys", json={"name": "svc", "models": ["m"], "rpm": 50})
    assert made.status_code == 201, made.text
    key = made.json()
    assert {"id", "key", "name", "prefix", "rpm", "models"} <= key.keys() and "key_hash" not in key
    assert admin.post("/admin/api/keys", json={"name": "x", "budget_period": "year"}).status_code == 400
    assert admin.post("/admin/api/keys", json={"name": "x", "bogus": 1}).status_code == 400

    assert chat(gw.url, key["key"]).choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError, match="may not use model 'other'"):
        chat(gw.url, key["key"], model="other")

    as_key = httpx.get(f"{gw.url}/admin/api/keys", headers={"authorization": f"Bearer {key['key']}"})
    assert as_key.status_code == 403 and as_key.json()["error"]["code"] == "admin_only"
    assert httpx.get(f"{gw.url}/admin/api/keys").status_code == 401
    listed = admin.get("/admin/api/keys").json()["data"]
    assert [k["name"] for k in listed] == ["svc"] and "key" not in listed[0]

    assert admin.delete(f"/admin/api/keys/{key['id']}").json() == {"id": key["id"], "revoked": True}
    with pytest.raises(openai.AuthenticationError):  # at once, despite a 10-minute cache TTL
        chat(gw.url, key["key"])
    assert admin.delete(f"/admin/api/keys/{key['id']}").status_code == 404
    assert admin.get("/admin/api/keys").json()["data"][0]["revoked_at"] is not None


def test_key_lookups_stay_off_the_database(fake, gateway, tmp_path):
    db = f"sqlite+aiosqlite:///{tmp_path}/g.db"
    up = fake()
    gw = gateway(two_models(up.url), database_url=db, admin_key=ADMIN, key_cache_ttl_s=600,
                 ledger_spool_dir=tmp_path / "spool")  # fmt: skip
    admin = httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=20)
    secret = admin.post("/admin/api/keys", json={"name": "hot", "rpm": 1000, "budget_usd": 100}).json()["key"]
    chat(gw.url, secret)  # warms the cache and the budget counter
    statements: list[str] = []
    engine = runtime_of(gw).accounts.engine.sync_engine
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    for _ in range(30):
        chat(gw.url, secret)
    # Not the request path: the telemetry health probe's `SELECT 1` (every 15 s) may fall in this window.
    statements = [s for s in statements if s.strip().upper() != "SELECT 1"]
    touched_keys = [s for s in statements if "api_keys" in s]
    assert touched_keys == []
    assert all(s.lstrip().upper().startswith("INSERT INTO LEDGER") for s in statements), statements


async def test_key_cache_shares_one_load_and_expires():
    loads: list[str] = []
    record = KeyRecord("key_1", "n", "gw-abc", hash_key("gw-secret"))
    gate = asyncio.Event()
    now = [1000.0]

    async def load(digest: str) -> KeyRecord | None:
        loads.append(digest)
        await gate.wait()  # every lookup below is waiting before the first load answers
        return record if digest == record.key_hash else None

    cache = KeyCache(load, ttl_s=0.2, negative_ttl_s=0.2, clock=lambda: now[0])
    lookups = [asyncio.ensure_future(cache.lookup("gw-secret")) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*lookups)
    assert all(r is record for r in results) and len(loads) == 1
    assert await cache.lookup("gw-wrong") is None and len(loads) == 2
    now[0] += 0.19
    await cache.lookup("gw-secret")
    assert len(loads) == 2  # still fresh
    now[0] += 0.02
    await cache.lookup("gw-secret")
    assert len(loads) == 3  # expired after ttl_s
    cache.invalidate("key_1")
    await cache.lookup("gw-secret")
    assert len(loads) == 4


def test_db_upgrade_command_is_idempotent(db):
    for _ in range(2):
        done = cli(db, "db", "upgrade")
        assert done.returncode == 0, done.stderr
    from alembic.script import ScriptDirectory

    from gateway.db.engine import alembic_config

    head = ScriptDirectory.from_config(alembic_config(db)).get_current_head()
    tables = rows(db, "SELECT version_num FROM alembic_version")
    assert [tuple(t) for t in tables] == [(head,)]
