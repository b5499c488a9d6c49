"""The state store shared through Redis, for many replicas behind one load balancer.

Reads on a request's path never touch the network: they come from the local state
this class inherits. A background task syncs every `sync_interval_s` in one
pipelined round trip: it pushes this replica's new samples and in-flight counts and
reads back every replica's samples, in-flight counts and breaker openings. A breaker
that opens here is also published at once (fire and forget, bounded by a timeout),
so other replicas stop sending to that deployment within one sync interval.

If Redis goes away the replica keeps routing on its local state, logs it once, and
keeps trying on every sync; when Redis answers again it logs that and shares again.
Recovery is per replica: each one's breaker half-opens and probes on its own.

Keys (prefix `gw` by default): `…:samples:<deployment>` (list of encoded samples,
trimmed and expiring with the window), `…:inflight:<deployment>` (hash: replica →
"count|time"), `…:breaker:<deployment>` ("open_until|reason", expiring when it closes),
`…:sticky` (a stream of prompt-prefix → deployment answers, capped in length: each
sync appends this replica's new ones and reads those added since its last read, so a
prompt cached through one replica is steered there by all).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from router_policies.stats import DEFAULT_MAX_SAMPLES, Sample
from router_policies.stickiness import MAX_ENTRIES
from router_policies.store import DeploymentState, LocalStore

log = logging.getLogger("router_policies.redis_store")

_FAILURES = (RedisError, OSError, TimeoutError)


class RedisStore(LocalStore):
    kind = "redis"

    def __init__(
        self,
        url: str,
        prefix: str = "gw",
        sync_interval_s: float = 0.25,
        op_timeout_s: float = 0.25,
        **local: Any,
    ) -> None:
        super().__init__(share_samples=True, **local)
        self.url = url
        self.prefix = prefix
        self.sync_interval_s = sync_interval_s
        self.op_timeout_s = op_timeout_s
        self.replica = uuid.uuid4().hex[:12]
        self.healthy: bool | None = None  # None until the first sync
        self._redis = aioredis.from_url(
            url, socket_timeout=op_timeout_s, socket_connect_timeout=op_timeout_s, decode_responses=True
        )
        self._unpublished: set[str] = set()
        self._publishing: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._known: set[str] = set()
        self._sticky_pending: list[tuple[str, str, float]] = []
        self._sticky_seen = ""  # the last stream id read

    def track(self, deployment_ids: Iterable[str]) -> None:
        """Deployments to sync even before this replica has used them."""
        for ident in deployment_ids:
            self._known.add(ident)
            self.state(ident)

    def _key(self, kind: str, ident: str) -> str:
        return f"{self.prefix}:{kind}:{ident}"

    # -- prompt-cache stickiness: appended and read on each sync ------------------------------

    def remember_prefix(self, prefix_key: str, deployment_id: str) -> None:
        super().remember_prefix(prefix_key, deployment_id)
        self._sticky_pending.append((prefix_key, deployment_id, self.now()))
        if len(self._sticky_pending) > 4096:  # the store is away: keep memory bounded
            del self._sticky_pending[:2048]

    def _queue_sticky(self, pipe: Any) -> int:
        key = f"{self.prefix}:sticky"
        taken = len(self._sticky_pending)
        for prefix_key, ident, at in self._sticky_pending:
            pipe.xadd(
                key, {"k": prefix_key, "d": ident, "t": f"{at:.3f}"}, maxlen=MAX_ENTRIES, approximate=True
            )
        since = f"({self._sticky_seen}" if self._sticky_seen else "-"
        pipe.xrevrange(key, max="+", min=since, count=2048)
        return taken

    def _apply_sticky(self, entries: list[Any]) -> None:
        for entry_id, fields in reversed(entries or []):
            try:
                self._sticky.put(fields["k"], fields["d"], float(fields["t"]))
            except (KeyError, ValueError):
                continue
            self._sticky_seen = entry_id

    # -- breaker openings: published at once ---------------------------------------------

    def breaker_opened(self, deployment_id: str, state: DeploymentState) -> None:
        self._unpublished.add(deployment_id)
        if self.healthy is not False and (self._publishing is None or self._publishing.done()):
            with contextlib.suppress(RuntimeError):  # no running loop: the next sync publishes
                self._publishing = asyncio.get_running_loop().create_task(self._publish_now())

    def _queue_breakers(self, pipe: Any) -> list[str]:
        now = self.now()
        sent = []
        for ident in list(self._unpublished):
            breaker = self.state(ident).breaker
            ttl_ms = int((breaker.open_until - now) * 1000)
            if ttl_ms > 0:
                pipe.set(self._key("breaker", ident), f"{breaker.open_until:.3f}|{breaker.reason}", px=ttl_ms)
            sent.append(ident)
        return sent

    async def _publish_now(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        sent = self._queue_breakers(pipe)
        try:
            await asyncio.wait_for(pipe.execute(), self.op_timeout_s)
        except _FAILURES as error:
            self._went_away(error)
            return
        self._unpublished.difference_update(sent)

    # -- the background sync ---------------------------------------------------------------

    def _queue_sync(self, pipe: Any, idents: list[str]) -> dict[str, int]:
        now = self.now()
        taken: dict[str, int] = {}
        window_ms = int(self.window_s * 1000)
        for ident in idents:
            state = self.state(ident)
            if state.pending:
                key = self._key("samples", ident)
                taken[ident] = len(state.pending)
                pipe.rpush(key, *(s.encode() for s in state.pending))
                pipe.ltrim(key, -DEFAULT_MAX_SAMPLES, -1)
                pipe.pexpire(key, window_ms)
            key = self._key("inflight", ident)
            pipe.hset(key, self.replica, f"{state.in_flight}|{now:.3f}")
            pipe.pexpire(key, 60_000)
        for ident in idents:
            pipe.lrange(self._key("samples", ident), 0, -1)
            pipe.hgetall(self._key("inflight", ident))
            pipe.get(self._key("breaker", ident))
        return taken

    def _apply(self, idents: list[str], results: list[Any]) -> None:
        now = self.now()
        fresh_s = max(3 * self.sync_interval_s, 2.0)
        reads = results[len(results) - 3 * len(idents) :]
        for i, ident in enumerate(idents):
            samples, inflight, breaker = reads[3 * i : 3 * i + 3]
            state = self.state(ident)
            state.window.replace(s for s in map(Sample.decode, samples) if s is not None)
            remote = 0
            for replica, value in (inflight or {}).items():
                count, _, at = value.partition("|")
                if replica != self.replica and at and now - float(at) < fresh_s:
                    remote += int(count)
            state.remote_in_flight = remote
            if breaker:
                until, _, reason = breaker.partition("|")
                state.breaker.adopt(float(until), f"{reason} (seen by another replica)")

    async def sync_once(self) -> bool:
        """One pipelined round trip; False (and local state only) when Redis is away."""
        idents = sorted(self._known | set(self.states()))
        pipe = self._redis.pipeline(transaction=False)
        published = self._queue_breakers(pipe)
        taken = self._queue_sync(pipe, idents)
        sticky_taken = self._queue_sticky(pipe)
        try:
            results = await asyncio.wait_for(pipe.execute(), self.op_timeout_s)
        except _FAILURES as error:
            self._went_away(error)
            return False
        self._unpublished.difference_update(published)
        for ident, count in taken.items():
            del self.state(ident).pending[:count]
        del self._sticky_pending[:sticky_taken]
        self._apply(idents, results[:-1])
        self._apply_sticky(results[-1])
        if self.healthy is not True:
            log.info(
                "Redis at %s reachable: routing state is shared (replica %s)", self._safe_url(), self.replica
            )
        self.healthy = True
        return True

    def _went_away(self, error: BaseException) -> None:
        if self.healthy is not False:
            log.warning(
                "Redis at %s unreachable (%s): routing on this replica's local state until it returns",
                self._safe_url(),
                type(error).__name__,
            )
        self.healthy = False

    def _safe_url(self) -> str:
        """The URL without credentials, for logs."""
        scheme, sep, rest = self.url.partition("://")
        return f"{scheme}{sep}{rest.rpartition('@')[2]}"

    async def _run(self) -> None:
        while True:
            try:
                await self.sync_once()
            except Exception:
                log.exception("routing state sync failed")
            await asyncio.sleep(self.sync_interval_s)

    async def start(self) -> None:
        await self.sync_once()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="routing-state-sync")

    async def aclose(self) -> None:
        for task in (self._task, self._publishing):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(*_FAILURES):
            await self._redis.aclose()

    def describe(self) -> dict[str, object]:
        return {"kind": self.kind, "healthy": self.healthy, "replica": self.replica}
