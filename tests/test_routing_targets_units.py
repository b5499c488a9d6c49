"""The default policy's objective, latency/throughput targets, effective price and stickiness, on
the real `Router` and `LocalStore` with a fixed clock and seeded draws (no timings involved)."""

from __future__ import annotations

import random

import pytest

from providers.types import Usage
from router_policies.candidates import MIX_MIN_SAMPLES, Candidate
from router_policies.deployment import Deployment, ModelGroup
from router_policies.policies import EffectivePrice
from router_policies.prefs import Cutoffs, PrefsError, ProviderPrefs, parse_prefs
from router_policies.router import ModelRouting, Router
from router_policies.runner import HedgeSettings
from router_policies.stats import EMPTY
from router_policies.stickiness import MIN_PROMPT_CHARS, prefix_key
from router_policies.store import LocalStore

NOW = 1000.0


def dep(name: str, price: float, **kw) -> Deployment:
    return Deployment(name, f"{name}-model", None, price, price, **kw)  # type: ignore[arg-type]


def router_with(ttfts: dict[str, float], seed: int = 1) -> Router:
    """A router whose store has 20 answers per deployment at the given time to first token (ms)."""
    store = LocalStore(clock=lambda: NOW)
    for ident, ttft in ttfts.items():
        for _ in range(20):
            store.started(ident)
            store.finished(ident, ttft, 50.0, None)
    return Router(store, seed=seed)


def first_shares(router: Router, groups: list[ModelGroup], prefs: ProviderPrefs, draws: int = 4000):
    counts: dict[str, int] = {}
    for _ in range(draws):
        first = router.plan(groups, {}, prefs).deployments[0].provider
        counts[first] = counts.get(first, 0) + 1
    return {k: v / draws for k, v in counts.items()}


# --------------------------------------------------------------------------- the default's objective


def test_with_equal_latency_the_default_weights_follow_inverse_square_price():
    candidates = [
        Candidate(dep(n, p), "m", p, EMPTY, 0, 0.0, False, True, "closed")
        for n, p in (("one", 1.0), ("two", 2.0), ("three", 3.0))
    ]
    EffectivePrice().rank(candidates, random.Random(0))
    assert [c.score for c in candidates] == pytest.approx([1.0, 1 / 4, 1 / 9])


def test_the_issue_market_sends_most_traffic_to_the_cheapest_not_the_fastest():
    """Prices 1 : 2 : 3, first tokens 150 / 40 / 5 ms, no target: shares 36 : 9 : 4 (of 49)."""
    d = [dep("cheap", 1.0), dep("mid", 2.0), dep("dear", 3.0)]
    router = router_with({"cheap/cheap-model": 150.0, "mid/mid-model": 40.0, "dear/dear-model": 5.0})
    shares = first_shares(router, [ModelGroup("m", tuple(d))], ProviderPrefs())
    assert shares["cheap"] == pytest.approx(36 / 49, abs=0.03)
    assert shares["mid"] == pytest.approx(9 / 49, abs=0.03)
    assert shares["dear"] == pytest.approx(4 / 49, abs=0.02)


def test_a_slower_cheaper_deployment_keeps_its_share_while_it_meets_the_target():
    group = ModelGroup("m", (dep("slow", 1.0), dep("quick", 2.0)))
    target = ProviderPrefs(preferred_max_latency=Cutoffs(p50=0.5))
    router = router_with({"slow/slow-model": 400.0, "quick/quick-model": 50.0})
    shares = first_shares(router, [group], target)
    assert shares["slow"] == pytest.approx(0.8, abs=0.03)  # 1 : 1/4, as without a target
    router = router_with({"slow/slow-model": 600.0, "quick/quick-model": 50.0})
    plans = {tuple(d.provider for d in router.plan([group], {}, target).deployments) for _ in range(50)}
    assert plans == {("quick", "slow")}  # missing the target: only a fallback, never excluded


def test_percentile_targets_every_given_cutoff_must_hold():
    group = ModelGroup("m", (dep("cheap", 1.0), dep("dear", 4.0)))
    store = LocalStore(clock=lambda: NOW)
    for ttft in [100.0] * 18 + [900.0] * 2:  # p50 100 ms, p99 900 ms
        store.finished("cheap/cheap-model", ttft, 50.0, None)
    router = Router(store, seed=3)
    lenient = ProviderPrefs(preferred_max_latency=Cutoffs(p50=0.2, p90=0.2))
    strict = ProviderPrefs(preferred_max_latency=Cutoffs(p50=0.2, p99=0.5))
    assert router.plan([group], {}, strict).deployments[0].provider == "dear"
    firsts = {router.plan([group], {}, lenient).deployments[0].provider for _ in range(40)}
    assert "cheap" in firsts
    plan = router.plan([group], {}, strict)
    cheap = next(c for c in plan.candidates if c.deployment.provider == "cheap")
    assert cheap.preferred is False
    assert cheap.reasons == [
        "fallback: time to first token p99 900 ms above preferred_max_latency.p99 500 ms"
    ]


def test_when_nothing_meets_the_target_the_nearest_goes_first_and_the_full_last():
    group = ModelGroup(
        "m", (dep("cheap", 1.0), dep("mid", 2.0), dep("near", 4.0), dep("full", 5.0, max_concurrency=1))
    )
    router = router_with(
        {
            "cheap/cheap-model": 900.0,
            "mid/mid-model": 500.0,
            "near/near-model": 300.0,
            "full/full-model": 10.0,
        }
    )
    router.store.started("full/full-model")  # at capacity
    target = ProviderPrefs(preferred_max_latency=Cutoffs(p50=0.2))
    for _ in range(20):  # whatever the draw: misses by 1.5x, 2.5x, 4.5x, then the one with no room
        plan = router.plan([group], {}, target)
        assert [d.provider for d in plan.deployments] == ["near", "mid", "cheap", "full"]
    assert [round(c.shortfall, 2) for c in plan.candidates] == [1.5, 2.5, 4.5, 0.0]


def test_throughput_targets_count_from_the_slow_end():
    group = ModelGroup("m", (dep("cheap", 1.0), dep("dear", 4.0)))
    store = LocalStore(clock=lambda: NOW)
    for tps in [100.0] * 14 + [10.0] * 6:  # p50 100 tokens/s; 30 % of answers at 10
        store.finished("cheap/cheap-model", 50.0, tps, None)
    router = Router(store, seed=3)
    assert (
        router.plan([group], {}, parse_prefs({"preferred_min_throughput": {"p75": 50}}))
        .deployments[0]
        .provider
        == "dear"
    )
    met = parse_prefs({"preferred_min_throughput": 50})
    assert "cheap" in {router.plan([group], {}, met).deployments[0].provider for _ in range(40)}


def test_a_fallback_model_meeting_the_target_goes_before_a_primary_missing_it():
    primary = ModelGroup("big", (dep("slowco", 1.0),))
    fallback = ModelGroup("small", (dep("fastco", 5.0),))
    router = router_with({"slowco/slowco-model": 3000.0, "fastco/fastco-model": 100.0})
    plan = router.plan([primary, fallback], {}, parse_prefs({"preferred_max_latency": 1}))
    assert [(plan.model_of[d], d.provider) for d in plan.deployments] == [
        ("small", "fastco"),
        ("big", "slowco"),
    ]
    plan = router.plan([primary, fallback], {}, ProviderPrefs())
    assert [d.provider for d in plan.deployments] == ["slowco", "fastco"]  # no target: models in order


def test_sort_partition_none_sorts_across_every_model():
    primary = ModelGroup("big", (dep("dearco", 5.0),))
    fallback = ModelGroup("small", (dep("cheapco", 1.0),))
    router = router_with({})
    by_model = router.plan([primary, fallback], {}, parse_prefs({"sort": {"by": "price"}}))
    across = router.plan([primary, fallback], {}, parse_prefs({"sort": {"by": "price", "partition": "none"}}))
    assert [d.provider for d in by_model.deployments] == ["dearco", "cheapco"]
    assert [d.provider for d in across.deployments] == ["cheapco", "dearco"]
    assert across.prefs.as_dict() == {"sort": {"by": "price", "partition": "none"}}


# --------------------------------------------------------------------------- preferences


def test_targets_parse_from_a_number_or_percentiles_and_bad_types_name_the_field():
    assert parse_prefs({"preferred_max_latency": 2}).preferred_max_latency == Cutoffs(p50=2.0)
    got = parse_prefs({"preferred_min_throughput": {"p90": 30, "p50": 60}}).preferred_min_throughput
    assert got == Cutoffs(p50=60.0, p90=30.0)
    assert parse_prefs({"quantizations": ["FP8", "int4"], "zdr": True}).quantizations == ("fp8", "int4")
    bad = {
        "provider.preferred_max_latency": {"preferred_max_latency": "fast"},
        "provider.preferred_max_latency.p90": {"preferred_max_latency": {"p90": -1}},
        "provider.preferred_min_throughput": {"preferred_min_throughput": {"p95": 1}},
        "provider.sort.by": {"sort": {"by": "speed"}},
        "provider.sort.partition": {"sort": {"by": "price", "partition": "all"}},
        "provider.sort": {"sort": 3},
        "provider.quantizations": {"quantizations": ["q5"]},
        "provider.zdr": {"zdr": "yes"},
    }
    for field, raw in bad.items():
        with pytest.raises(PrefsError) as caught:
            parse_prefs(raw)
        assert caught.value.param == field and field in caught.value.message


def test_zdr_and_quantization_filters_use_the_deployments_attributes():
    group = ModelGroup(
        "m", (dep("keeps", 1.0, quantization="fp8"), dep("forgets", 2.0, zdr=True, quantization="bf16"))
    )
    router = router_with({})
    assert [d.provider for d in router.plan([group], {}, parse_prefs({"zdr": True})).deployments] == [
        "forgets"
    ]
    plan = router.plan([group], {}, parse_prefs({"quantizations": ["fp8"]}))
    assert [d.provider for d in plan.deployments] == ["keeps"]
    assert plan.excluded == [("forgets/forgets-model", "quantization bf16 not in provider.quantizations")]


# --------------------------------------------------------------------------- effective price


def test_observed_cache_hits_and_token_mix_set_the_effective_price():
    cached = dep("cached", 1.0, cached_input_price_per_mtok=0.1)
    plain = dep("plain", 0.5)
    store = LocalStore(clock=lambda: NOW)
    for _ in range(MIX_MIN_SAMPLES):  # 90 % prompt tokens, 80 % of them cached
        store.finished(cached.id, 10.0, 50.0, None, Usage(900, 100, cached_tokens=720))
    router = Router(store, seed=1)
    plan = router.plan([ModelGroup("m", (cached, plain))], {}, ProviderPrefs(sort="price"))
    by_name = {c.deployment.provider: c for c in plan.candidates}
    # 0.9 * (0.2 * 1.0 + 0.8 * 0.1) + 0.1 * 1.0 = 0.352 $/Mtok, below plain's 0.5 list price
    assert by_name["cached"].price == pytest.approx(0.352)
    assert by_name["cached"].cache_hit_rate == pytest.approx(0.8)
    assert by_name["plain"].price == pytest.approx(0.5)
    assert plan.deployments[0].provider == "cached"


def test_cost_bills_cached_prompt_and_reasoning_tokens_at_their_prices():
    d = Deployment("p", "m", None, 2.0, 8.0, cached_input_price_per_mtok=0.5, reasoning_price_per_mtok=10.0)  # type: ignore[arg-type]
    assert d.cost_usd(1000, 100, cached_tokens=600, reasoning_tokens=40) == pytest.approx(
        (400 * 2.0 + 600 * 0.5 + 60 * 8.0 + 40 * 10.0) / 1e6
    )
    assert d.cost_usd(10, 0, cached_tokens=99) == pytest.approx(10 * 0.5 / 1e6)  # never more than the prompt
    plain = Deployment("p", "m", None, 2.0, 8.0)  # type: ignore[arg-type]
    assert plain.cost_usd(1000, 100, 600, 40) == plain.cost_usd(1000, 100)
    usage = Usage.from_openai(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 100,
            "prompt_tokens_details": {"cached_tokens": 600},
            "completion_tokens_details": {"reasoning_tokens": "x"},
        }
    )
    assert usage is not None and (usage.cached_tokens, usage.reasoning_tokens) == (600, 0)


# --------------------------------------------------------------------------- stickiness


def long_prompt(system: str, question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": system * (MIN_PROMPT_CHARS // len(system) + 1)},
        {"role": "user", "content": question},
    ]


def test_prefix_keys_need_a_long_prompt_and_separate_keys():
    assert prefix_key("k", [{"role": "user", "content": "short"}]) is None
    a = prefix_key("k", long_prompt("You are terse. ", "first"))
    assert a is not None and a == prefix_key("k", long_prompt("You are terse. ", "second"))
    assert a != prefix_key("other", long_prompt("You are terse. ", "first"))
    assert a != prefix_key("k", long_prompt("You are verbose. ", "first"))


def test_the_deployment_that_served_a_prefix_goes_first_while_preferred():
    group = ModelGroup("m", (dep("one", 1.0), dep("two", 1.0)))
    clock = [NOW]
    router = Router(LocalStore(clock=lambda: clock[0]), seed=5)
    key = "prefix"
    router.store.remember_prefix(key, "two/two-model")
    firsts = {
        router.plan([group], {}, ProviderPrefs(), prefix_key=key).deployments[0].provider for _ in range(30)
    }
    assert firsts == {"two"}
    plan = router.plan([group], {}, ProviderPrefs(), prefix_key=key)
    assert any("prompt prefix" in r for r in plan.candidates[0].reasons)
    strict = router.plan([group], {}, ProviderPrefs(sort="price"), prefix_key=key)
    assert strict.deployments[0].provider == "one"  # a strict sort is not overridden
    for _ in range(20):
        router.store.finished("two/two-model", 900.0, 50.0, None)
    clock[0] += 1.0  # past the summary's refresh interval
    target = parse_prefs({"preferred_max_latency": 0.2})
    assert router.plan([group], {}, target, prefix_key=key).deployments[0].provider == "one"


def test_the_plan_observer_remembers_who_answered_the_prefix():
    group = ModelGroup("m", (dep("one", 1.0),))
    router = router_with({})
    plan = router.plan([group], {}, ProviderPrefs(), prefix_key="p")
    plan.observer.started(group.deployments[0])
    plan.observer.succeeded(group.deployments[0])
    assert router.store.sticky("p") == "one/one-model"
    assert router.plan([group], {}, ProviderPrefs()).observer is router


def test_stickiness_never_locks_a_prefix_onto_a_deployment_dearer_even_when_cached():
    cheap, dear = dep("cheap", 1.0), dep("dear", 10.0, cached_input_price_per_mtok=1.0)
    router = router_with({}, seed=2)
    router.store.remember_prefix("p", dear.id)
    plan = router.plan([ModelGroup("m", (cheap, dear))], {}, ProviderPrefs(sort=None), prefix_key="p")
    if plan.deployments[0] is cheap:  # cached, dear costs 0.5 * 1 + 0.5 * 10 = 5.5 $/M > 1
        assert any("dearer" in r for r in plan.candidates[1].reasons)
    firsts = [
        router.plan([ModelGroup("m", (cheap, dear))], {}, ProviderPrefs(), prefix_key="p").deployments[0]
        for _ in range(200)
    ]
    assert firsts.count(cheap) > 190  # the inverse-square draw: 1 to 1/100, not the sticky one


def test_a_hedged_plan_carries_the_requests_tightest_latency_target():
    group = ModelGroup("m", (dep("one", 1.0), dep("two", 2.0)))
    hedged = ModelRouting(hedge=HedgeSettings(enabled=True))
    router = Router(LocalStore(clock=lambda: NOW), {"m": hedged, "plain": ModelRouting()}, seed=1)
    target = ProviderPrefs(preferred_max_latency=Cutoffs(p50=2.0, p90=1.5))
    assert router.plan([group], {}, target).hedge.target_ms == 1500.0
    assert router.plan([group], {}, ProviderPrefs()).hedge.target_ms is None
    plain = ModelGroup("plain", group.deployments)
    assert router.plan([plain], {}, target).hedge == HedgeSettings()  # no hedging: nothing to time


def test_with_hedging_the_second_place_goes_to_the_fastest_preferred_deployment():
    group = ModelGroup("m", (dep("cheap", 1.0), dep("mid", 2.0), dep("dear", 3.0)))
    store = router_with({"cheap/cheap-model": 300.0, "mid/mid-model": 900.0, "dear/dear-model": 50.0}).store
    hedged = ModelRouting(policy="price", hedge=HedgeSettings(enabled=True))
    router = Router(store, {"m": hedged, "plain": ModelRouting(policy="price")}, seed=1)
    plan = router.plan([group], {}, ProviderPrefs())
    assert [d.provider for d in plan.deployments] == ["cheap", "dear", "mid"]  # the first stays the policy's
    assert any(r.startswith("second: the hedge") for r in plan.candidates[1].reasons)
    plain = ModelGroup("plain", group.deployments)
    assert [d.provider for d in router.plan([plain], {}, ProviderPrefs()).deployments] == [
        "cheap",
        "mid",
        "dear",
    ]
    # A strict sort asked by the client keeps its order.
    assert [d.provider for d in router.plan([group], {}, ProviderPrefs(sort="price")).deployments] == [
        "cheap",
        "mid",
        "dear",
    ]
    # Only a preferred deployment is a hedge: one missing the throughput target is not.
    slow_rate = ProviderPrefs(preferred_min_throughput=Cutoffs(p50=60.0))
    for _ in range(20):
        store.finished("mid/mid-model", 900.0, 80.0, None)
        store.finished("cheap/cheap-model", 300.0, 80.0, None)
    assert [d.provider for d in router.plan([group], {}, slow_rate).deployments] == ["cheap", "mid", "dear"]
    store.state("dear/dear-model").window.replace([])  # unmeasured: not a known-fast hedge
    assert [d.provider for d in router.plan([group], {}, ProviderPrefs()).deployments] == [
        "cheap",
        "mid",
        "dear",
    ]
