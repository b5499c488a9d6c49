"""Wiring for keys, limits and the ledger: built at start-up, consulted on every request.

`open_accounts` migrates the database, opens the engine, starts the ledger writer and
registers it and the limiter as record sinks. `AccountsMiddleware` resolves a bearer
token that is not the admin key to a virtual key (from the key cache) before any
route runs, so `auth.authenticate` stays synchronous; it also adds the rate-limit
headers of an admitted request to its response. `admit` is the one call a route
makes before routing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth import Principal, bearer_token
from gateway.db.engine import make_engine, upgrade
from gateway.errors import GatewayError, error_response
from gateway.keys import KeyCache, KeyRecord, KeyStore, KeyUnavailable
from gateway.ledger import LedgerWriter, key_spend
from gateway.limits import Limiter, MemoryBackend
from gateway.limits.types import LimitBackend
from gateway.settings import Settings
from gateway.telemetry.tracing import child_span

if TYPE_CHECKING:
    from gateway.runtime import Runtime
    from router_policies.router import Plan

log = logging.getLogger("gateway.accounts")

REVOKED_CHANNEL = "gw:keys:revoked"


@dataclass
class Accounts:
    settings: Settings
    engine: AsyncEngine
    store: KeyStore
    cache: KeyCache
    limiter: Limiter
    ledger: LedgerWriter
    redis: Any = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def lookup(self, secret: str) -> KeyRecord | None:
        return await self.cache.lookup(secret)

    async def revoke(self, key_id: str) -> bool:
        revoked = await self.store.revoke(key_id)
        self.cache.invalidate(key_id)
        if revoked and self.redis is not None:
            try:
                await self.redis.publish(REVOKED_CHANNEL, key_id)
            except Exception as exc:
                log.warning("could not announce revocation of %s: %s", key_id, exc)
        return revoked

    async def _listen_for_revocations(self) -> None:
        """Other replicas (and the CLI) announce revocations; drop those keys from the cache."""
        delay = 0.5
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(REVOKED_CHANNEL)
                    delay = 0.5
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            data = message["data"]
                            self.cache.invalidate(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("revocation listener: %s; reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)

    async def aclose(self) -> None:
        await self.limiter.drain(timeout_s=5.0)
        await self.ledger.aclose(timeout_s=10.0)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.limiter.backend.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()


def spool_dir(settings: Settings) -> Path:
    return settings.ledger_spool_dir or Path("./data/ledger-spool")


async def open_accounts(runtime: Runtime) -> Accounts:
    """Migrate, connect and start; registers the sinks and the closer on `runtime`."""
    settings = runtime.settings
    if settings.migrate_on_start:
        await asyncio.to_thread(upgrade, settings.database_url)
    engine = make_engine(settings.database_url)
    store = KeyStore(engine)
    backend: LimitBackend = MemoryBackend()
    redis = None
    if settings.redis_url:
        import redis.asyncio as aioredis

        from gateway.limits.redis_store import RedisBackend

        backend = RedisBackend(settings.redis_url)
        redis = aioredis.from_url(settings.redis_url, socket_connect_timeout=2)
    limiter = Limiter(
        backend,
        lambda key_id, since: key_spend(engine, key_id, since),
        default_completion_tokens=settings.default_max_tokens,
    )
    ledger = LedgerWriter(
        engine,
        spool_dir(settings),
        settings.database_url,
        memory_rows=settings.ledger_memory_rows,
        flush_interval_s=settings.ledger_flush_interval_s,
    )
    cache = KeyCache(store.by_hash, ttl_s=settings.key_cache_ttl_s)
    accounts = Accounts(settings, engine, store, cache, limiter, ledger, redis)
    ledger.start()
    if redis is not None:
        accounts._tasks.append(asyncio.get_running_loop().create_task(accounts._listen_for_revocations()))
    runtime.sinks.extend([ledger, limiter])
    runtime.closers.append(accounts.aclose)
    return accounts


def plan_prices(plan: Plan) -> tuple[float, float]:
    """The dearest input and output prices among every deployment the plan may try.

    A request can end on any of them (failover, a `models` fallback), so its budget
    reservation must cover the worst one, not the first model's.
    """
    deployments = plan.deployments or [d for g in plan.groups for d in g.deployments]
    return (
        max((d.input_price_per_mtok for d in deployments), default=0.0),
        max((d.output_price_per_mtok for d in deployments), default=0.0),
    )


async def admit(
    request: Request, runtime: Runtime, principal: Principal, plan: Plan, body: dict[str, Any]
) -> None:
    """After planning, before anything is sent: allow-list for every model the plan can
    reach (403), rpm/tpm (429), budget (402); reserves the budget and the tokens."""
    accounts: Accounts | None = getattr(runtime, "accounts", None)
    if accounts is None:
        return
    models = [g.name for g in plan.groups]
    admission = await accounts.limiter.admit(
        principal.key, models, body, request.state.request_id, plan_prices(plan)
    )
    request.state.admission = admission


class AccountsMiddleware:
    """Resolves virtual keys before routing and stamps rate-limit headers on admitted responses."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self._admin_key = (
            settings.admin_key.get_secret_value().encode()
            if settings.auth_enabled and settings.admin_key
            else None
        )

    def _accounts(self, scope: Scope) -> Accounts | None:
        runtime = getattr(getattr(self.app, "state", None), "runtime", None)
        return getattr(runtime, "accounts", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(("/v1/", "/admin/")):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        accounts = self._accounts(scope)
        token = bearer_token(Request(scope))
        if (
            accounts is not None
            and token
            and not (self._admin_key and hmac.compare_digest(token.encode(), self._admin_key))
        ):
            try:
                with child_span("gateway.auth"):
                    state["virtual_key"] = await accounts.lookup(token)
            except KeyUnavailable:
                await error_response(
                    GatewayError(503, "key store unavailable; retry shortly", code="key_store_unavailable")
                )(scope, receive, send)
                return
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                admission = state.get("admission")
                if admission is not None and admission.headers:
                    extra = [(k.encode(), v.encode()) for k, v in admission.headers.items()]
                    message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            if accounts is not None and status != 200 and state.get("admission") is not None:
                accounts.limiter.release(state["request_id"])
