"""How many ledger rows per second the ledger writer books, with its roll-ups, in SQLite and PostgreSQL.

The writer runs off the response path: `record` only queues a row and appends it to the
journal; a background task writes batches of `batch_rows` (500 by default) in one
transaction that also adds them to the roll-ups. This times that task alone: `--rows`
records (50 keys, 6 models, 12 deployments, TTFTs, one hour) are recorded, then
`write_pending` writes them all; rows/s = rows / time, and the CPU this process spent
per row (which, for SQLite, includes the database's own work; it is the cost to the
gateway, and on a busy machine it is the steadier figure), and the CPU per row of the
event loop's thread alone: what the writing takes from the thread that serves requests
(SQLite's own work runs in aiosqlite's thread, outside the GIL). For comparison it times the
ledger INSERT alone on the same batches (what the writer did before roll-ups).
PostgreSQL gets a fresh database, dropped afterwards.

    .venv/bin/python -m bench.ledger_writes [--rows 20000] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from bench.ledger_data import KEYS, MODELS, PGUSER, PROVIDERS
from gateway.db import make_engine, upgrade
from gateway.db.models import LedgerRow
from gateway.ledger import LedgerWriter
from gateway.ledger.writer import to_row
from gateway.records import RequestRecord

RESULTS = Path(__file__).parent / "results"


def records(n: int, tag: str) -> list[RequestRecord]:
    rnd = random.Random(3)
    now = time.time()
    out = []
    for i in range(n):
        model = rnd.choice(MODELS)
        provider = rnd.choice(PROVIDERS)
        out.append(
            RequestRecord(
                request_id=f"{tag}-{i}", model=model, created_at=now - rnd.uniform(0, 3600),
                key_id=rnd.choice(KEYS), deployment=f"{provider}/{model}", provider=provider,
                attempts=[{"deployment": f"{provider}/{model}", "outcome": "ok"}],
                prompt_tokens=rnd.randint(20, 4000), completion_tokens=rnd.randint(1, 800),
                cost_usd=rnd.uniform(0, 0.01), latency_ms=rnd.uniform(50, 3000), ttft_ms=rnd.uniform(20, 800),
                streamed=rnd.random() < 0.6, status=200 if rnd.random() > 0.02 else 502,
            )
        )  # fmt: skip
    return out


Figures = tuple[float, float, float]  # rows/s, CPU µs per row (process), CPU µs per row (loop thread)


def _clocks() -> tuple[float, float, float]:
    return time.perf_counter(), time.process_time(), time.thread_time()


def _figures(n: int, before: tuple[float, float, float]) -> Figures:
    after = _clocks()
    return n / (after[0] - before[0]), (after[1] - before[1]) * 1e6 / n, (after[2] - before[2]) * 1e6 / n


async def with_rollups(url: str, spool: Path, n: int) -> Figures:
    engine = make_engine(url)
    writer = LedgerWriter(engine, spool, url)
    for record in records(n, "w"):
        writer.record(record)
    before = _clocks()
    assert await writer.write_pending()
    figures = _figures(n, before)
    await writer.aclose()
    await engine.dispose()
    return figures


async def ledger_only(url: str, n: int, batch: int = 500) -> Figures:
    engine = make_engine(url)
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    statement = insert(LedgerRow).on_conflict_do_nothing(index_elements=["request_id"])
    rows = [{**to_row(r), "created_at": datetime.fromtimestamp(r.created_at, UTC)} for r in records(n, "p")]
    before = _clocks()
    for i in range(0, n, batch):
        async with engine.begin() as connection:
            await connection.execute(statement, rows[i : i + batch])
    figures = _figures(n, before)
    await engine.dispose()
    return figures


async def measure(url: str, spool: Path, n: int) -> dict[str, Any]:
    await asyncio.to_thread(upgrade, url)
    out: dict[str, Any] = {}
    for name, rate_and_cpu in (
        ("ledger_only", ledger_only(url, n)),
        ("with_rollups", with_rollups(url, spool, n)),
    ):
        rows_per_s, cpu_us_per_row, loop_cpu_us_per_row = await rate_and_cpu
        out[name] = {
            "rows_per_s": rows_per_s,
            "cpu_us_per_row": cpu_us_per_row,
            "loop_cpu_us_per_row": loop_cpu_us_per_row,
        }
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite"] = await measure(f"sqlite+aiosqlite:///{tmp}/w.db", Path(tmp) / "spool", args.rows)
        if not args.skip_postgres:
            import asyncpg

            name = "gw_bench_writes"
            admin = await asyncpg.connect(host="127.0.0.1", user=PGUSER, database="test")
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
            try:
                url = f"postgresql+asyncpg://{PGUSER}@127.0.0.1:5432/{name}"
                results["PostgreSQL"] = await measure(url, Path(tmp) / "spool-pg", args.rows)
            finally:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.close()
    print(
        f"ledger writer, {args.rows:,} rows in batches of 500: rows/s, CPU µs per row (process / event loop)"
    )
    for name, r in results.items():
        plain, rolled = r["ledger_only"], r["with_rollups"]
        print(f"  {name:<11} ledger INSERT only {plain['rows_per_s']:7.0f} rows/s {plain['cpu_us_per_row']:5.0f}"
              f" / {plain['loop_cpu_us_per_row']:3.0f} µs   with roll-ups {rolled['rows_per_s']:7.0f} rows/s"
              f" {rolled['cpu_us_per_row']:5.0f} / {rolled['loop_cpu_us_per_row']:3.0f} µs")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ledger_writes.json").write_text(json.dumps({"rows": args.rows, **results}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
