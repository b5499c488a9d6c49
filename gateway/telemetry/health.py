"""Redis and database health for `/metrics`, probed in the background, never on a scrape.

A scrape must answer fast even when a dependency hangs, so a task pings each one
every `interval_s` (bounded by a timeout) and the collector reads the last answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy import text

log = logging.getLogger("gateway.telemetry")

PROBE_TIMEOUT_S = 2.0


class HealthProbe:
    def __init__(self, engine: Any, redis: Any, interval_s: float = 15.0) -> None:
        self._engine = engine
        self._redis = redis
        self._interval_s = interval_s
        self.status: dict[str, bool] = {}
        self._task: asyncio.Task[None] | None = None

    async def _database(self) -> None:
        async with self._engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def probe_once(self) -> None:
        checks: dict[str, Any] = {}
        if self._engine is not None:
            checks["database"] = self._database
        if self._redis is not None:
            checks["redis"] = self._redis.ping
        for name, check in checks.items():
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    await check()
                self.status[name] = True
            except Exception as exc:
                if self.status.get(name, True):
                    log.warning("health: %s is not answering (%s)", name, type(exc).__name__)
                self.status[name] = False

    async def _run(self) -> None:
        while True:
            await self.probe_once()
            await asyncio.sleep(self._interval_s)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="health-probe")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
