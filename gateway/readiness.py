"""`GET /ready`: whether this process should be sent traffic; `/health` stays plain liveness.

Not ready (503) until every dependency the process is configured with has answered
once — the database always, Redis when `REDIS_URL` is set, Qdrant when `QDRANT_URL`
is set — and not ready again from the moment shutdown begins. Each call probes every
dependency at once, each bounded by `PROBE_TIMEOUT_S`, and the answer lists what
each said.

Once started, a dependency going away does not make the replica unready: the
gateway keeps serving without it (the ledger queues and spools rows, limits fail
open, routing uses the replica's own state), and every replica shares the same
dependencies, so taking them all out of the load balancer at once would turn a
Redis or database outage into a full one. The body still names the failing
dependency, for monitoring.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response

from providers.errors import ProviderError
from providers.types import Timeouts

if TYPE_CHECKING:
    from gateway.runtime import Runtime

PROBE_TIMEOUT_S = 1.0
_QDRANT_TIMEOUTS = Timeouts(
    connect_timeout_ms=PROBE_TIMEOUT_S * 1000,
    first_byte_timeout_ms=PROBE_TIMEOUT_S * 1000,
    idle_timeout_ms=PROBE_TIMEOUT_S * 1000,
    total_timeout_ms=PROBE_TIMEOUT_S * 1000,
)

Probe = Callable[[], Awaitable[None]]


def _database_probe(engine: Any) -> Probe:
    async def probe() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    return probe


def _redis_probe(redis: Any) -> Probe:
    async def probe() -> None:
        await redis.ping()

    return probe


def _qdrant_probe(runtime: Runtime, url: str) -> Probe:
    """Qdrant's own readiness endpoint (unauthenticated), through the pooled upstream transport."""
    target = url.rstrip("/") + "/readyz"
    transport = runtime.pool.for_url(target)

    async def probe() -> None:
        response = await transport.get(target, {}, _QDRANT_TIMEOUTS, "qdrant")
        if response.status != 200:
            raise ProviderError(f"/readyz answered {response.status}", provider="qdrant")

    return probe


class Readiness:
    """The probes of one process, built at start-up; `started` latches once all have answered."""

    def __init__(self, probes: dict[str, Probe]) -> None:
        self.probes = probes
        self.started = False

    @classmethod
    def for_runtime(cls, runtime: Runtime) -> Readiness:
        probes: dict[str, Probe] = {}
        accounts = runtime.accounts
        if accounts is not None:
            probes["database"] = _database_probe(accounts.engine)
            if accounts.redis is not None:
                probes["redis"] = _redis_probe(accounts.redis)
        if runtime.settings.qdrant_url:
            probes["qdrant"] = _qdrant_probe(runtime, runtime.settings.qdrant_url)
        return cls(probes)

    async def _run(self, probe: Probe) -> str:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await probe()
        except Exception as exc:  # any failure means "not answering"; the type says enough
            return f"unavailable ({type(exc).__name__})"
        return "ok"

    async def check(self) -> dict[str, str]:
        results = await asyncio.gather(*(self._run(p) for p in self.probes.values()))
        checks = dict(zip(self.probes, results, strict=True))
        if all(result == "ok" for result in checks.values()):
            self.started = True
        return checks


async def ready(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    if runtime.lifecycle.draining:  # no probing: the answer cannot change any more
        body = orjson.dumps({"status": "shutting_down", "checks": {}})
        return Response(body, status_code=503, media_type="application/json")
    checks = await runtime.readiness.check()
    status = "ready" if runtime.readiness.started else "starting"
    body = orjson.dumps({"status": status, "checks": checks})
    return Response(body, status_code=200 if status == "ready" else 503, media_type="application/json")
