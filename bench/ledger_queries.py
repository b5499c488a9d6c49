"""How fast the admin queries are on a million-row ledger, in SQLite and PostgreSQL.

Generates a ledger (default 1,000,000 rows over 30 days: 50 keys, 6 models, 12
deployments on 5 providers), loads it the fast way for each database (executemany in
one SQLite transaction; COPY into PostgreSQL), runs ANALYZE, then times the very
functions behind `/admin/api/spend`, the budget status and `/admin/api/ledger`
(best and median of `--repeat` runs). PostgreSQL gets a fresh database on the local
server, dropped afterwards.

    .venv/bin/python -m bench.ledger_queries [--rows 1000000] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.admin.savings import savings
from gateway.db import make_engine, upgrade
from gateway.ledger import key_spend, ledger_page, spend
from gateway.ledger.aggregates import deployment_stats, key_usage, model_tokens, totals
from gateway.ledger.queries import time_bucket

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
DAYS = 30
KEYS = [f"key_{i:04d}" for i in range(50)]
PROVIDERS = ["groq", "together", "perplexity", "vllm", "openai"]
MODELS = ["llama-8b", "llama-70b", "mixtral", "sonar", "gpt-4o-mini", "qwen-32b"]
COLUMNS = ["request_id", "created_at", "key_id", "kind", "model", "deployment", "provider", "attempts",
           "input_tokens", "output_tokens", "usage_estimated", "cost_usd", "latency_ms", "ttft_ms", "status",
           "finish_reason", "streamed", "cancelled", "policy", "error", "attempt_log"]  # fmt: skip


def generate(n: int, seed: int = 7) -> Iterator[tuple[Any, ...]]:
    rnd = random.Random(seed)
    span = DAYS * 86400
    for i in range(n):
        model = rnd.choice(MODELS)
        provider = PROVIDERS[(MODELS.index(model) + rnd.randint(0, 1)) % len(PROVIDERS)]
        tin, tout = rnd.randint(20, 4000), rnd.randint(1, 800)
        status = 200 if rnd.random() > 0.02 else 502
        yield (
            f"gen-{i:012d}", NOW - timedelta(seconds=span * (i / n)), rnd.choice(KEYS), "chat", model,
            f"{provider}/{model}", provider, 1 + (status != 200), tin, tout, False,
            (tin * 0.5 + tout * 1.5) / 1e6, rnd.uniform(50, 3000), rnd.uniform(20, 800), status,
            "stop" if status == 200 else "error", rnd.random() < 0.6, False, "balanced", None, None,
        )  # fmt: skip


def load_sqlite(path: Path, n: int) -> str:
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    conn = sqlite3.connect(path)
    fmt = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's storage format for DateTime in SQLite
    rows = ((r[0], r[1].strftime(fmt), *r[2:]) for r in generate(n))
    with conn:
        conn.executemany(
            f"INSERT INTO ledger ({','.join(COLUMNS)}) VALUES ({','.join('?' * len(COLUMNS))})", rows
        )
    conn.execute("ANALYZE")
    conn.close()
    return url


async def load_postgres(n: int) -> tuple[str, Callable[[], Awaitable[None]]]:
    import asyncpg

    name = "gw_bench_" + os.urandom(4).hex()
    admin = await asyncpg.connect(
        host="127.0.0.1", user=os.environ.get("PGUSER", "postgres"), database="test"
    )
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://{os.environ.get('PGUSER', 'postgres')}@127.0.0.1:5432/{name}"
    await asyncio.to_thread(upgrade, url)
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    await conn.copy_records_to_table("ledger", records=generate(n), columns=COLUMNS)
    await conn.execute("ANALYZE ledger")
    await conn.close()

    async def drop() -> None:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    return url, drop


def queries(engine: Any) -> dict[str, Callable[[], Awaitable[Any]]]:
    month, week, day = NOW - timedelta(days=DAYS), NOW - timedelta(days=7), NOW - timedelta(days=1)
    end = NOW + timedelta(hours=1)

    async def third_page() -> Any:
        cursor = None
        for _ in range(3):
            page = await ledger_page(engine, {"model": "mixtral"}, None, None, 100, cursor)
            cursor = page["next_cursor"]
        return page

    return {
        "spend provider/day, 30 days (all rows)": lambda: spend(engine, "provider", "day", month, end),
        "spend deployment/day, 30 days": lambda: spend(engine, "deployment", "day", month, end),
        "spend model/hour, 7 days": lambda: spend(engine, "model", "hour", week, end),
        "spend key/hour, 24 hours": lambda: spend(engine, "key", "hour", day, end),
        "budget status: one key, 30 days": lambda: key_spend(engine, KEYS[3], month),
        "ledger page 1 (100 newest)": lambda: ledger_page(engine, {}, None, None, 100, None),
        "ledger page, key filter": lambda: ledger_page(engine, {"key_id": KEYS[7]}, None, None, 100, None),
        "ledger page 3 via cursor, model filter": third_page,
        "ledger page, status=502 in 1 day": lambda: ledger_page(engine, {"status": 502}, day, end, 100, None),
        **dashboard_queries(engine, end),
    }


def dashboard_queries(engine: Any, end: datetime) -> dict[str, Callable[[], Awaitable[Any]]]:
    """The aggregates behind the dashboard's endpoints, over a day, a week and the month."""
    out: dict[str, Callable[[], Awaitable[Any]]] = {}
    for label, days, bucket in (("24 hours", 1, "hour"), ("7 days", 7, "hour"), ("30 days", DAYS, "day")):
        start = end - timedelta(days=days, hours=1)
        slot = time_bucket(engine, bucket).label("slot")

        async def saved(start: datetime = start, slot: Any = slot) -> Any:
            return savings(await model_tokens(engine, slot, start, end, {}), {})

        out |= {
            f"summary totals, {label}": lambda s=start: totals(engine, s, end, {}),
            f"summary totals, {label}, one model": lambda s=start: totals(
                engine, s, end, {"model": MODELS[2]}
            ),
            f"deployments p50/p95/tok/s, {label}": lambda s=start: deployment_stats(engine, s, end, {}),
            f"key usage + refusals, {label}": lambda s=start: key_usage(engine, s, end, {}),
            f"savings by {bucket}, {label}": saved,
        }
    return out


async def time_all(url: str, repeat: int) -> dict[str, dict[str, float]]:
    engine = make_engine(url)
    results = {}
    try:
        for label, run in queries(engine).items():
            await run()  # warm the cache and the connection
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                await run()
                times.append((time.perf_counter() - started) * 1000)
            results[label] = {"best_ms": min(times), "median_ms": statistics.median(times)}
    finally:
        await engine.dispose()
    return results


def report(name: str, load_s: float, rows: int, results: dict[str, dict[str, float]]) -> None:
    print(f"\n{name}: {rows:,} rows loaded in {load_s:.1f} s")
    for label, r in results.items():
        print(f"  {label:<42} best {r['best_ms']:8.1f} ms   median {r['median_ms']:8.1f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    out: dict[str, Any] = {"rows": args.rows}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        url = await asyncio.to_thread(load_sqlite, Path(tmp) / "ledger.db", args.rows)
        load_s = time.perf_counter() - started
        out["sqlite"] = await time_all(url, args.repeat)
        report("SQLite", load_s, args.rows, out["sqlite"])
    if not args.skip_postgres:
        started = time.perf_counter()
        url, drop = await load_postgres(args.rows)
        load_s = time.perf_counter() - started
        try:
            out["postgresql"] = await time_all(url, args.repeat)
            report("PostgreSQL", load_s, args.rows, out["postgresql"])
        finally:
            await drop()
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    (results / "ledger_queries.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
