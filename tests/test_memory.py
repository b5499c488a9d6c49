"""Memory: heavy libraries load only when used, and the ledger's statements do not multiply.

RSS itself (at idle, under load, its slope over a soak) is measured by `bench.compare`
and reported in bench/README.md, never asserted: it depends on the machine. What is
checked here is what those figures rest on, and fails the same way on any machine:

- a gateway with no RAG collection and upstreams that report usage has neither numpy
  (rag's store and search), onnxruntime, nor the tokenizer (about 40 MB) mapped; the
  tokenizer is loaded by the first answer that has to be counted;
- ledger batches of every size from 1 to a few pages reuse a bounded set of statement
  texts, so the database connections' statement caches (a prepared 500-row INSERT holds
  about 1.5 MB) cannot fill with one text per batch size.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select

from gateway.db import make_engine, upgrade
from gateway.db.models import LEDGER_ROLLUP, LedgerRow
from gateway.db.rollup import FULL, HOUR
from gateway.db.rollup_sql import INSERT_PAGE_ROWS, insert_rows
from gateway.simulator import Behaviour
from tests.harness import config_for, database_url, serve_process
from tests.ledger_seed import row

LAZY_LIBRARIES = ("/numpy/", "/onnxruntime/", "/tiktoken/")


def _mapped(pid: int) -> set[str]:
    """Which of LAZY_LIBRARIES have a file mapped into the process."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {library for library in LAZY_LIBRARIES if library in maps}


def test_the_tokenizer_and_rag_libraries_load_only_when_used(fake, tmp_path):
    upstream = fake(behaviour=Behaviour(content="four words right here", omit_usage=True))
    gateway = serve_process(tmp_path, config_for({"up": upstream.url}))
    try:
        pid = gateway.process.pid
        assert _mapped(pid) == set()
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        answer = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=60)
        assert answer.status_code == 200
        usage = answer.json()["usage"]
        assert usage["estimated"] is True and usage["completion_tokens"] == 4
        assert _mapped(pid) == {"/tiktoken/"}  # counted: the tokenizer, and still no RAG library
    finally:
        gateway.stop()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_ledger_batches_of_every_size_reuse_a_few_statements(kind, tmp_path):
    url, drop = database_url(kind, tmp_path)
    texts: set[str] = set()
    sizes = range(1, INSERT_PAGE_ROWS + 2)  # every remainder, a full page, and a page and one more
    ids = (f"r-{i:05d}" for i in itertools.count())
    when = datetime(2025, 3, 1, 10, 15, tzinfo=UTC)

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        texts.add(statement)

    async def book() -> tuple[int, int, int]:
        await asyncio.to_thread(upgrade, url)
        engine = make_engine(url)
        event.listen(engine.sync_engine, "before_cursor_execute", seen)
        new = 0
        try:
            for size in sizes:
                async with engine.begin() as connection:
                    batch = [row(next(ids), when, None, "p1/m1-up") for _ in range(size)]
                    new += await connection.run_sync(insert_rows, batch)
            async with engine.connect() as connection:
                rows = (await connection.execute(select(func.count()).select_from(LedgerRow))).scalar_one()
                hourly = LEDGER_ROLLUP.c
                rolled = (
                    await connection.execute(
                        select(func.sum(hourly.requests)).where(hourly.cube == FULL, hourly.grain == HOUR)
                    )
                ).scalar_one()
        finally:
            await engine.dispose()
        return new, rows, rolled

    try:
        new, rows, rolled = asyncio.run(book())
    finally:
        drop()
    assert new == rows == rolled == sum(sizes)  # every row booked once, and rolled up once
    inserts = {t for t in texts if t.startswith("INSERT INTO ledger ")}
    rollups = {t for t in texts if t.startswith("INSERT INTO ledger_rollup ")}
    assert len(rollups) == 1
    assert len(inserts) == INSERT_PAGE_ROWS.bit_length()  # pages of 128, 64, … 2 and 1 rows
