"""How fast the dashboard's queries are on a ten-million-row ledger, in SQLite and PostgreSQL.

Loads (once, then reuses: see `bench.ledger_data`) a ledger of `--rows` rows (default
10,000,000 over 30 days) with its roll-ups, then times the very functions behind every
dashboard panel — `/admin/api/summary`, `/spend` (stacked by provider and by model),
`/savings`, `/deployments`, `/key-usage`, the recent-requests page — plus the budget
status, over the last hour, 24 hours, 7 days, 30 days and a custom 10-day range whose
ends are not on the hour, each without a filter, with a key and with a model filter.
Ranges end 23 minutes into the last loaded hour, as "now" does, so every range has
part hours read from the ledger. Best and median of `--repeat` runs, in ms.

    .venv/bin/python -m bench.ledger_queries [--rows 10000000] [--skip-postgres] [--fresh]

The data lives in `--data-dir` (default `bench/results/ledger-data`, git-ignored) and in
the PostgreSQL database `gw_bench_ledger_<rows>` (`--drop-postgres` removes it after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.ledger_data import KEYS, MODELS, drop_postgres, postgres_ledger, sqlite_ledger
from gateway.admin.savings import savings
from gateway.db import make_engine
from gateway.ledger import key_spend, ledger_page, spend
from gateway.ledger.aggregates import deployment_stats, key_usage, model_tokens, totals

RESULTS = Path(__file__).parent / "results"
Run = Callable[[], Awaitable[Any]]


def ranges(now: datetime) -> dict[str, tuple[datetime, datetime]]:
    end = now - timedelta(minutes=37)  # 23 minutes into the last loaded hour
    return {
        "1h": (end - timedelta(hours=1), end),
        "24h": (end - timedelta(days=1), end),
        "7d": (end - timedelta(days=7), end),
        "30d": (end - timedelta(days=30), end),
        "custom 10d": (now - timedelta(days=12, minutes=-17), now - timedelta(days=2, hours=2, minutes=-41)),
    }


def panels(engine: Any, start: datetime, end: datetime, filters: dict[str, str]) -> dict[str, Run]:
    """One dashboard refresh: what `dashboard.js` asks the API for, by the same functions."""
    bucket = "day" if end - start > timedelta(days=2) else "hour"
    wanted = dict(filters)

    async def saved() -> Any:
        return savings(await model_tokens(engine, bucket, start, end, filters), {})

    return {
        "summary": lambda: totals(engine, start, end, filters),
        "spend by provider": lambda: spend(engine, "provider", bucket, start, end, filters),
        "spend by model": lambda: spend(engine, "model", bucket, start, end, filters),
        "savings": saved,
        "deployments": lambda: deployment_stats(engine, start, end, filters),
        "key usage": lambda: key_usage(engine, start, end, filters),
        "recent requests": lambda: ledger_page(engine, wanted, start, end, 20, None),
    }


FILTERS = {"all": {}, "key": {"key_id": KEYS[3]}, "model": {"model": MODELS[2]}}


async def time_one(run: Run, repeat: int) -> dict[str, float]:
    await run()  # warm the cache and the connection
    times, cpu = [], []
    for _ in range(repeat):
        started, used = time.perf_counter(), time.process_time()
        await run()
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - used) * 1000)
    return {
        "best_ms": round(min(times), 2),
        "median_ms": round(statistics.median(times), 2),
        "median_cpu_ms": round(statistics.median(cpu), 2),  # this process; for SQLite that includes the query
    }


async def time_all(url: str, now: datetime, repeat: int) -> dict[str, dict[str, Any]]:
    engine = make_engine(url)
    results: dict[str, dict[str, Any]] = {}
    try:
        for label, (start, end) in ranges(now).items():
            for fname, wanted in FILTERS.items():
                for panel, run in panels(engine, start, end, wanted).items():
                    results.setdefault(f"{panel}, {fname}", {})[label] = await time_one(run, repeat)
        month = now - timedelta(days=30)
        results["budget status, one key"] = {
            "30d": await time_one(lambda: key_spend(engine, KEYS[3], month), repeat)
        }
    finally:
        await engine.dispose()
    return results


def report(name: str, rows: int, load_s: float | None, results: dict[str, dict[str, Any]]) -> None:
    loaded = "reused" if load_s is None else f"loaded in {load_s:.0f} s"
    labels = list(ranges(datetime(2025, 1, 1)))
    print(f"\n{name}: {rows:,} rows ({loaded}); median ms over the range")
    print(f"  {'query, filter':<28}" + "".join(f"{label:>12}" for label in labels))
    for query, by_range in results.items():
        cells = [
            f"{by_range[label]['median_ms']:12.1f}" if label in by_range else " " * 12 for label in labels
        ]
        print(f"  {query:<28}" + "".join(cells))
    worst = max(r["median_ms"] for by_range in results.values() for r in by_range.values())
    print(f"  slowest median: {worst:.1f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=RESULTS / "ledger-data")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="load again even if a loaded copy exists")
    parser.add_argument("--drop-postgres", action="store_true", help="drop the PostgreSQL copy afterwards")
    args = parser.parse_args()
    out: dict[str, Any] = {"rows": args.rows}
    if not args.skip_sqlite:
        if args.fresh:
            (args.data_dir / f"ledger-{args.rows}.db").unlink(missing_ok=True)
        url, now, load_s = await asyncio.to_thread(sqlite_ledger, args.data_dir, args.rows)
        out["sqlite"] = await time_all(url, now, args.repeat)
        report("SQLite", args.rows, load_s, out["sqlite"])
    if not args.skip_postgres:
        url, now, load_s = await postgres_ledger(args.rows, args.fresh)
        try:
            out["postgresql"] = await time_all(url, now, args.repeat)
            report("PostgreSQL", args.rows, load_s, out["postgresql"])
        finally:
            if args.drop_postgres:
                await drop_postgres(args.rows)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ledger_queries.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
