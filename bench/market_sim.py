"""The simulated market behind `bench.routing_market`: providers, their load, failures and caches.

Five providers, each with a price, a median time to first token, a generation speed
and a capacity (concurrent requests). Over a run each provider's latency drifts (a
seeded log-normal random walk, one step per 10 s) and it goes through 503 outages,
hangs (a first-byte timeout) and 429 episodes, cheaper ones more often. Load matters:
every answer occupies its provider from the attempt until its last token; the time to
first token grows with the square of the occupancy, and past capacity a provider
either queues (the wait of the requests ahead) or answers 429 at once.

Outcomes are pure functions of (provider, time, request, current load): `probe` says
what an attempt would give without changing anything, `occupy` books the answer's
time on the provider. So a policy's run and the hindsight oracle see the same
market: the same episodes, drift and per-request noise, each under its own load.

Prompt caches: a provider that served a tenant's system prompt within `CACHE_TTL_S`
bills it at `CACHED_SHARE` of its input price on the next answer.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass

from providers.errors import ProviderError, UpstreamRateLimited, UpstreamTimeout, UpstreamUnavailable

SYSTEM_TOKENS, USER_TOKENS, COMPLETION_TOKENS = 3000, 300, 200
PROMPT_TOKENS = SYSTEM_TOKENS + USER_TOKENS
CACHED_SHARE = 0.25  # cached prompt tokens cost this fraction of the input price
CACHE_TTL_S = 300.0
FIRST_BYTE_TIMEOUT_S = 4.0
RETRY_AFTER_S = 15.0  # a 429 episode's Retry-After
OVERFLOW_RETRY_AFTER_S = 1.0  # a 429 for being over capacity
NOISE_SIGMA = 0.35  # each request's own time-to-first-token noise: log-normal, this sigma


@dataclass(frozen=True)
class ProviderModel:
    name: str
    price: float  # USD per Mtok, prompt and completion alike
    ttft_s: float  # median time to first token when idle and healthy
    outages_per_hour: float  # 503 episodes
    hangs_per_hour: float  # first-byte timeouts
    limits_per_hour: float  # 429 episodes
    episode_s: float  # mean episode length
    capacity: int  # concurrent requests before it queues or refuses
    tokens_per_s: float  # generation speed after the first token
    overflow: str  # past capacity: "queue" or "429"


PROVIDERS = (
    ProviderModel("budget", 0.10, 0.90, 10, 8, 12, 120, 10, 40.0, "429"),
    ProviderModel("value", 0.15, 0.45, 6, 6, 8, 90, 12, 60.0, "429"),
    ProviderModel("standard", 0.25, 0.30, 4, 3, 5, 60, 16, 80.0, "queue"),
    ProviderModel("premium", 0.60, 0.18, 2, 1, 2, 45, 24, 120.0, "queue"),
    ProviderModel("flagship", 0.90, 0.15, 1, 0.5, 1, 45, 32, 150.0, "queue"),
)
BY_NAME = {p.name: p for p in PROVIDERS}
_INDEX = {p.name: i for i, p in enumerate(PROVIDERS)}


def _episodes(rng: random.Random, p: ProviderModel, duration_s: float) -> list[tuple[float, float, str]]:
    episodes = []
    for kind, per_hour in (
        ("503", p.outages_per_hour),
        ("hang", p.hangs_per_hour),
        ("429", p.limits_per_hour),
    ):
        t = 0.0
        while True:
            t += rng.expovariate(per_hour / 3600)
            if t > duration_s:
                break
            episodes.append((t, t + rng.expovariate(1 / p.episode_s), kind))
    return sorted(episodes)


class Market:
    """Episodes and drift drawn up front from the seed; load booked as answers happen."""

    def __init__(self, seed: int, duration_s: float) -> None:
        rng = random.Random(seed)
        self.seed = seed
        self.episodes: dict[str, list[tuple[float, float, str]]] = {}
        self.drift: dict[str, list[float]] = {}
        for p in PROVIDERS:
            self.episodes[p.name] = _episodes(rng, p, duration_s)
            walk, level = [], 0.0
            for _ in range(int(duration_s // 10) + 2):
                level = max(-0.7, min(1.2, level + rng.gauss(0, 0.12)))
                walk.append(math.exp(level))
            self.drift[p.name] = walk
        self.busy: dict[str, deque[tuple[float, float]]] = {p.name: deque() for p in PROVIDERS}

    def active(self, p: ProviderModel, t: float) -> int:
        """Answers in progress on this provider at time t."""
        busy = self.busy[p.name]
        while busy and busy[0][1] < t - 60.0:  # long finished: forget
            busy.popleft()
        return sum(1 for start, end in busy if start <= t < end)

    def _episode(self, p: ProviderModel, t: float) -> str | None:
        for start, end, kind in self.episodes[p.name]:
            if start > t:
                return None
            if t < end:
                return kind
        return None

    def noise(self, p: ProviderModel, request: int) -> float:
        """This request's latency noise at this provider: the same for every policy and the oracle."""
        return random.Random((self.seed * 1_000_003 + request) * 8 + _INDEX[p.name]).lognormvariate(
            0, NOISE_SIGMA
        )

    def probe(self, p: ProviderModel, t: float, request: int) -> tuple[float, ProviderError | None]:
        """(seconds until first token or failure, the failure) of an attempt now, changing nothing."""
        kind = self._episode(p, t)
        if kind == "hang":
            return FIRST_BYTE_TIMEOUT_S, UpstreamTimeout("hang", provider=p.name, phase="first_byte")
        if kind == "429":
            return 0.05, UpstreamRateLimited("429", provider=p.name, status=429, retry_after_s=RETRY_AFTER_S)
        if kind == "503":
            return 0.1, UpstreamUnavailable("503", provider=p.name, status=503)
        active = self.active(p, t)
        wait = 0.0
        if active >= p.capacity:
            if p.overflow == "429":
                return 0.05, UpstreamRateLimited(
                    "over capacity", provider=p.name, status=429, retry_after_s=OVERFLOW_RETRY_AFTER_S
                )
            service_s = p.ttft_s + COMPLETION_TOKENS / p.tokens_per_s
            wait = (active - p.capacity + 1) * service_s / p.capacity
        occupancy = min(active, p.capacity) / p.capacity
        base = p.ttft_s * self.drift[p.name][int(t // 10)] * (1.0 + 1.5 * occupancy**2)
        ttft = wait + base * self.noise(p, request)
        if ttft > FIRST_BYTE_TIMEOUT_S:
            return FIRST_BYTE_TIMEOUT_S, UpstreamTimeout("slow", provider=p.name, phase="first_byte")
        return ttft, None

    def chance_within(self, p: ProviderModel, t: float, limit_s: float) -> float:
        """The probability that an attempt now answers within `limit_s`, knowing the market's
        state (episodes, drift, load) but not the request's own latency noise."""
        if self._episode(p, t) is not None:
            return 0.0
        active = self.active(p, t)
        wait = 0.0
        if active >= p.capacity:
            if p.overflow == "429":
                return 0.0
            wait = (active - p.capacity + 1) * (p.ttft_s + COMPLETION_TOKENS / p.tokens_per_s) / p.capacity
        occupancy = min(active, p.capacity) / p.capacity
        base = p.ttft_s * self.drift[p.name][int(t // 10)] * (1.0 + 1.5 * occupancy**2)
        room = min(limit_s, FIRST_BYTE_TIMEOUT_S) - wait
        if room <= 0:
            return 0.0
        return 0.5 * (1.0 + math.erf(math.log(room / base) / (NOISE_SIGMA * math.sqrt(2.0))))

    def occupy(self, p: ProviderModel, t: float, ttft_s: float) -> None:
        """Book an answer that started at t: it holds the provider until its last token."""
        self.busy[p.name].append((t, t + ttft_s + COMPLETION_TOKENS / p.tokens_per_s))


class PromptCaches:
    """Which provider holds which tenant's system prompt in its cache, and until when."""

    def __init__(self) -> None:
        self._until: dict[tuple[str, int], float] = {}
        self.served = self.hits = 0

    def warm(self, provider: str, tenant: int, at: float) -> bool:
        return self._until.get((provider, tenant), -1.0) >= at

    def serve(self, provider: str, tenant: int, at: float) -> int:
        """Cached prompt tokens of this answer; the provider's cache then holds the prompt."""
        hit = self.warm(provider, tenant, at)
        self._until[(provider, tenant)] = at + CACHE_TTL_S
        self.served += 1
        self.hits += hit
        return SYSTEM_TOKENS if hit else 0
