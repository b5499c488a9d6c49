"""The state store shared through Redis, for many replicas behind one load balancer.

Reads on a request's path never touch the network: they come from the local state
this class inherits. A background task syncs every `sync_interval_s` in one
pipelined round trip: it pushes this replica's new samples, in-flight counts and
upstream readings, and reads back every replica's. A breaker that opens or closes
here is also published at once (fire and forget, bounded by a timeout), so other
replicas follow within one sync interval.

What is shared, and how:
- Samples and in-flight counts: each replica's, summed or merged by every other.
- Breakers (shared_breakers.py): an opening (a 429/503's Retry-After included) is seen by
  all. When its time is up one replica takes the probe lease (`SET NX PX`, renewed while
  the probe is out, so it lapses if the prober dies) and sends the one probe; the others
  keep the deployment open until its result arrives — success closes it everywhere,
  failure opens it everywhere again with the next back-off.
- Upstream rate limits (`x-ratelimit-*`): the newest reading per deployment, with its
  time, so its reset expires it for everyone; a replica that never called a deployment
  still steers away from a nearly spent limit.
- vLLM load: one replica at a time scrapes each server (a lease per provider, taken by
  the scraper each interval and given up when the scrape fails) and publishes the
  reading; the others read it. Scraping once instead of N times keeps N replicas off the
  server's own /metrics handler, which runs in the process that serves tokens, and
  every replica decides on the same reading.
- Prompt-cache stickiness: see the `sticky` key below.

If Redis goes away the replica keeps routing on its local state (and its breakers
probe on their own again), logs it once, and keeps trying on every sync; when Redis
answers again it logs that and shares again.

Keys (prefix `gw` by default): `…:samples:<deployment>` (list of encoded samples,
trimmed and expiring with the window), `…:inflight:<deployment>` (hash: replica →
"count|time"), `…:breaker:<deployment>` ("open_until|openings|reason", expiring when it
closes), `…:probe:<deployment>` (the probe lease: the replica holding it),
`…:closed:<deployment>` (when a probe last succeeded), `…:ratelimit` (hash: deployment →
"time|reading"), `…:load` (hash: provider → "time|waiting|running|kv"),
`…:scraper:<provider>` (the scrape lease), `…:sticky` (a stream of prompt-prefix →
deployment answers, capped in length: each sync appends this replica's new ones and
reads those added since its last read, so a prompt cached through one replica is
steered there by all).
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

from providers.types import RateLimitInfo, Usage
from router_policies import shared_state as wire
from router_policies.shared_breakers import SharedBreakers, adopt
from router_policies.stats import DEFAULT_MAX_SAMPLES, Sample, ServerLoad
from router_policies.stickiness import MAX_ENTRIES
from router_policies.store import DeploymentState, LocalStore

log = logging.getLogger("router_policies.redis_store")

_FAILURES = (RedisError, OSError, TimeoutError)
READINGS_TTL_MS = 600_000  # the reading hashes outlive any reset window worth steering by
_PER_IDENT = 3  # reads per deployment in a sync: samples, in-flight, opening


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
        # The probe lease: long enough to be renewed several times by a live prober, short
        # enough that a dead one holds the others back for a moment only.
        self.breakers = SharedBreakers(prefix, self.replica, lease_s=max(2.0, 4 * sync_interval_s))
        self.healthy: bool | None = None  # None until the first sync
        self._redis = aioredis.from_url(
            url, socket_timeout=op_timeout_s, socket_connect_timeout=op_timeout_s, decode_responses=True
        )
        self._limits_pending: set[str] = set()
        self._loads_pending: set[str] = set()
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

    def _created(self, state: DeploymentState) -> None:
        state.breaker.shared = self.healthy is True

    # -- what the request path reports: noted in memory, sent by the sync ------------------

    def succeeded(self, deployment_id: str) -> None:
        breaker = self.state(deployment_id).breaker
        was_open, had_lease = breaker.open_until != 0.0, breaker.lease
        super().succeeded(deployment_id)
        if was_open:
            self.breakers.closed(deployment_id, self.now(), had_lease)
            self._publish_soon()

    def failed(self, deployment_id: str, retry_after_s: float | None, reason: str, counts: bool) -> None:
        breaker = self.state(deployment_id).breaker
        had_lease = breaker.lease
        super().failed(deployment_id, retry_after_s, reason, counts)
        if had_lease and not breaker.lease:
            self.breakers.probe_failed(deployment_id)
            self._publish_soon()

    def finished(
        self,
        deployment_id: str,
        ttft_ms: float,
        tokens_per_s: float | None,
        rate_limit: RateLimitInfo | None,
        usage: Usage | None = None,
        in_flight: int | None = None,
    ) -> None:
        super().finished(deployment_id, ttft_ms, tokens_per_s, rate_limit, usage, in_flight)
        if rate_limit is not None and not rate_limit.is_empty():
            self._limits_pending.add(deployment_id)

    def set_load(self, provider: str, load: ServerLoad) -> None:
        super().set_load(provider, load)
        self._loads_pending.add(provider)

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

    # -- breakers: openings, closings and probe leases published at once -----------------------

    def breaker_opened(self, deployment_id: str, state: DeploymentState) -> None:
        self.breakers.opened(deployment_id)
        self._publish_soon()

    def _publish_soon(self) -> None:
        if self.healthy is not False and (self._publishing is None or self._publishing.done()):
            with contextlib.suppress(RuntimeError):  # no running loop: the next sync publishes
                self._publishing = asyncio.get_running_loop().create_task(self._publish_now())

    async def _publish_now(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        sent = self.breakers.queue_publications(pipe, self.states(), self.now())
        try:
            await asyncio.wait_for(pipe.execute(), self.op_timeout_s)
        except _FAILURES as error:
            self._went_away(error)
            return
        self.breakers.published(sent)

    # -- scraping vLLM /metrics: one replica at a time -----------------------------------------

    async def claim_scrape(self, provider: str, ttl_s: float) -> bool:
        """Take or renew the scrape lease; with Redis away every replica scrapes for itself."""
        try:
            got = await asyncio.wait_for(
                self._redis.eval(
                    wire.CLAIM, 1, self._key("scraper", provider), self.replica, int(ttl_s * 1000)
                ),
                self.op_timeout_s,
            )
        except _FAILURES:
            return True
        return bool(got)

    async def release_scrape(self, provider: str) -> None:
        """Give the lease up (this replica could not read the server): another may do better."""
        with contextlib.suppress(*_FAILURES):
            await asyncio.wait_for(
                self._redis.eval(wire.RELEASE, 1, self._key("scraper", provider), self.replica),
                self.op_timeout_s,
            )

    # -- the background sync ---------------------------------------------------------------

    def _queue_readings(self, pipe: Any) -> tuple[list[str], list[str]]:
        limits = [i for i in self._limits_pending if self.state(i).rate_limit is not None]
        for ident in limits:
            reading = self.state(ident).rate_limit
            assert reading is not None
            at, payload = wire.encode_rate_limit(reading)
            pipe.eval(wire.NEWER, 1, f"{self.prefix}:ratelimit", ident, at, payload, READINGS_TTL_MS)
        loads = [p for p in self._loads_pending if p in self._loads]
        for provider in loads:
            at, payload = wire.encode_load(self._loads[provider])
            pipe.eval(wire.NEWER, 1, f"{self.prefix}:load", provider, at, payload, READINGS_TTL_MS)
        pipe.hgetall(f"{self.prefix}:ratelimit")
        pipe.hgetall(f"{self.prefix}:load")
        return limits, loads

    def _apply_readings(self, idents: set[str], limits: dict[str, str], loads: dict[str, str]) -> None:
        """The newest reading wins, ours or another replica's."""
        for ident, value in (limits or {}).items():
            reading = wire.decode_rate_limit(value) if ident in idents else None
            if reading is not None:
                state = self.state(ident)
                if state.rate_limit is None or reading.at > state.rate_limit.at:
                    state.rate_limit = reading
        for provider, value in (loads or {}).items():
            load = wire.decode_load(value)
            current = self._loads.get(provider)
            if load is not None and (current is None or load.at > current.at):
                self._loads[provider] = load

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
        self.breakers.queue_reads(pipe, idents)
        return taken

    def _apply(self, idents: list[str], reads: list[Any]) -> None:
        now = self.now()
        fresh_s = max(3 * self.sync_interval_s, 2.0)
        openings = reads[2 * len(idents) :]
        for i, ident in enumerate(idents):
            samples, inflight = reads[2 * i : 2 * i + 2]
            state = self.state(ident)
            state.window.replace(s for s in map(Sample.decode, samples) if s is not None)
            remote = 0
            for replica, value in (inflight or {}).items():
                count, _, at = value.partition("|")
                if replica != self.replica and at and now - float(at) < fresh_s:
                    remote += int(count)
            state.remote_in_flight = remote
            adopt(state.breaker, openings[i])

    async def sync_once(self) -> bool:
        """One pipelined round trip; False (and local state only) when Redis is away."""
        idents = sorted(self._known | set(self.states()))
        pipe = self._redis.pipeline(transaction=False)
        published = self.breakers.queue_publications(pipe, self.states(), self.now())
        limits, loads = self._queue_readings(pipe)
        at_hashes = len(pipe) - 2
        taken = self._queue_sync(pipe, idents)
        at_reads = len(pipe) - _PER_IDENT * len(idents)
        due = self.breakers.queue_probes(pipe, self.states(), self.now())
        at_probes = len(pipe) - len(due)
        sticky_taken = self._queue_sticky(pipe)
        try:
            results = await asyncio.wait_for(pipe.execute(), self.op_timeout_s)
        except _FAILURES as error:
            self._went_away(error)
            return False
        self.breakers.published(published)
        self._limits_pending.difference_update(limits)
        self._loads_pending.difference_update(loads)
        for ident, count in taken.items():
            del self.state(ident).pending[:count]
        del self._sticky_pending[:sticky_taken]
        limit_hash, load_hash = results[at_hashes : at_hashes + 2]
        reads = results[at_reads : at_reads + _PER_IDENT * len(idents)]
        probes = results[at_probes : at_probes + len(due)]
        sticky = results[-1]
        self._apply(idents, reads)
        self._apply_readings(set(idents), limit_hash, load_hash)
        self._apply_sticky(sticky)
        self._became_healthy()
        self.breakers.apply_probes(self.states(), due, probes, self.now())
        return True

    def _became_healthy(self) -> None:
        if self.healthy is not True:
            log.info(
                "Redis at %s reachable: routing state is shared (replica %s)", self._safe_url(), self.replica
            )
            self.breakers.share(self.states(), True)
        self.healthy = True

    def _went_away(self, error: BaseException) -> None:
        if self.healthy is not False:
            log.warning(
                "Redis at %s unreachable (%s): routing on this replica's local state until it returns",
                self._safe_url(),
                type(error).__name__,
            )
            self.breakers.share(self.states(), False)
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
