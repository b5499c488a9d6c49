"""A large synthetic ledger for the query benchmark, loaded once and reused.

Rows (50 keys, 6 models, 12 deployments on 5 providers, 1.5% errors, 0.5% refused,
30 days up to the hour `now`) are made inside the database by one INSERT … SELECT over a
row counter (a recursive CTE in SQLite, `generate_series` in PostgreSQL), their values
drawn from a hash of the row number. The roll-ups are then built by migration 0005's
backfill (`gateway.db.rollup_sql.backfill`: the statement the ledger writer runs for each
batch, over a day of rows at a time), so they are exactly what the writer would have made. `bench_meta` records
the row count and `now` once loading has finished; a later run with the same row count
reuses the database (a SQLite file under `--data-dir`, a PostgreSQL database named
`gw_bench_ledger_<rows>`), so ten million rows are loaded once.
"""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.db import upgrade
from gateway.db.rollup_sql import backfill

DAYS = 30
KEYS = [f"key_{i:04d}" for i in range(50)]
PROVIDERS = ["groq", "together", "perplexity", "vllm", "openai"]
MODELS = ["llama-8b", "llama-70b", "mixtral", "sonar", "gpt-4o-mini", "qwen-32b"]
PGUSER = os.environ.get("PGUSER", "postgres")


def _h(salt: int, modulo: int) -> str:
    """A well-spread pseudo-random integer in [0, modulo) from the row number `i` alone (SQL).

    The high 16 bits of a multiplicative hash: the same in SQLite and PostgreSQL, and the
    same every time an expression refers to it, so a row's model, provider and deployment agree.
    """
    return f"((((i + {salt}) * 2654435761) % 4294967296) / 65536 % {modulo})"


def _pick(options: list[str], index: str) -> str:
    return "CASE " + index + "".join(f" WHEN {k} THEN '{v}'" for k, v in enumerate(options)) + " END"


def _select(n: int, start_us: int, created_at: str) -> str:
    """The rows as one INSERT … SELECT over `i` (0 … n-1), oldest first, 30 days evenly spread."""
    model = _h(1, len(MODELS))
    provider = _pick(PROVIDERS, f"(({model}) + {_h(2, 2)}) % {len(PROVIDERS)}")
    u = _h(6, 1000)
    status = f"CASE WHEN {u} < 5 THEN 429 WHEN {u} < 20 THEN 502 ELSE 200 END"
    tin, tout = f"(20 + {_h(4, 3981)})", f"(1 + {_h(5, 800)})"
    t = f"({start_us} + i * {DAYS * 86400 * 1_000_000 // n})"
    ttft = f"(20 + {_h(8, 60000)} / 100.0)"  # 20 ms to 620 ms
    columns = {
        "request_id": "'gen-' || i", "created_at": created_at.format(t=t), "key_id": _pick(KEYS, _h(3, len(KEYS))),
        "kind": "'chat'", "model": _pick(MODELS, model), "deployment": f"{provider} || '/' || {_pick(MODELS, model)}",
        "provider": provider, "attempts": f"CASE WHEN {u} < 5 THEN 0 WHEN {u} < 20 THEN 2 ELSE 1 END",
        "input_tokens": tin, "output_tokens": tout, "usage_estimated": "false",
        "cost_usd": f"({tin} * 0.5 + {tout} * 1.5) / 1000000.0", "latency_ms": f"({ttft} + {_h(7, 30000)} / 10.0)",
        "ttft_ms": ttft, "status": status,
        "finish_reason": f"CASE WHEN {u} < 20 THEN 'error' ELSE 'stop' END", "streamed": f"({_h(9, 10)} < 6)",
        "cancelled": "false", "policy": "'balanced'",
    }  # fmt: skip
    return f"INSERT INTO ledger ({', '.join(columns)}) SELECT {', '.join(columns.values())} FROM seq"


_SQLITE_TIME = (
    "strftime('%Y-%m-%d %H:%M:%S', {t} / 1000000, 'unixepoch') || '.' || printf('%06d', {t} % 1000000)"
)
_PG_TIME = "to_timestamp(({t})::float8 / 1000000)"


def _start_us(now: datetime) -> int:
    return int((now - timedelta(days=DAYS)).timestamp()) * 1_000_000


def _meta(path: Path) -> tuple[int, datetime] | None:
    try:
        with sqlite3.connect(path) as conn:
            found = conn.execute("SELECT rows, now FROM bench_meta").fetchone()
    except sqlite3.Error:
        return None
    return None if found is None else (int(found[0]), datetime.fromisoformat(found[1]))


def sqlite_ledger(data_dir: Path, n: int) -> tuple[str, datetime, float | None]:
    """(url, now, seconds spent loading, None if reused) of a SQLite file with `n` rows."""
    path = data_dir / f"ledger-{n}.db"
    url = f"sqlite+aiosqlite:///{path}"
    found = _meta(path) if path.exists() else None
    if found is not None and found[0] == n:
        return url, found[1], None
    path.unlink(missing_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    upgrade(url)
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA synchronous=OFF")
        connection.commit()
        with connection.begin():
            insert = _select(n, _start_us(now), _SQLITE_TIME)
            connection.exec_driver_sql(
                f"WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {n - 1}) {insert}"
            )
        with connection.begin():
            backfill(connection)
        with connection.begin():
            connection.exec_driver_sql("ANALYZE")
            connection.exec_driver_sql("CREATE TABLE bench_meta (rows INTEGER, now TEXT)")
            connection.exec_driver_sql("INSERT INTO bench_meta VALUES (?, ?)", (n, now.isoformat()))
    engine.dispose()
    return url, now, time.perf_counter() - started


async def postgres_ledger(n: int, fresh: bool) -> tuple[str, datetime, float | None]:
    """(url, now, seconds spent loading, None if reused) of a PostgreSQL database with `n` rows."""
    import asyncio

    import asyncpg

    name = f"gw_bench_ledger_{n}"
    url = f"postgresql+asyncpg://{PGUSER}@127.0.0.1:5432/{name}"
    admin = await asyncpg.connect(host="127.0.0.1", user=PGUSER, database="test")
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists and not fresh:
            conn = await asyncpg.connect(url.replace("+asyncpg", ""))
            try:
                found = await conn.fetchrow("SELECT rows, now FROM bench_meta")
            except asyncpg.UndefinedTableError:
                found = None
            await conn.close()
            if found is not None and found["rows"] == n:
                return url, datetime.fromisoformat(found["now"]), None
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    started = time.perf_counter()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    await asyncio.to_thread(upgrade, url)
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    insert = _select(n, _start_us(now), _PG_TIME)
    await conn.execute(f"WITH seq(i) AS (SELECT generate_series(0::bigint, {n - 1})) {insert}")
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(backfill)
    await engine.dispose()
    await conn.execute("ANALYZE")
    await conn.execute("CREATE TABLE bench_meta (rows integer, now text)")
    await conn.execute("INSERT INTO bench_meta VALUES ($1, $2)", n, now.isoformat())
    await conn.close()
    return url, now, time.perf_counter() - started


async def drop_postgres(n: int) -> None:
    import asyncpg

    admin = await asyncpg.connect(host="127.0.0.1", user=PGUSER, database="test")
    await admin.execute(f'DROP DATABASE IF EXISTS "gw_bench_ledger_{n}" WITH (FORCE)')
    await admin.close()
