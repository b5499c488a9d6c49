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

    .venv/bin/python -m bench.routing_market [--requests 20000] [--seed 7]
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
from router_policies.breaker import BreakerSettings
from router_policies.deployment import Deployment, ModelGroup
from router_policies.router import ModelRouting, Router
from router_policies.runner import HedgeSettings
from router_policies.store import LocalStore

PROMPT_TOKENS, COMPLETION_TOKENS = 1000, 200
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


VARIANTS = (
    Variant("uniform random (LiteLLM default), no breaker", "random", False),
    Variant("inverse-square price (OpenRouter), no breaker", "inverse_price_squared", False),
    Variant("uniform random + our breaker", "random", True),
    Variant("inverse-square price + our breaker", "inverse_price_squared", True),
    Variant("balanced (our default)", "balanced", True),
    Variant("balanced + hedging", "balanced", True, hedge=True),
)


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _run_attempt(
    router: Router, market: Market, d: Deployment, at: float, clock: _Clock
) -> tuple[float, bool]:
    clock.now = at
    router.started(d)
    took, error = market.attempt(BY_NAME[d.provider], at)
    clock.now = at + took
    if error is None:
        router.succeeded(d)
        router.finished(d, took * 1000, COMPLETION_TOKENS / 2.0, None)
        return took, True
    router.failed(d, error)
    return took, False


def _serve(
    router: Router, market: Market, plan: list[Deployment], t0: float, hedge: HedgeSettings, clock: _Clock
) -> tuple[float | None, Deployment | None]:
    """Time to first token (None: failed) and the deployment that answered."""
    elapsed = 0.0
    queue = list(plan)
    while queue and elapsed < DEADLINE_S:
        d = queue.pop(0)
        p90 = router.ttft_p90_ms(d)
        delay = max(p90 if p90 is not None else hedge.default_delay_ms, hedge.min_delay_ms) / 1000
        took, ok = _run_attempt(router, market, d, t0 + elapsed, clock)
        if hedge.enabled and queue and took > delay:
            second = queue.pop(0)
            took2, ok2 = _run_attempt(router, market, second, t0 + elapsed + delay, clock)
            finishes = sorted(((took, ok, d), (delay + took2, ok2, second)), key=lambda x: (not x[1], x[0]))
            if finishes[0][1]:
                return elapsed + finishes[0][0], finishes[0][2]
            elapsed += max(took, delay + took2)
            continue
        if ok:
            return elapsed + took, d
        elapsed += took
    return None, None


BY_NAME = {p.name: p for p in PROVIDERS}


def run_variant(
    variant: Variant, seed: int, requests: int, rate_per_s: float, max_attempts: int
) -> dict[str, Any]:
    clock = _Clock()
    breaker = BreakerSettings(3, 10.0, 120.0) if variant.breaker else BreakerSettings(10**9, 0.001, 0.001)
    store = LocalStore(breaker_settings=breaker, clock=clock)
    hedge = HedgeSettings(enabled=variant.hedge, default_delay_ms=1000, min_delay_ms=50)
    router = Router(store, {"m": ModelRouting(policy=variant.policy, hedge=hedge)}, seed=seed)
    deployments = tuple(
        Deployment(p.name, p.name, adapter=None, input_price_per_mtok=p.price, output_price_per_mtok=p.price)  # type: ignore[arg-type]
        for p in PROVIDERS
    )
    group = ModelGroup("m", deployments)
    market = Market(seed, requests / rate_per_s + 60)
    arrivals = random.Random(seed + 2)
    t, ttfts, cost, ok = 0.0, [], 0.0, 0
    for _ in range(requests):
        t += arrivals.expovariate(rate_per_s)
        clock.now = t
        plan = router.plan([group], {}).deployments[:max_attempts]
        if not variant.breaker:  # stateless baselines: the breaker never opens, Retry-After is ignored
            for d in deployments:
                store.state(d.id).breaker.open_until = 0.0
        ttft, answered = _serve(router, market, plan, t, hedge, clock)
        if ttft is not None and answered is not None:
            ok += 1
            ttfts.append(ttft)
            cost += answered.cost_usd(PROMPT_TOKENS, COMPLETION_TOKENS)
    ttfts.sort()
    return {
        "variant": variant.label,
        "success_rate": ok / requests,
        "cost_per_1k_ok_usd": cost / max(ok, 1) * 1000,
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
    args = parser.parse_args()
    rows = [run_variant(v, args.seed, args.requests, args.rate, args.max_attempts) for v in VARIANTS]
    print(
        f"{args.requests} requests, {args.rate}/s simulated, seed {args.seed}, ≤{args.max_attempts} attempts, {DEADLINE_S:g} s deadline"
    )
    print(f"{'variant':<48} {'success':>8} {'$/1k ok':>8} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7}")
    for r in rows:
        print(
            f"{r['variant']:<48} {r['success_rate']:>8.2%} {r['cost_per_1k_ok_usd']:>8.4f} "
            f"{r['ttft_p50_s']:>7.3f} {r['ttft_p95_s']:>7.3f} {r['ttft_p99_s']:>7.3f}"
        )
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "routing_market.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
