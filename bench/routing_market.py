"""Routing benchmark: a replayable simulated market of five providers.

The question: over an hour of a market where providers' latency drifts and they
suffer outages, hangs and 429s, which routing policy gives the best success rate,
cost and tail time to first token?

Everything runs in-process on a simulated clock, so an hour of traffic replays in
seconds and the same seed gives the same market. The routing is the real thing:
`Router`, `LocalStore`, the policies, breakers and rolling stats from
`router_policies`, fed the simulated clock. Only the upstreams are a model: each
attempt draws its outcome from the provider's state at that simulated instant.

A request may make up to `--max-attempts` attempts within a 10 s deadline; a hang
costs the 4 s first-byte timeout, a 503 or 429 a fast failure (a 429 carries a
Retry-After of 15 s). Hedging starts the next deployment after the first one's
p90 time to first token and keeps the first answer.

Prompt caching: each request comes from one of `--tenants` keys, each with its own
shared system prompt of `SYSTEM_TOKENS` tokens before a `USER_TOKENS` question. A
provider that served a tenant's prompt within `CACHE_TTL_S` bills those system-prompt
tokens at `CACHED_SHARE` of its input price (as providers' prompt caches do); the
router learns each deployment's cache-hit rate from the billed usage and, in the
variants with stickiness, sends a tenant's prompt back to the deployment that served
it last. Cost is what the providers would bill, cached tokens included.

    .venv/bin/python -m bench.routing_market [--requests 20000] [--seed 7] [--tenants 20]
"""

from __future__ import annotations

import argparse
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from providers.errors import ProviderError, UpstreamRateLimited, UpstreamTimeout, UpstreamUnavailable
from providers.types import Usage
from router_policies.breaker import BreakerSettings
from router_policies.deployment import Deployment, ModelGroup
from router_policies.router import ModelRouting, Router
from router_policies.runner import HedgeSettings
from router_policies.store import LocalStore

SYSTEM_TOKENS, USER_TOKENS, COMPLETION_TOKENS = 3000, 300, 200
PROMPT_TOKENS = SYSTEM_TOKENS + USER_TOKENS
CACHED_SHARE = 0.25  # cached prompt tokens cost this fraction of the input price
CACHE_TTL_S = 300.0
FIRST_BYTE_TIMEOUT_S = 4.0
DEADLINE_S = 10.0
RETRY_AFTER_S = 15.0


@dataclass(frozen=True)
class ProviderModel:
    name: str
    price: float  # USD per Mtok, prompt and completion alike
    ttft_s: float  # median time to first token when healthy
    outages_per_hour: float  # 503 episodes
    hangs_per_hour: float  # first-byte timeouts
    limits_per_hour: float  # 429 episodes
    episode_s: float  # mean episode length


PROVIDERS = (
    ProviderModel("budget", 0.10, 0.90, 10, 8, 12, 120),
    ProviderModel("value", 0.15, 0.45, 6, 6, 8, 90),
    ProviderModel("standard", 0.25, 0.30, 4, 3, 5, 60),
    ProviderModel("premium", 0.60, 0.18, 2, 1, 2, 45),
    ProviderModel("flagship", 0.90, 0.15, 1, 0.5, 1, 45),
)


class Market:
    """Each provider's drift and failure episodes over the run, drawn up front from the seed."""

    def __init__(self, seed: int, duration_s: float) -> None:
        rng = random.Random(seed)
        self.episodes: dict[str, list[tuple[float, float, str]]] = {}
        self.drift: dict[str, list[float]] = {}
        for p in PROVIDERS:
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
            self.episodes[p.name] = sorted(episodes)
            walk, level = [], 0.0
            for _ in range(int(duration_s // 10) + 2):  # log-latency random walk, one step per 10 s
                level = max(-0.7, min(1.2, level + rng.gauss(0, 0.12)))
                walk.append(math.exp(level))
            self.drift[p.name] = walk
        self.rng = random.Random(seed + 1)

    def attempt(self, p: ProviderModel, t: float) -> tuple[float, ProviderError | None]:
        """(seconds until first token or failure, the failure)."""
        for start, end, kind in self.episodes[p.name]:
            if start > t:
                break
            if t < end:
                if kind == "hang":
                    return FIRST_BYTE_TIMEOUT_S, UpstreamTimeout("hang", provider=p.name, phase="first_byte")
                if kind == "429":
                    return 0.05, UpstreamRateLimited(
                        "429", provider=p.name, status=429, retry_after_s=RETRY_AFTER_S
                    )
                return 0.1, UpstreamUnavailable("503", provider=p.name, status=503)
        ttft = p.ttft_s * self.drift[p.name][int(t // 10)] * self.rng.lognormvariate(0, 0.35)
        if ttft > FIRST_BYTE_TIMEOUT_S:
            return FIRST_BYTE_TIMEOUT_S, UpstreamTimeout("slow", provider=p.name, phase="first_byte")
        return ttft, None


@dataclass
class Variant:
    label: str
    policy: str
    breaker: bool
    hedge: bool = False
    sticky: bool = False


VARIANTS = (
    Variant("uniform random (LiteLLM default), no breaker", "random", False),
    Variant("inverse-square price (OpenRouter), no breaker", "inverse_price_squared", False),
    Variant("uniform random + our breaker", "random", True),
    Variant("inverse-square price + our breaker", "inverse_price_squared", True),
    Variant("balanced + our breaker", "balanced", True),
    Variant("effective_price (our default), no stickiness", "effective_price", True),
    Variant("effective_price + stickiness", "effective_price", True, sticky=True),
    Variant("effective_price + stickiness + hedging", "effective_price", True, hedge=True, sticky=True),
)


class PromptCaches:
    """Which provider holds which tenant's system prompt in its cache, and until when."""

    def __init__(self) -> None:
        self._until: dict[tuple[str, int], float] = {}
        self.served = self.hits = 0

    def serve(self, provider: str, tenant: int, at: float) -> int:
        """Cached prompt tokens of this answer; the provider's cache then holds the prompt."""
        hit = self._until.get((provider, tenant), -1.0) >= at
        self._until[(provider, tenant)] = at + CACHE_TTL_S
        self.served += 1
        self.hits += hit
        return SYSTEM_TOKENS if hit else 0


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class _Request:
    """One request's world: the market, the provider caches, the router's view, who asks."""

    router: Router
    market: Market
    caches: PromptCaches
    clock: _Clock
    tenant: int
    prefix_key: str | None


def _run_attempt(req: _Request, d: Deployment, at: float) -> tuple[float, bool, float]:
    """(seconds taken, success, USD billed) of one attempt."""
    req.clock.now = at
    req.router.started(d)
    took, error = req.market.attempt(BY_NAME[d.provider], at)
    req.clock.now = at + took
    if error is None:
        cached = req.caches.serve(d.provider, req.tenant, at)
        usage = Usage(PROMPT_TOKENS, COMPLETION_TOKENS, cached_tokens=cached)
        req.router.succeeded(d)
        req.router.finished(d, took * 1000, COMPLETION_TOKENS / 2.0, None, usage)
        if req.prefix_key is not None:
            req.router.store.remember_prefix(req.prefix_key, d.id)
        return took, True, d.cost_of(usage)
    req.router.failed(d, error)
    return took, False, 0.0


def _serve(
    req: _Request, plan: list[Deployment], t0: float, hedge: HedgeSettings
) -> tuple[float | None, float]:
    """Time to first token (None: failed) and the USD billed (a hedge's loser is billed too)."""
    elapsed, billed = 0.0, 0.0
    queue = list(plan)
    while queue and elapsed < DEADLINE_S:
        d = queue.pop(0)
        p90 = req.router.ttft_p90_ms(d)
        delay = max(p90 if p90 is not None else hedge.default_delay_ms, hedge.min_delay_ms) / 1000
        took, ok, cost = _run_attempt(req, d, t0 + elapsed)
        billed += cost
        if hedge.enabled and queue and took > delay:
            second = queue.pop(0)
            took2, ok2, cost2 = _run_attempt(req, second, t0 + elapsed + delay)
            billed += cost2
            finishes = sorted(((took, ok), (delay + took2, ok2)), key=lambda x: (not x[1], x[0]))
            if finishes[0][1]:
                return elapsed + finishes[0][0], billed
            elapsed += max(took, delay + took2)
            continue
        if ok:
            return elapsed + took, billed
        elapsed += took
    return None, billed


BY_NAME = {p.name: p for p in PROVIDERS}


def _deployments() -> tuple[Deployment, ...]:
    return tuple(
        Deployment(
            p.name,
            p.name,
            adapter=None,  # type: ignore[arg-type]
            input_price_per_mtok=p.price,
            output_price_per_mtok=p.price,
            cached_input_price_per_mtok=p.price * CACHED_SHARE,
        )
        for p in PROVIDERS
    )


def run_variant(
    variant: Variant, seed: int, requests: int, rate_per_s: float, max_attempts: int, tenants: int = 1000
) -> dict[str, Any]:
    clock = _Clock()
    breaker = BreakerSettings(3, 10.0, 120.0) if variant.breaker else BreakerSettings(10**9, 0.001, 0.001)
    store = LocalStore(breaker_settings=breaker, clock=clock)
    hedge = HedgeSettings(enabled=variant.hedge, default_delay_ms=1000, min_delay_ms=50)
    router = Router(store, {"m": ModelRouting(policy=variant.policy, hedge=hedge)}, seed=seed)
    deployments = _deployments()
    group = ModelGroup("m", deployments)
    market, caches = Market(seed, requests / rate_per_s + 60), PromptCaches()
    arrivals, who = random.Random(seed + 2), random.Random(seed + 3)
    t, ttfts, cost, ok = 0.0, [], 0.0, 0
    for _ in range(requests):
        t += arrivals.expovariate(rate_per_s)
        clock.now = t
        tenant = who.randrange(tenants)
        key = f"tenant-{tenant}" if variant.sticky else None
        plan = router.plan([group], {}, prefix_key=key).deployments[:max_attempts]
        if not variant.breaker:  # stateless baselines: the breaker never opens, Retry-After is ignored
            for d in deployments:
                store.state(d.id).breaker.open_until = 0.0
        req = _Request(router, market, caches, clock, tenant, key)
        ttft, billed = _serve(req, plan, t, hedge)
        cost += billed
        if ttft is not None:
            ok += 1
            ttfts.append(ttft)
    ttfts.sort()
    return {
        "variant": variant.label,
        "success_rate": ok / requests,
        "cost_per_1k_ok_usd": cost / max(ok, 1) * 1000,
        "prompt_cache_hit_rate": caches.hits / max(caches.served, 1),
        "ttft_p50_s": ttfts[len(ttfts) // 2],
        "ttft_p95_s": ttfts[int(len(ttfts) * 0.95)],
        "ttft_p99_s": ttfts[int(len(ttfts) * 0.99)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=5.0, help="arrivals per simulated second")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-attempts", type=int, default=3)
    parser.add_argument("--tenants", type=int, default=1000, help="keys, each with its own system prompt")
    args = parser.parse_args()
    rows = [
        run_variant(v, args.seed, args.requests, args.rate, args.max_attempts, args.tenants) for v in VARIANTS
    ]
    print(
        f"{args.requests} requests, {args.rate}/s simulated, seed {args.seed}, ≤{args.max_attempts} attempts, "
        f"{DEADLINE_S:g} s deadline, {args.tenants} tenants sharing {SYSTEM_TOKENS}-token system prompts"
    )
    print(
        f"{'variant':<48} {'success':>8} {'$/1k ok':>8} {'cache hit':>9} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7}"
    )
    for r in rows:
        print(
            f"{r['variant']:<48} {r['success_rate']:>8.2%} {r['cost_per_1k_ok_usd']:>8.4f} "
            f"{r['prompt_cache_hit_rate']:>9.1%} "
            f"{r['ttft_p50_s']:>7.3f} {r['ttft_p95_s']:>7.3f} {r['ttft_p99_s']:>7.3f}"
        )
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "routing_market.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
