"""Routing benchmark: policies on a simulated market, measured against a hindsight oracle.

The question: over a market where providers' latency drifts, load slows them down,
capacity runs out (queueing or 429), and outages, hangs and rate limits come and go,
how close does each routing policy get to the cheapest possible routing that still
meets the latency objective, and at what success rate and tail latency?

The market (`bench.market_sim`) runs on a simulated clock, so an hour of traffic
replays in seconds and a seed replays the same market. The routing is the real thing:
`Router`, `LocalStore`, the policies, breakers, rolling stats, targets and
stickiness from `router_policies`, fed the simulated clock and the billed usage.
Requests are played in arrival order; each attempt sees the load booked by the
answers before it, and the router learns of each attempt's start, first token and
end at the simulated time they happen (so it counts what is in flight and sees no
sample before its answer ended). A request may make up to `--max-attempts` attempts within a 10 s
deadline; hedging starts the next deployment after the first one's p90 time to
first token and keeps the first answer (both are billed).

Each request comes from one of `--tenants` keys with its own shared system prompt;
providers cache it for five minutes (see market_sim). The SLO is a time to first
token of at most `SLO_S`. The hindsight oracle, for each request, knowing the whole
market (episodes, drift, the request's own latency noise, its own load and caches),
picks the cheapest deployment that would have answered within the SLO (else the
cheapest that would have answered at all). Since no router can know a request's own
latency noise, a second, fairer reference: the market oracle knows the market's state
(episodes, drift, load, caches) but not that noise, and picks the cheapest deployment
that meets the SLO with 99 % probability.

Reported per policy, mean and spread over `--seeds`: success rate, SLO attainment,
cost per 1k successful requests and its ratio to each oracle's, prompt-cache hit
rate, p95/p99 time to first token. Table on stdout, JSON and a PNG (cost ratio
against SLO attainment) in bench/results/.

    .venv/bin/python -m bench.routing_market [--requests 6000] [--seeds 7,8,9] [--tenants 300]
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.market_sim import (
    BY_NAME,
    CACHED_SHARE,
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    PROVIDERS,
    SYSTEM_TOKENS,
    Market,
    PromptCaches,
)
from providers.types import Usage
from router_policies.breaker import BreakerSettings
from router_policies.deployment import Deployment, ModelGroup
from router_policies.prefs import NO_PREFS, Cutoffs, ProviderPrefs
from router_policies.router import ModelRouting, Router
from router_policies.runner import HedgeSettings
from router_policies.store import LocalStore

DEADLINE_S = 10.0
SLO_S = 2.0  # time to first token
TARGET = ProviderPrefs(preferred_max_latency=Cutoffs(p90=1.5))  # what the targeted variants ask
RESULTS = Path("bench/results")


@dataclass
class Variant:
    label: str
    policy: str
    breaker: bool = True
    hedge: bool = False
    sticky: bool = False
    target: bool = False


VARIANTS = (
    Variant("random, no breaker", "random", breaker=False),
    Variant("inverse-square price, no breaker", "inverse_price_squared", breaker=False),
    Variant("random", "random"),
    Variant("inverse-square price", "inverse_price_squared"),
    Variant("balanced", "balanced"),
    Variant("effective_price (default)", "effective_price"),
    Variant("effective_price + stickiness", "effective_price", sticky=True),
    Variant("effective_price + target", "effective_price", target=True),
    Variant("effective_price + target + stickiness", "effective_price", sticky=True, target=True),
    Variant("effective_price + target + sticky + hedge", "effective_price", True, True, True, True),
)


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


class _Events:
    """What the router is told, at the simulated time it would learn it, applied in time order.

    An attempt's start, its failure or first token, and its last token (when a real gateway
    records the sample) happen at different times, and later requests arrive in between: a
    router planning a request must see the attempts still in flight and must not yet see
    samples from answers that have not finished.
    """

    def __init__(self, clock: _Clock) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0

    @property
    def now(self) -> float:
        return self._clock.now

    def at(self, t: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (t, self._seq, action))
        self._seq += 1

    def until(self, t: float) -> None:
        """Apply everything that happened up to time t."""
        while self._heap and self._heap[0][0] <= t:
            when, _, action = heapq.heappop(self._heap)
            self._clock.now = when
            action()
        self._clock.now = t


@dataclass
class _Request:
    """One request's world: the market, the provider caches, the router's view, who asks."""

    router: Router
    market: Market
    caches: PromptCaches
    events: _Events
    index: int
    tenant: int
    prefix_key: str | None


def _run_attempt(req: _Request, d: Deployment, at: float) -> tuple[float, bool, float]:
    """(seconds to first token or failure, success, USD billed) of one attempt started at `at`."""
    router, p = req.router, BY_NAME[d.provider]
    took, error = req.market.probe(p, at, req.index)
    load: list[int] = []

    def start() -> None:
        router.started(d)
        load.append(router.in_flight(d) - 1)

    if at <= req.events.now:  # the request's first attempt: started now, before any hedge is timed
        start()
    else:
        req.events.at(at, start)
    if error is not None:
        req.events.at(at + took, lambda: router.failed(d, error))
        return took, False, 0.0
    req.market.occupy(p, at, took)
    usage = Usage(
        PROMPT_TOKENS, COMPLETION_TOKENS, cached_tokens=req.caches.serve(d.provider, req.tenant, at)
    )

    def first_token() -> None:
        router.succeeded(d)
        if req.prefix_key is not None:
            router.store.remember_prefix(req.prefix_key, d.id)

    req.events.at(at + took, first_token)
    end = at + took + COMPLETION_TOKENS / p.tokens_per_s
    req.events.at(end, lambda: router.finished(d, took * 1000, p.tokens_per_s, None, usage, load[0]))
    return took, True, d.cost_of(usage)


def _serve(
    req: _Request, plan: list[Deployment], t0: float, hedge: HedgeSettings
) -> tuple[float | None, float]:
    """Time to first token (None: failed) and the USD billed (a hedge's loser is billed too)."""
    elapsed, billed = 0.0, 0.0
    queue = list(plan)
    while queue and elapsed < DEADLINE_S:
        d = queue.pop(0)
        took, ok, cost = _run_attempt(req, d, t0 + elapsed)
        delay = 0.0
        if queue:  # as the runner times a hedge, once the attempt has started
            following = req.router.ttft_p90_ms(queue[0]) if hedge.target_ms is not None else None
            delay = hedge.delay_ms(req.router.ttft_p90_ms(d), following) / 1000
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


def deployments() -> tuple[Deployment, ...]:
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


def workload(seed: int, requests: int, rate_per_s: float, tenants: int) -> list[tuple[float, int]]:
    """(arrival time, tenant) of every request: the same for every policy and the oracle."""
    arrivals, who = random.Random(seed + 2), random.Random(seed + 3)
    t, out = 0.0, []
    for _ in range(requests):
        t += arrivals.expovariate(rate_per_s)
        out.append((t, who.randrange(tenants)))
    return out


def _summary(label: str, n: int, ttfts: list[float], cost: float, caches: PromptCaches) -> dict[str, Any]:
    ttfts.sort()
    ok = len(ttfts)
    pick = (lambda q: ttfts[min(ok - 1, int(ok * q))]) if ok else (lambda q: float("nan"))
    return {
        "variant": label,
        "success_rate": ok / n,
        "slo_attainment": sum(1 for x in ttfts if x <= SLO_S) / n,
        "cost_per_1k_ok_usd": cost / max(ok, 1) * 1000,
        "prompt_cache_hit_rate": caches.hits / max(caches.served, 1),
        "ttft_p50_s": pick(0.5),
        "ttft_p95_s": pick(0.95),
        "ttft_p99_s": pick(0.99),
    }


def run_variant(
    variant: Variant, seed: int, load: list[tuple[float, int]], max_attempts: int = 3
) -> dict[str, Any]:
    clock = _Clock()
    breaker = BreakerSettings(3, 10.0, 120.0) if variant.breaker else BreakerSettings(10**9, 0.001, 0.001)
    store = LocalStore(breaker_settings=breaker, clock=clock)
    hedge = HedgeSettings(enabled=variant.hedge, default_delay_ms=1000, min_delay_ms=50)
    router = Router(store, {"m": ModelRouting(policy=variant.policy, hedge=hedge)}, seed=seed)
    group = ModelGroup("m", deployments())
    market, caches = Market(seed, load[-1][0] + 60), PromptCaches()
    prefs = TARGET if variant.target else NO_PREFS
    ttfts: list[float] = []
    cost = 0.0
    events = _Events(clock)
    for index, (t, tenant) in enumerate(load):
        events.until(t)
        key = f"tenant-{tenant}" if variant.sticky else None
        planned = router.plan([group], {}, prefs, prefix_key=key)
        plan = planned.deployments[:max_attempts]
        if not variant.breaker:  # stateless baselines: the breaker never opens, Retry-After is ignored
            for d in group.deployments:
                store.state(d.id).breaker.open_until = 0.0
        ttft, billed = _serve(
            _Request(router, market, caches, events, index, tenant, key), plan, t, planned.hedge
        )
        cost += billed
        if ttft is not None:
            ttfts.append(ttft)
    return _summary(variant.label, len(load), ttfts, cost, caches)


def _cheapest_first(caches: PromptCaches, tenant: int, t: float) -> list[Deployment]:
    """The deployments by what this tenant's request would cost at each now (warm caches bill less)."""

    def cost(d: Deployment) -> float:
        cached = SYSTEM_TOKENS if caches.warm(d.provider, tenant, t) else 0
        return d.cost_usd(PROMPT_TOKENS, COMPLETION_TOKENS, cached)

    return sorted(deployments(), key=cost)


def run_oracle(seed: int, load: list[tuple[float, int]]) -> dict[str, Any]:
    """Per request, the cheapest deployment that would have met the SLO, knowing the whole market."""
    market, caches = Market(seed, load[-1][0] + 60), PromptCaches()
    ttfts: list[float] = []
    cost = 0.0
    for index, (t, tenant) in enumerate(load):
        outcomes = []
        for d in _cheapest_first(caches, tenant, t):
            took, error = market.probe(BY_NAME[d.provider], t, index)
            if error is None:
                outcomes.append((took > SLO_S, d, took))
        if not outcomes:
            continue
        _, d, took = min(outcomes, key=lambda o: o[0])  # the cheapest within the SLO, else the cheapest
        market.occupy(BY_NAME[d.provider], t, took)
        cost += d.cost_usd(PROMPT_TOKENS, COMPLETION_TOKENS, caches.serve(d.provider, tenant, t))
        ttfts.append(took)
    return _summary("hindsight oracle", len(load), ttfts, cost, caches)


def run_market_oracle(seed: int, load: list[tuple[float, int]], confidence: float = 0.99) -> dict[str, Any]:
    """Per request, the cheapest deployment that meets the SLO with probability `confidence`,
    knowing the whole market (episodes, drift, load, caches) but not the request's own latency
    noise; with none that sure, the likeliest. A failed attempt is followed by the same choice
    among the rest, like a router's retry."""
    market, caches = Market(seed, load[-1][0] + 60), PromptCaches()
    ttfts: list[float] = []
    cost = 0.0
    for index, (t, tenant) in enumerate(load):
        left, elapsed = _cheapest_first(caches, tenant, t), 0.0
        while left and elapsed < DEADLINE_S:
            now = t + elapsed
            chances = [market.chance_within(BY_NAME[d.provider], now, SLO_S - elapsed) for d in left]
            sure = [d for d, c in zip(left, chances, strict=True) if c >= confidence]
            d = sure[0] if sure else max(zip(chances, left, strict=True), key=lambda x: x[0])[1]
            left.remove(d)
            took, error = market.probe(BY_NAME[d.provider], now, index)
            if error is None:
                market.occupy(BY_NAME[d.provider], now, took)
                cost += d.cost_usd(PROMPT_TOKENS, COMPLETION_TOKENS, caches.serve(d.provider, tenant, now))
                ttfts.append(elapsed + took)
                break
            elapsed += took
    return _summary("market oracle (not the request's noise)", len(load), ttfts, cost, caches)


METRICS = (
    "success_rate",
    "slo_attainment",
    "cost_per_1k_ok_usd",
    "cost_ratio",
    "market_cost_ratio",
    "prompt_cache_hit_rate",
    "ttft_p95_s",
    "ttft_p99_s",
)


def aggregate(per_seed: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Mean and standard deviation of every metric over the seeds, per variant."""
    rows = []
    for same in zip(*per_seed, strict=True):
        row: dict[str, Any] = {"variant": same[0]["variant"]}
        for metric in METRICS:
            values = [r[metric] for r in same]
            row[metric] = statistics.fmean(values)
            row[f"{metric}_sd"] = statistics.pstdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    return rows


def _print(rows: list[dict[str, Any]]) -> None:
    head = f"{'policy':<44} {'success':>15} {'SLO met':>15} {'$/1k ok':>8} {'÷ oracle':>13} {'÷ market':>8} {'cache':>6} {'p95 s':>6} {'p99 s':>6}"
    print(head)
    for r in rows:
        print(
            f"{r['variant']:<44} {r['success_rate']:>8.2%} ±{r['success_rate_sd']:>5.2%} "
            f"{r['slo_attainment']:>8.2%} ±{r['slo_attainment_sd']:>5.2%} {r['cost_per_1k_ok_usd']:>8.4f} "
            f"{r['cost_ratio']:>6.2f} ±{r['cost_ratio_sd']:>5.2f} {r['market_cost_ratio']:>8.2f} "
            f"{r['prompt_cache_hit_rate']:>6.1%} "
            f"{r['ttft_p95_s']:>6.2f} {r['ttft_p99_s']:>6.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=6000, help="per seed")
    parser.add_argument("--rate", type=float, default=5.0, help="arrivals per simulated second")
    parser.add_argument("--seeds", default="7,8,9")
    parser.add_argument("--max-attempts", type=int, default=3)
    parser.add_argument("--tenants", type=int, default=300, help="keys, each with its own system prompt")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    per_seed = []
    for seed in seeds:
        load = workload(seed, args.requests, args.rate, args.tenants)
        oracle, market = run_oracle(seed, load), run_market_oracle(seed, load)
        rows = [oracle, market, *(run_variant(v, seed, load, args.max_attempts) for v in VARIANTS)]
        for r in rows:
            r["cost_ratio"] = r["cost_per_1k_ok_usd"] / oracle["cost_per_1k_ok_usd"]
            r["market_cost_ratio"] = r["cost_per_1k_ok_usd"] / market["cost_per_1k_ok_usd"]
        per_seed.append(rows)
    rows = aggregate(per_seed)
    print(
        f"{args.requests} requests per seed, seeds {seeds}, {args.rate}/s simulated, ≤{args.max_attempts} attempts "
        f"in {DEADLINE_S:g} s, SLO: first token ≤ {SLO_S:g} s, {args.tenants} tenants with "
        f"{SYSTEM_TOKENS}-token system prompts; mean ± standard deviation over the seeds"
    )
    _print(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"args": vars(args), "slo_s": SLO_S, "rows": rows, "per_seed": per_seed}
    (RESULTS / "routing_market.json").write_text(json.dumps(out, indent=2))
    if not args.no_plot:
        from bench.market_plot import plot

        print("plot:", plot(rows, RESULTS / "routing_market.png"))


if __name__ == "__main__":
    main()
