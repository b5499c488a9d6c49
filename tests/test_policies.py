"""Scoring policies on their own: every factor of `balanced`, each strict sort, the draws, load."""

from __future__ import annotations

import math
import random

import pytest

from providers.types import RateLimitInfo
from router_policies.candidates import LOW_RATE_LIMIT, Candidate, candidate
from router_policies.deployment import Deployment
from router_policies.policies import (
    DEFAULT_POLICY,
    POLICIES,
    Balanced,
    EffectivePrice,
    InversePriceSquared,
    Sorted,
    UniformRandom,
    get_policy,
    weighted_order,
)
from router_policies.stats import EMPTY, RateLimitState, Summary
from router_policies.store import LocalStore


def cand(name: str, price: float = 1.0, stats: Summary = EMPTY, load: float = 0.0, busy: bool = False):
    d = Deployment(name, f"{name}-model", None, price, price)  # type: ignore[arg-type]
    return Candidate(d, "m", price, stats, 0, load, busy, True, "closed")


def scores(policy, candidates: list[Candidate]) -> dict[str, float]:
    policy.rank(candidates, random.Random(1))
    return {c.deployment.provider: c.score for c in candidates}


def firsts(policy, make, draws: int = 3000) -> dict[str, int]:
    """How often each candidate comes first over `draws` seeded draws."""
    rng = random.Random(42)
    counts: dict[str, int] = {}
    for _ in range(draws):
        first = policy.rank(make(), rng)[0].deployment.provider
        counts[first] = counts.get(first, 0) + 1
    return counts


# --------------------------------------------------------------------------- balanced


def test_balanced_weights_inverse_square_price():
    got = scores(Balanced(), [cand("a", 1.0), cand("b", 2.0)])
    assert got == {"a": pytest.approx(1.0), "b": pytest.approx(0.25)}


def test_balanced_discounts_error_rate_squared():
    got = scores(Balanced(), [cand("a"), cand("b", stats=Summary(count=10, error_rate=0.5))])
    assert got == {"a": pytest.approx(1.0), "b": pytest.approx(0.25)}


def test_balanced_discounts_slower_time_to_first_token_by_the_square_root():
    got = scores(
        Balanced(),
        [
            cand("a", stats=Summary(count=5, ttft_p50_ms=100.0)),
            cand("b", stats=Summary(count=5, ttft_p50_ms=400.0)),
        ],
    )
    assert got == {"a": pytest.approx(1.0), "b": pytest.approx(0.5)}


def test_balanced_discounts_lower_tokens_per_second_by_the_square_root():
    got = scores(
        Balanced(),
        [cand("a", stats=Summary(count=5, tps_p50=100.0)), cand("b", stats=Summary(count=5, tps_p50=25.0))],
    )
    assert got == {"a": pytest.approx(1.0), "b": pytest.approx(0.5)}


def test_balanced_leaves_unmeasured_figures_neutral():
    got = scores(Balanced(), [cand("a", stats=Summary(count=5, ttft_p50_ms=0.0, tps_p50=None)), cand("b")])
    assert got == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    got = scores(
        Balanced(),
        [
            cand("zero", stats=Summary(count=5, tps_p50=0.0)),
            cand("fast", stats=Summary(count=5, tps_p50=100.0)),
        ],
    )
    assert got == {"zero": pytest.approx(1.0), "fast": pytest.approx(1.0)}  # no rate measured: neutral


def test_balanced_compares_sub_millisecond_times_too():
    got = scores(
        Balanced(),
        [
            cand("a", stats=Summary(count=5, ttft_p50_ms=0.25)),
            cand("b", stats=Summary(count=5, ttft_p50_ms=1.0)),
        ],
    )
    assert got == {"a": pytest.approx(1.0), "b": pytest.approx(0.5)}


def test_balanced_discounts_load_and_zeroes_busy_candidates_which_go_last():
    candidates = [cand("busy", 0.5, busy=True), cand("loaded", load=0.75), cand("idle", 4.0)]
    ranked = Balanced().rank(candidates, random.Random(3))
    got = {c.deployment.provider: c.score for c in candidates}
    assert got == {"busy": 0.0, "loaded": pytest.approx(0.25), "idle": pytest.approx(1 / 16)}
    assert ranked[-1].deployment.provider == "busy"


def test_balanced_draw_follows_the_scores():
    def make():
        return [cand("a"), cand("b", stats=Summary(count=10, error_rate=0.5))]  # scores 1 : 0.25

    counts = firsts(Balanced(), make)
    assert abs(counts["a"] / 3000 - 0.8) < 0.03


def test_default_policy_is_effective_price_and_unknown_names_are_refused():
    assert DEFAULT_POLICY == "effective_price" and isinstance(get_policy(DEFAULT_POLICY), EffectivePrice)
    assert {name: get_policy(name).name for name in POLICIES} == {name: name for name in POLICIES}
    with pytest.raises(ValueError, match="unknown routing policy 'fastest'; known: \\['balanced'"):
        get_policy("fastest")


# --------------------------------------------------------------------------- draws


def test_weighted_order_puts_zero_scores_last_cheapest_first():
    zero_dear, zero_cheap, positive = cand("zd", 9.0), cand("zc", 3.0), cand("p", 5.0)
    zero_dear.score, zero_cheap.score, positive.score = 0.0, 0.0, 1.0
    ranked = weighted_order([zero_dear, positive, zero_cheap], random.Random(0))
    assert [c.deployment.provider for c in ranked] == ["p", "zc", "zd"]


def test_inverse_price_squared_scores_and_spreads():
    got = scores(InversePriceSquared(), [cand("a", 1.0), cand("b", 2.0)])
    assert got == {"a": pytest.approx(1.0), "b": pytest.approx(0.25)}
    counts = firsts(InversePriceSquared(), lambda: [cand("a", 1.0), cand("b", 2.0)])
    assert abs(counts["a"] / 3000 - 0.8) < 0.03


def test_random_policy_ignores_price_and_spreads_evenly():
    counts = firsts(UniformRandom(), lambda: [cand("a", 1.0), cand("b", 10.0), cand("c", 100.0)])
    assert all(abs(counts[name] / 3000 - 1 / 3) < 0.04 for name in "abc"), counts
    candidates = [cand("a", 1.0), cand("b", 10.0)]
    UniformRandom().rank(candidates, random.Random(0))
    assert [c.score for c in candidates] == [1.0, 1.0]


# --------------------------------------------------------------------------- strict sorts


def test_throughput_sort_puts_the_fastest_first_and_unmeasured_before_all():
    candidates = [
        cand("slow", stats=Summary(count=5, tps_p50=20.0)),
        cand("fast", stats=Summary(count=5, tps_p50=200.0)),
        cand("new"),
        cand("mid", stats=Summary(count=5, tps_p50=80.0)),
    ]
    ranked = Sorted("throughput").rank(candidates, random.Random(0))
    assert [c.deployment.provider for c in ranked] == ["new", "fast", "mid", "slow"]
    assert [c.score for c in ranked] == [4.0, 3.0, 2.0, 1.0]


def test_latency_sort_puts_the_quickest_first_and_unmeasured_before_all():
    candidates = [
        cand("slow", stats=Summary(count=5, ttft_p50_ms=900.0)),
        cand("quick", stats=Summary(count=5, ttft_p50_ms=0.5)),
        cand("new"),
    ]
    ranked = Sorted("latency").rank(candidates, random.Random(0))
    assert [c.deployment.provider for c in ranked] == ["new", "quick", "slow"]


def test_strict_sorts_break_ties_by_price_and_put_busy_last():
    same = Summary(count=5, ttft_p50_ms=100.0, tps_p50=50.0)
    for key in ("price", "latency", "throughput"):
        candidates = [cand("busy", 0.1, same, busy=True), cand("dear", 3.0, same), cand("cheap", 1.0, same)]
        ranked = Sorted(key).rank(candidates, random.Random(0))
        assert [c.deployment.provider for c in ranked] == ["cheap", "dear", "busy"], key


# --------------------------------------------------------------------------- load from a rate limit


def _store_with_limit(remaining: int, limit: int = 100, reset_s: float | None = 60.0) -> LocalStore:
    store = LocalStore(clock=lambda: 1000.0)
    info = RateLimitInfo(limit_requests=limit, remaining_requests=remaining, reset_requests_s=reset_s)
    store.state("p/p-model").rate_limit = RateLimitState(info, at=1000.0)
    return store


def _dep() -> Deployment:
    return Deployment("p", "p-model", None, 1.0, 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("remaining", "load", "busy"),
    [(50, 0.0, False), (20, 0.0, False), (10, 0.5, False), (5, 0.75, False), (0, 1.0, True)],
)
def test_a_nearly_spent_rate_limit_counts_as_load_and_a_spent_one_as_busy(remaining, load, busy):
    got = candidate(_dep(), "m", _store_with_limit(remaining), 1000.0)
    assert got.load == pytest.approx(load) and got.busy is busy
    assert LOW_RATE_LIMIT == 0.2


def test_a_rate_limit_reading_older_than_its_reset_is_ignored():
    store = _store_with_limit(0, reset_s=30.0)
    assert candidate(_dep(), "m", store, 1029.0).busy is True
    assert candidate(_dep(), "m", store, 1031.0).busy is False


def test_balanced_prefers_the_deployment_with_rate_limit_left():
    store = _store_with_limit(5)
    tight = candidate(_dep(), "m", store, 1000.0)
    roomy = cand("roomy")
    Balanced().rank([tight, roomy], random.Random(0))
    assert tight.score == pytest.approx(0.25) and roomy.score == pytest.approx(1.0)
    assert math.isclose(tight.load, 0.75)
