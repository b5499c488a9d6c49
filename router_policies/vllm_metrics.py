"""Load of self-hosted vLLM servers, scraped from their Prometheus `/metrics`.

vLLM queues requests once its running batch is full, so `vllm:num_requests_waiting`
above zero (or a nearly full KV cache) means the server is at capacity: the router
then treats it as busy and sends new requests to the cloud before the queue grows.
A background task per gateway reads every server on an interval; the request path
only reads the last values from the state store. With many replicas sharing a Redis
store, one replica at a time reads each server (the store's scrape lease, held for
three intervals and renewed on each) and the others take its reading from the store;
a replica that cannot reach the server gives the lease up so another may try. Both the older
(`gpu_cache_usage_perc`) and newer (`kv_cache_usage_perc`) gauge names are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from providers.errors import ProviderError
from providers.transport import Transport
from providers.types import Timeouts
from router_policies.stats import ServerLoad
from router_policies.store import StateStore

log = logging.getLogger("router_policies.vllm_metrics")

_WAITING = "vllm:num_requests_waiting"
_RUNNING = "vllm:num_requests_running"
_KV = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
_TIMEOUTS = Timeouts(
    connect_timeout_ms=1000, first_byte_timeout_ms=2000, idle_timeout_ms=2000, total_timeout_ms=3000
)


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text → metric name → value summed over label sets (one server, many models)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name_part, _, value_part = line.rpartition(" ")
        name = name_part.split("{", 1)[0].strip()
        if not name.startswith("vllm:"):
            continue
        try:
            value = float(value_part)
        except ValueError:
            continue
        values[name] = values.get(name, 0.0) + value
    return values


def server_load(values: dict[str, float], at: float) -> ServerLoad:
    kv = next((values[name] for name in _KV if name in values), 0.0)
    return ServerLoad(
        waiting=values.get(_WAITING, 0.0), running=values.get(_RUNNING, 0.0), kv_cache_usage=kv, at=at
    )


@dataclass(frozen=True, slots=True)
class MetricsTarget:
    provider: str
    url: str
    transport: Transport
    headers: dict[str, str]


class MetricsScraper:
    """Reads every target each `interval_s`, forever, until `aclose()`."""

    def __init__(self, targets: list[MetricsTarget], store: StateStore, interval_s: float = 2.0) -> None:
        self.targets = targets
        self.store = store
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._failing: set[str] = set()

    def start(self) -> None:
        if self.targets and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="vllm-metrics")

    async def scrape_once(self) -> None:
        await asyncio.gather(*(self._scrape(t) for t in self.targets))

    async def _scrape(self, target: MetricsTarget) -> None:
        if not await self.store.claim_scrape(target.provider, max(3 * self.interval_s, 2.0)):
            return  # another replica reads this server and shares its reading
        if not await self._read(target):
            await self.store.release_scrape(target.provider)

    async def _read(self, target: MetricsTarget) -> bool:
        try:
            response = await target.transport.get(target.url, target.headers, _TIMEOUTS, target.provider)
            if response.status != 200:
                raise ProviderError(f"/metrics answered {response.status}", provider=target.provider)
            values = parse_metrics(response.body.decode("utf-8", "replace"))
        except ProviderError as error:
            if target.provider not in self._failing:
                log.warning("cannot read load of %s from %s: %s", target.provider, target.url, error)
                self._failing.add(target.provider)
            return False
        if target.provider in self._failing:
            log.info("reading load of %s again", target.provider)
            self._failing.discard(target.provider)
        self.store.set_load(target.provider, server_load(values, self.store.now()))
        return True

    async def _run(self) -> None:
        while True:
            try:
                await self.scrape_once()
            except Exception:
                log.exception("vLLM metrics scrape failed")
            await asyncio.sleep(self.interval_s)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
