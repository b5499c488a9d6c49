"""The ledger writer: every finished request becomes one row, written off the response path.

`record` (a RecordSink) appends to an in-memory queue and to a local journal file
(one unbuffered append, no fsync: a few microseconds), so a process killed with
SIGKILL loses no row it had booked — the next start on the same spool directory
writes the orphaned journal, and duplicates are ignored by request id. A host that
loses its page cache (power loss) can still lose the rows of the last flush
interval. A background task writes
the queue in batches (one multi-row INSERT per batch) every `flush_interval_s`, or
sooner when a batch is full; the same transaction adds the batch's new rows to the
hourly and daily roll-ups (`gateway.db.rollup`), so a batch written twice (a lost ack,
a replayed journal or spool) is neither in the ledger twice nor counted twice. If the database is unreachable the rows stay queued and
the task backs off and retries; past `memory_rows` the oldest rows are spilled to a
local file (`Spool`), which is drained once the database answers again. On shutdown
the queue is flushed; whatever cannot be written in time goes to the spool, so the
next start writes it. Nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.rollup_sql import insert_rows
from gateway.ledger.spool import Spool
from gateway.records import RequestRecord

log = logging.getLogger("gateway.ledger")

MAX_BACKOFF_S = 5.0
INSERT_TIMEOUT_S = 10.0


def to_row(record: RequestRecord) -> dict[str, Any]:
    """A ledger row as plain JSON-able values (time as epoch seconds, so it can be spooled as is)."""
    return {
        "request_id": record.request_id,
        "created_at": record.created_at,
        "key_id": record.key_id,
        "kind": record.kind,
        "model": record.model,
        "deployment": record.deployment,
        "provider": record.provider,
        "attempts": len(record.attempts),
        "input_tokens": record.prompt_tokens,
        "output_tokens": record.completion_tokens,
        "usage_estimated": record.usage_estimated,
        "cost_usd": record.cost_usd,
        "latency_ms": record.latency_ms,
        "ttft_ms": record.ttft_ms,
        "status": record.status,
        "finish_reason": record.finish_reason,
        "streamed": record.streamed,
        "cancelled": record.cancelled,
        "policy": record.policy,
        "error": record.error,
        "attempt_log": record.attempts or None,
        "retrieval_ms": record.retrieval_ms,
        "rag_chunks": record.rag_chunks,
        "cache": record.cache,
        "cost_saved_usd": record.cost_saved_usd,
        "overhead_ms": record.overhead_ms,
    }


def spool_tag(database_url: str) -> str:
    return hashlib.sha256(database_url.encode()).hexdigest()[:12]


class LedgerWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        spool_dir: Path,
        database_url: str,
        *,
        memory_rows: int = 20_000,
        batch_rows: int = 500,
        flush_interval_s: float = 0.5,
    ) -> None:
        self._engine = engine
        self.spool = Spool(spool_dir, spool_tag(database_url))
        self.journal = Spool(spool_dir, spool_tag(database_url))
        self._journal_failing = False
        self._queue: deque[dict[str, Any]] = deque()
        self._memory_rows = memory_rows
        self._batch_rows = batch_rows
        self._interval_s = flush_interval_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._spooled = True  # drain files left by an earlier run on the first pass
        self.written = 0
        self.healthy = True

    def record(self, record: RequestRecord) -> None:
        row = to_row(record)
        self._queue.append(row)
        self._journal(row)
        if len(self._queue) > self._memory_rows:
            spill = [self._queue.popleft() for _ in range(len(self._queue) - self._memory_rows // 2)]
            self.spool.append(spill)
            self._spooled = True
            log.warning("ledger: database behind; spilled %d rows to %s", len(spill), self.spool.directory)
        if len(self._queue) >= self._batch_rows:
            self._wake.set()

    def _journal(self, row: dict[str, Any]) -> None:
        try:
            self.journal.append([row])
        except OSError as exc:  # the row is still queued; only its crash safety is lost
            if not self._journal_failing:
                log.warning("ledger: cannot append to the journal in %s: %s", self.journal.directory, exc)
            self._journal_failing = True
        else:
            self._journal_failing = False

    def pending(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger-writer")

    async def _run(self) -> None:
        delay = self._interval_s
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()
            ok = await self.write_pending()
            delay = self._interval_s if ok else min(MAX_BACKOFF_S, delay * 2)

    async def write_pending(self) -> bool:
        """Spooled rows first, then the queue; False (and everything kept) if the database fails."""
        try:
            if self._spooled:
                await self._drain_spool()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(self._batch_rows, len(self._queue)))]
                try:
                    await self._write(batch)
                except BaseException:
                    self._queue.extendleft(reversed(batch))
                    raise
            self.journal.truncate()  # nothing is queued: every journaled row is in the database
        except Exception as exc:
            if self.healthy:
                log.warning(
                    "ledger: cannot write (%s: %s); keeping rows and retrying", type(exc).__name__, exc
                )
            self.healthy = False
            return False
        if not self.healthy:
            log.info("ledger: database reachable again; backlog written")
        self.healthy = True
        return True

    async def _drain_spool(self) -> None:
        self._spooled = False  # cleared first: a spill while we drain sets it again
        try:
            for path in self.spool.sealed():
                rows = Spool.read(path)
                for i in range(0, len(rows), self._batch_rows):
                    await self._write(rows[i : i + self._batch_rows])
                path.unlink(missing_ok=True)
                log.info("ledger: wrote %d spooled rows from %s", len(rows), path.name)
        except BaseException:
            self._spooled = True
            raise

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        values = [{**row, "created_at": datetime.fromtimestamp(row["created_at"], UTC)} for row in rows]
        async with asyncio.timeout(INSERT_TIMEOUT_S), self._engine.begin() as connection:
            await connection.run_sync(insert_rows, values)
        self.written += len(rows)

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Flush on shutdown; rows the database cannot take in time are spooled, not lost."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=timeout_s / 2)
        deadline = time.monotonic() + timeout_s / 2
        while self._queue and time.monotonic() < deadline:
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    if not await self.write_pending():
                        await asyncio.sleep(0.2)
            except TimeoutError:
                break
        if self._queue:
            log.warning(
                "ledger: database unreachable at shutdown; %d rows spooled for the next start",
                len(self._queue),
            )
            self.spool.append(list(self._queue), sync=True)
            self._queue.clear()
        self.spool.close()
        self.journal.remove()  # its rows are written or spooled
