"""The prompt log's store: a record sink that batches rows into the `prompt_log` table.

Like the ledger, `record` only appends to a queue; a background task turns queued
records into rows (redaction and capping run in a worker thread), inserts them in
one statement per batch every `flush_interval_s`, and once per `purge_interval_s`
deletes rows older than the retention period. Unlike the ledger this log is best
effort: the queue is bounded, and when the database is away the oldest rows are
dropped (and counted) rather than spilled to disk — prompts are not money.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.models import PromptLogRow
from gateway.records import RequestRecord
from gateway.telemetry.prompts import PromptPolicy

log = logging.getLogger("gateway.prompt_log")

BATCH_ROWS = 200


class PromptLogWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        policy: PromptPolicy,
        *,
        max_queued: int = 10_000,
        flush_interval_s: float = 0.5,
        purge_interval_s: float = 3600.0,
    ) -> None:
        self._engine = engine
        self._insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        self.policy = policy
        self._queue: deque[RequestRecord] = deque()
        self._max_queued = max_queued
        self._flush_interval_s = flush_interval_s
        self._purge_interval_s = purge_interval_s
        self._last_purge = 0.0
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.written = 0
        self.purged = 0

    def record(self, record: RequestRecord) -> None:
        if record.prompt is None:
            return
        self._queue.append(record)
        if len(self._queue) > self._max_queued:
            self._queue.popleft()
            self.dropped += 1

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="prompt-log-writer")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval_s)
            try:
                await self.flush()
                if time.monotonic() - self._last_purge >= self._purge_interval_s:
                    await self.purge()
            except Exception as exc:
                log.warning("prompt log: cannot write (%s); will retry", type(exc).__name__)

    async def flush(self) -> None:
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(BATCH_ROWS, len(self._queue)))]
            rows = await asyncio.to_thread(self._rows, batch)
            for row in rows:
                row["created_at"] = datetime.fromtimestamp(row["created_at"], UTC)
            statement = self._insert(PromptLogRow).on_conflict_do_nothing(index_elements=["request_id"])
            try:
                async with self._engine.begin() as connection:
                    await connection.execute(statement, rows)
            except BaseException:
                self._queue.extendleft(reversed(batch))
                raise
            self.written += len(rows)

    def _rows(self, batch: list[RequestRecord]) -> list[dict[str, Any]]:
        return [self.policy.row(record) for record in batch]

    async def purge(self) -> int:
        """Delete rows past the retention period; the number deleted."""
        self._last_purge = time.monotonic()
        cutoff = datetime.now(UTC) - timedelta(days=self.policy.config.retention_days)
        async with self._engine.begin() as connection:
            result = await connection.execute(delete(PromptLogRow).where(PromptLogRow.created_at < cutoff))
        deleted = int(getattr(result, "rowcount", 0) or 0)
        self.purged += deleted
        return deleted

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5.0):
                await self.flush()


async def prompt_of(engine: AsyncEngine, request_id: str) -> dict[str, Any] | None:
    """One request's stored prompt, answer and caps, for the admin API."""
    async with engine.connect() as connection:
        row = (
            (
                await connection.execute(
                    select(PromptLogRow.__table__).where(PromptLogRow.request_id == request_id)
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        return None
    return {
        "messages": row["messages"],
        "augmented": row["augmented"],
        "answer": row["answer"],
        "cap_chars": row["cap_chars"],
        "truncated": row["original_chars"] or {},
        "created_at": row["created_at"].isoformat() if row["created_at"] else None,
    }
