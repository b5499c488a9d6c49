"""The router on its own, on the real `LocalStore` with a hand-moved clock: what a plan holds and
why, open breakers left out (or tried soonest-to-reopen first when nothing else is left), pinned
order, fallback lists, the hedge's latency target, and the executor's reports reaching the store.
Fast enough to judge each mutant of router_policies/router.py with (test_routing_targets_units.py
covers targets, effective price and stickiness)."""

from __future__ import annotations

import pytest

from providers.errors import (
    ContextLengthExceeded,
    UpstreamBadRequest,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.types import RateLimitInfo, Usage
from router_policies.attempts import AttemptLog
from router_policies.breaker import BreakerSettings
from router_policies.candidates import NoCandidates
from router_policies.deployment import Deployment, ModelGroup
from router_policies.policies import DEFAULT_POLICY
from router_policies.prefs import NO_PREFS, Cutoffs, ProviderPrefs
from router_policies.router import DEFAULT_ROUTING, ModelRouting, Router
from router_policies.runner import HedgeSettings, RetrySettings
from router_policies.store import LocalStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def dep(name: str, price: float = 1.0, **kw) -> Deployment:
    return Deployment(name, f"{name}-model", None, price, price, **kw)  # type: ignore[arg-type]


def setup(routing: dict[str, ModelRouting] | None = None) -> tuple[Router, LocalStore, Clock]:
    clock = Clock()
    store = LocalStore(clock=clock, breaker_settings=BreakerSettings(failure_threshold=1, cooldown_s=10))
    return Router(store, routing, seed=3), store, clock


def open_breaker(router: Router, d: Deployment, reason_status: int = 503) -> None:
    router.started(d)
    router.failed(d, UpstreamUnavailable("down", provider=d.provider, status=reason_status))


CHEAP, MID, DEAR = dep("cheap", 1.0), dep("mid", 2.0), dep("dear", 3.0)
PRICED = ModelRouting(policy="price")


# --------------------------------------------------------------------------- settings and policies


def test_unknown_policies_fail_at_start_and_each_policy_is_made_once():
    with pytest.raises(ValueError, match="unknown routing policy 'nope'"):
        Router(LocalStore(), {"m": ModelRouting(policy="nope")})
    router, _, _ = setup({"m": PRICED})
    assert router.policy("price") is router.policy("price")
    assert router.settings_for("m") is PRICED and router.settings_for("other") is DEFAULT_ROUTING
    assert ModelRouting(DEFAULT_POLICY, HedgeSettings(), RetrySettings(), NO_PREFS) == DEFAULT_ROUTING


def test_a_plan_orders_by_the_model_s_policy_and_says_why():
    router, _, _ = setup({"m": PRICED})
    plan = router.plan([ModelGroup("m", [DEAR, CHEAP, MID])], {})
    assert [d.provider for d in plan.deployments] == ["cheap", "mid", "dear"]
    assert plan.policy == "price" and plan.model_of == {CHEAP: "m", MID: "m", DEAR: "m"}
    assert plan.excluded == [] and plan.prefix_key is None and plan.router is router
    assert all(c.reasons[-1] == "has room" for c in plan.candidates)
    log = AttemptLog()
    log.begin(CHEAP.id, CHEAP.provider).outcome = "ok"
    meta = plan.metadata(log)
    assert meta["policy"] == "price" and meta["preferences"] == {} and meta["hedge"] is False
    assert meta["plan"] == ["cheap/cheap-model", "mid/mid-model", "dear/dear-model"]
    assert [c["deployment"] for c in meta["candidates"]] == meta["plan"]
    assert meta["excluded"] == [] and meta["sticky_prefix"] is False
    assert [a["deployment"] for a in meta["attempts"]] == ["cheap/cheap-model"]
    assert plan.observer is router  # no prompt prefix: the router itself


def test_a_requested_sort_overrides_the_model_s_policy():
    router, _, _ = setup({"m": ModelRouting(policy="latency")})
    plan = router.plan([ModelGroup("m", [DEAR, CHEAP])], {}, ProviderPrefs(sort="price"))
    assert plan.policy == "price" and [d.provider for d in plan.deployments] == ["cheap", "dear"]
    assert plan.metadata(AttemptLog())["preferences"] == {"sort": "price"}


def test_order_pins_named_deployments_first_in_the_order_named():
    router, _, _ = setup({"m": PRICED})
    group = ModelGroup("m", [CHEAP, MID, DEAR])
    plan = router.plan([group], {}, ProviderPrefs(order=("dear", "mid/mid-model", "dear")))
    assert [d.provider for d in plan.deployments] == ["dear", "mid", "cheap"]
    only_first = router.plan([group], {}, ProviderPrefs(allow_fallbacks=False))
    assert [d.provider for d in only_first.deployments] == ["cheap"]
    pinned_anyway = router.plan([group], {}, ProviderPrefs(order=("mid",), allow_fallbacks=False))
    assert [d.provider for d in pinned_anyway.deployments] == ["mid"]  # the named ones only


def test_key_and_request_preferences_layer_over_the_model_s_defaults():
    defaults = ProviderPrefs(sort="price", ignore=("dear",))
    router, _, _ = setup({"m": ModelRouting(policy="latency", defaults=defaults)})
    group = ModelGroup("m", [DEAR, MID, CHEAP])
    plan = router.plan([group], {}, key=ProviderPrefs(order=("mid",)))
    assert [d.provider for d in plan.deployments] == ["mid", "cheap"] and plan.policy == "price"
    assert plan.excluded and plan.excluded[0][0] == "dear/dear-model"
    asked = router.plan([group], {}, ProviderPrefs(ignore=("cheap",)), key=ProviderPrefs(order=("mid",)))
    assert [d.provider for d in asked.deployments] == ["mid", "dear"]  # the request's ignore wins


# --------------------------------------------------------------------------- fallback lists


def test_a_fallback_list_keeps_models_in_order_each_with_its_own_settings():
    other_a, other_b = dep("oa", 0.5), dep("ob", 0.1)
    routing = {"m": PRICED, "backup": ModelRouting(policy="price", defaults=ProviderPrefs(ignore=("ob",)))}
    router, _, _ = setup(routing)
    plan = router.plan([ModelGroup("m", [MID, CHEAP]), ModelGroup("backup", [other_b, other_a])], {})
    assert [d.provider for d in plan.deployments] == ["cheap", "mid", "oa"]
    assert plan.model_of[other_a] == "backup" and plan.model_of[CHEAP] == "m"
    assert [g.name for g in plan.groups] == ["m", "backup"]
    across = router.plan(
        [ModelGroup("m", [MID, CHEAP]), ModelGroup("backup", [other_a])],
        {},
        ProviderPrefs(sort="price", partition="none"),
    )
    assert [d.provider for d in across.deployments] == ["oa", "cheap", "mid"]


def test_nothing_left_after_the_filters_names_the_model_or_the_list():
    router, _, _ = setup()
    with pytest.raises(NoCandidates) as one:
        router.plan([ModelGroup("m", [CHEAP])], {}, ProviderPrefs(ignore=("cheap",)))
    assert one.value.model == "m" and one.value.excluded[0][0] == "cheap/cheap-model"
    with pytest.raises(NoCandidates) as listed:
        router.plan([ModelGroup("m", [CHEAP]), ModelGroup("n", [MID])], {}, ProviderPrefs(only=("dear",)))
    assert listed.value.model == "['m', 'n']" and len(listed.value.excluded) == 2


# --------------------------------------------------------------------------- open breakers


def test_an_open_breaker_is_left_out_with_its_reason():
    router, _, _ = setup({"m": PRICED})
    open_breaker(router, CHEAP)
    plan = router.plan([ModelGroup("m", [CHEAP, MID])], {})
    assert [d.provider for d in plan.deployments] == ["mid"]
    assert plan.excluded == [("cheap/cheap-model", "breaker open: 1 consecutive failures (unavailable 503)")]
    assert not router.available(CHEAP) and router.available(MID)


def test_when_every_breaker_is_open_the_soonest_to_reopen_is_tried_first():
    router, _, clock = setup({"m": PRICED})
    open_breaker(router, CHEAP)
    clock.now += 5
    open_breaker(router, MID)
    router.started(DEAR)
    router.failed(DEAR, UpstreamRateLimited("slow down", provider="dear", status=429, retry_after_s=1))
    plan = router.plan([ModelGroup("m", [CHEAP, MID, DEAR])], {})
    assert [d.provider for d in plan.deployments] == ["dear", "cheap", "mid"]  # reopening at +6, +10, +15
    assert plan.excluded == [] and [c.deployment.provider for c in plan.candidates] == [
        "dear",
        "cheap",
        "mid",
    ]
    assert plan.model_of[MID] == "m"


# --------------------------------------------------------------------------- the hedge's target


def test_the_hedge_takes_the_request_s_tightest_latency_target():
    hedged = ModelRouting(hedge=HedgeSettings(enabled=True))
    router, _, _ = setup({"h": hedged, "m": PRICED})
    targets = ProviderPrefs(preferred_max_latency=Cutoffs(p50=0.8, p90=0.3))
    assert router.plan([ModelGroup("h", [CHEAP])], {}, targets).hedge.target_ms == pytest.approx(300.0)
    assert router.plan([ModelGroup("h", [CHEAP])], {}).hedge == HedgeSettings(enabled=True)
    assert router.plan([ModelGroup("m", [CHEAP])], {}, targets).hedge == HedgeSettings()  # no hedging: as is
    empty = ProviderPrefs(preferred_max_latency=Cutoffs())
    assert router.plan([ModelGroup("h", [CHEAP])], {}, empty).hedge.target_ms is None


# --------------------------------------------------------------------------- the executor's reports


def test_reports_reach_the_store_and_only_upstream_faults_count_against_a_deployment():
    router, store, _ = setup()
    for error in (
        UpstreamBadRequest("bad", provider="cheap", status=400),
        ContextLengthExceeded("long", provider="cheap", status=400),
    ):
        router.started(CHEAP)
        router.failed(CHEAP, error)
    assert router.available(CHEAP) and store.state(CHEAP.id).in_flight == 0
    router.started(CHEAP)
    router.failed(CHEAP, UpstreamTimeout("slow", provider="cheap", phase="first_byte"))
    assert not router.available(CHEAP)
    assert store.state(CHEAP.id).breaker.reason == "1 consecutive failures (timeout)"

    router.started(MID)
    router.started(MID)
    assert router.in_flight(MID) == 2
    router.cancelled(MID)
    limits = RateLimitInfo(limit_requests=10, remaining_requests=9)
    router.finished(MID, 120.0, 40.0, limits, Usage(5, 7), 1)
    assert router.in_flight(MID) == 0 and store.state(MID.id).rate_limit is not None
    assert store.state(MID.id).rate_limit.info == limits
    summary = store.state(MID.id).window.summary()
    assert summary.count == 1 and summary.ttft_p50_ms == 120.0
    assert router.ttft_p90_ms(MID) == pytest.approx(120.0)
    router.started(DEAR)
    router.succeeded(DEAR)
    assert router.in_flight(DEAR) == 1  # success is the first byte; finished() ends it


def test_a_plan_with_a_prompt_prefix_remembers_who_answered_it():
    router, store, _ = setup({"m": PRICED})
    plan = router.plan([ModelGroup("m", [CHEAP, MID])], {}, prefix_key="k1")
    observer = plan.observer
    assert observer is not router and plan.metadata(AttemptLog())["sticky_prefix"] is True
    observer.started(MID)
    observer.succeeded(MID)
    assert store.sticky("k1") == MID.id and router.in_flight(MID) == 1  # the rest is the router's
    assert observer.available(MID)


def test_a_plan_says_what_it_left_out_and_why_in_its_metadata():
    router, _, _ = setup({"m": PRICED, "backup": PRICED})
    other = dep("other")
    open_breaker(router, CHEAP)
    open_breaker(router, other)
    plan = router.plan([ModelGroup("m", [CHEAP, MID]), ModelGroup("backup", [other, DEAR])], {})
    reason = "breaker open: 1 consecutive failures (unavailable 503)"
    assert plan.metadata(AttemptLog())["excluded"] == [
        {"deployment": "cheap/cheap-model", "reason": reason},
        {"deployment": "other/other-model", "reason": reason},
    ]
    assert plan.retry == RetrySettings() and [d.provider for d in plan.deployments] == ["mid", "dear"]


def test_the_key_s_preferences_reach_every_model_of_a_fallback_list():
    router, _, _ = setup({"m": PRICED, "backup": PRICED})
    groups = [ModelGroup("m", [MID]), ModelGroup("backup", [CHEAP, DEAR])]
    plan = router.plan(groups, {}, key=ProviderPrefs(ignore=("cheap",)))
    assert [d.provider for d in plan.deployments] == ["mid", "dear"]
    asked = router.plan(groups, {}, ProviderPrefs(ignore=("dear",)))
    assert [d.provider for d in asked.deployments] == ["mid", "cheap"]


def test_each_candidate_says_why_it_is_where_it_is():
    router, _, _ = setup({"m": PRICED})
    busy = dep("busy", 0.5, max_concurrency=1)
    router.started(busy)
    plan = router.plan([ModelGroup("m", [busy, CHEAP])], {})
    assert [d.provider for d in plan.deployments] == ["cheap", "busy"]  # at capacity: last
    by_name = {c.deployment.provider: c.reasons for c in plan.candidates}
    assert by_name["cheap"][-1] == "has room" and by_name["busy"][-1] == "fallback: at capacity"
    pinned = router.plan([ModelGroup("m", [busy, CHEAP])], {}, ProviderPrefs(order=("busy",)))
    assert [d.provider for d in pinned.deployments] == ["busy", "cheap"]  # named: keeps its place
    assert pinned.candidates[0].reasons[-1] == "has room"
    targets = ProviderPrefs(preferred_max_latency=Cutoffs(p50=5.0))
    assert (
        router.plan([ModelGroup("m", [CHEAP])], {}, targets).candidates[0].reasons[-1] == "meets the targets"
    )


def test_a_probe_s_success_closes_the_breaker_and_its_timings_are_kept():
    router, store, clock = setup()
    open_breaker(router, CHEAP)
    clock.now += 11  # the cooldown is over: one probe
    assert router.available(CHEAP)
    router.started(CHEAP)
    router.succeeded(CHEAP)
    router.finished(CHEAP, 80.0, 25.0, None, Usage(prompt_tokens=9, completion_tokens=4), 0)
    assert store.state(CHEAP.id).breaker.state(clock.now) == "closed" and router.available(CHEAP)
    summary = store.state(CHEAP.id).window.summary()
    assert summary.tps_p50 == 25.0 and summary.ttft_p50_ms == 80.0
