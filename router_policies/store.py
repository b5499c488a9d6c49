"""The state store: where in-flight counts, rolling stats, breakers and cooldowns live.

`StateStore` is the protocol the router talks to. Besides per-deployment state it
keeps the prompt-cache stickiness table (prefix key → the deployment that served it). Every read the router makes on a
request's path is answered from memory (`state()`, `load()`): scoring must never wait
on the network. `LocalStore` is the whole story for one process; `RedisStore`
(redis_store.py) extends it by syncing with Redis in the background, so every replica
sees the others' samples, in-flight counts, breakers (and who probes a half-open one),
upstream rate-limit readings and vLLM load.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from providers.types import RateLimitInfo, Usage
from router_policies.breaker import BreakerSettings, CircuitBreaker
from router_policies.stats import DEFAULT_WINDOW_S, Clock, RateLimitState, RollingWindow, Sample, ServerLoad
from router_policies.stickiness import StickyTable


@dataclass(slots=True)
class DeploymentState:
    window: RollingWindow
    breaker: CircuitBreaker
    in_flight: int = 0  # this replica's
    remote_in_flight: int = 0  # every other replica's, as of the last sync
    rate_limit: RateLimitState | None = None
    pending: list[Sample] = field(default_factory=list)  # not yet shared

    @property
    def total_in_flight(self) -> int:
        return self.in_flight + self.remote_in_flight


class StateStore(Protocol):
    breaker_settings: BreakerSettings

    def now(self) -> float: ...

    def state(self, deployment_id: str) -> DeploymentState: ...

    def track(self, deployment_ids: Iterable[str]) -> None: ...

    def load(self, provider: str) -> ServerLoad | None: ...

    def set_load(self, provider: str, load: ServerLoad) -> None: ...

    async def claim_scrape(self, provider: str, ttl_s: float) -> bool: ...

    async def release_scrape(self, provider: str) -> None: ...

    def started(self, deployment_id: str) -> None: ...

    def succeeded(self, deployment_id: str) -> None: ...

    def failed(self, deployment_id: str, retry_after_s: float | None, reason: str, counts: bool) -> None: ...

    def finished(
        self,
        deployment_id: str,
        ttft_ms: float,
        tokens_per_s: float | None,
        rate_limit: RateLimitInfo | None,
        usage: Usage | None = None,
        in_flight: int | None = None,
    ) -> None: ...

    def cancelled(self, deployment_id: str) -> None: ...

    def sticky(self, prefix_key: str) -> str | None: ...

    def remember_prefix(self, prefix_key: str, deployment_id: str) -> None: ...

    def describe(self) -> dict[str, object]: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class LocalStore:
    """In-process state: exact, fast, and private to this replica."""

    kind = "local"

    def __init__(
        self,
        breaker_settings: BreakerSettings | None = None,
        window_s: float = DEFAULT_WINDOW_S,
        clock: Clock = time.time,
        share_samples: bool = False,
    ) -> None:
        self.breaker_settings = breaker_settings or BreakerSettings()
        self.window_s = window_s
        self._clock = clock
        self._share = share_samples
        self._states: dict[str, DeploymentState] = {}
        self._loads: dict[str, ServerLoad] = {}
        self._sticky = StickyTable()

    def now(self) -> float:
        return self._clock()

    def state(self, deployment_id: str) -> DeploymentState:
        state = self._states.get(deployment_id)
        if state is None:
            state = DeploymentState(
                RollingWindow(self.window_s, clock=self._clock), CircuitBreaker(self.breaker_settings)
            )
            self._states[deployment_id] = state
            self._created(state)
        return state

    def _created(self, state: DeploymentState) -> None:
        """Hook for stores that configure new state (the Redis store shares its breaker)."""

    def track(self, deployment_ids: Iterable[str]) -> None:
        """Create state for these deployments up front (the Redis store syncs them all)."""
        for ident in deployment_ids:
            self.state(ident)

    def states(self) -> dict[str, DeploymentState]:
        return self._states

    def load(self, provider: str) -> ServerLoad | None:
        return self._loads.get(provider)

    def set_load(self, provider: str, load: ServerLoad) -> None:
        self._loads[provider] = load

    async def claim_scrape(self, provider: str, ttl_s: float) -> bool:
        """Should this replica read `provider`'s /metrics now? Alone, always."""
        return True

    async def release_scrape(self, provider: str) -> None:
        return None

    def started(self, deployment_id: str) -> None:
        state = self.state(deployment_id)
        state.in_flight += 1
        state.breaker.on_attempt(self._clock())

    def succeeded(self, deployment_id: str) -> None:
        self.state(deployment_id).breaker.on_success()

    def failed(self, deployment_id: str, retry_after_s: float | None, reason: str, counts: bool) -> None:
        state = self.state(deployment_id)
        state.in_flight = max(0, state.in_flight - 1)
        if not counts:
            state.breaker.on_release()
            return
        now = self._clock()
        self._add(state, Sample(now, ok=False))
        if state.breaker.on_failure(now, retry_after_s, reason):
            self.breaker_opened(deployment_id, state)

    def finished(
        self,
        deployment_id: str,
        ttft_ms: float,
        tokens_per_s: float | None,
        rate_limit: RateLimitInfo | None,
        usage: Usage | None = None,
        in_flight: int | None = None,
    ) -> None:
        """An answer ended; `in_flight` is how many others were in flight when it was sent."""
        state = self.state(deployment_id)
        state.in_flight = max(0, state.in_flight - 1)
        now = self._clock()
        tokens = (-1, 0, 0)
        if usage is not None and not usage.estimated:
            tokens = (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens)
        load = -1 if in_flight is None else max(0, in_flight)
        self._add(state, Sample(now, True, ttft_ms, tokens_per_s, *tokens, in_flight=load))
        if rate_limit is not None and not rate_limit.is_empty():
            state.rate_limit = RateLimitState(rate_limit, now)

    def cancelled(self, deployment_id: str) -> None:
        state = self.state(deployment_id)
        state.in_flight = max(0, state.in_flight - 1)
        state.breaker.on_release()

    def sticky(self, prefix_key: str) -> str | None:
        """The deployment that last served this prompt prefix, while its cache is likely warm."""
        return self._sticky.get(prefix_key, self._clock())

    def remember_prefix(self, prefix_key: str, deployment_id: str) -> None:
        self._sticky.put(prefix_key, deployment_id, self._clock())

    def _add(self, state: DeploymentState, sample: Sample) -> None:
        state.window.add(sample)
        if self._share:
            state.pending.append(sample)
            if len(state.pending) > 1024:  # the store is away: keep memory bounded
                del state.pending[:512]

    def breaker_opened(self, deployment_id: str, state: DeploymentState) -> None:
        """Hook for stores that share openings; the local store has nothing more to do."""

    def describe(self) -> dict[str, object]:
        return {"kind": self.kind}

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
