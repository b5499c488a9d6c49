"""Candidate building on its own: each hard filter and the reason it gives, target misses, the
effective price, load from in-flight counts, a server's queue and an upstream's rate limit, and
the `/v1/routing/plan` description of a candidate. Real `Deployment`s and a `LocalStore` on a
fixed clock; no gateway, no timing."""

from __future__ import annotations

import math

import pytest

from providers.types import RateLimitInfo, Usage
from router_policies.candidates import (
    KV_CACHE_BUSY,
    LOW_RATE_LIMIT,
    MIX_MIN_SAMPLES,
    PRICE_FLOOR_PER_MTOK,
    SERVER_LOAD_STALE_S,
    Candidate,
    NoCandidates,
    candidate,
    effective_price,
    exclusion,
    expected_ttft_ms,
    filter_deployments,
    has_images,
    named_in,
    sent_parameters,
    target_misses,
    warm_price,
)
from router_policies.deployment import Deployment
from router_policies.load_fit import LoadFit
from router_policies.prefs import Cutoffs, MaxPrice, ProviderPrefs, parse_prefs
from router_policies.stats import EMPTY, ServerLoad, Summary
from router_policies.store import LocalStore

NOW = 1000.0
NONE: frozenset[str] = frozenset()


def dep(provider: str = "Groq", model: str = "Llama-8B", price: float = 1.0, **kw) -> Deployment:
    kw.setdefault("output_price_per_mtok", price)
    return Deployment(provider, model, None, price, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- names and images


def test_a_deployment_is_named_by_its_provider_or_its_id_case_insensitively():
    d = dep("Groq", "Llama-8B")
    assert named_in(d, ["groq"]) and named_in(d, ["groq/llama-8b"])
    assert not named_in(d, ["llama-8b"]) and not named_in(d, ["Groq"]) and not named_in(d, [])


def test_images_are_found_in_any_message_and_any_image_part_type():
    def msg(*types: str) -> dict[str, object]:
        return {"role": "user", "content": [{"type": t} for t in types]}

    assert has_images([{"role": "system", "content": "x"}, msg("text", "image_url")])
    assert has_images([msg("input_image")]) and has_images([msg("image")])
    assert not has_images([msg("text", "input_audio")])
    assert not has_images([{"role": "user", "content": "an image_url in text"}])
    assert not has_images([{"role": "user", "content": ["image_url"]}])
    assert not has_images(["image_url"]) and not has_images(None) and not has_images({"content": "x"})


def test_sent_parameters_are_the_non_core_fields_plus_vision_for_images():
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "image_url"}]}],
        "stream": True,
        "stream_options": {},
        "provider": {},
        "user": "u",
        "metadata": {},
        "models": [],
        "input": "x",
        "tools": [],
        "seed": 1,
    }
    assert sent_parameters(body) == {"tools", "seed", "vision"}
    assert sent_parameters({"model": "m", "messages": [], "temperature": 0}) == {"temperature"}
    assert sent_parameters({"model": "m", "messages": []}) == NONE


# --------------------------------------------------------------------------- hard filters


@pytest.mark.parametrize(
    ("prefs", "reason"),
    [
        (ProviderPrefs(only=("together",)), "not in provider.only"),
        (ProviderPrefs(ignore=("groq",)), "in provider.ignore"),
        (
            ProviderPrefs(order=("together",), allow_fallbacks=False),
            "not in provider.order and allow_fallbacks is false",
        ),
        (ProviderPrefs(data_collection="deny"), "may keep data (data_collection: deny asked)"),
        (ProviderPrefs(zdr=True), "not a zero-data-retention deployment (zdr asked)"),
        (ProviderPrefs(quantizations=("fp8",)), "quantization unknown not in provider.quantizations"),
        (ProviderPrefs(max_price=MaxPrice(prompt=0.5)), "prompt price $1/M above max_price.prompt $0.5/M"),
        (
            ProviderPrefs(max_price=MaxPrice(completion=1.5)),
            "completion price $2/M above max_price.completion $1.5/M",
        ),
    ],
)
def test_each_hard_filter_drops_with_its_reason(prefs, reason):
    d = dep(price=1.0, output_price_per_mtok=2.0)
    assert exclusion(d, prefs, NONE) == reason


@pytest.mark.parametrize(
    "prefs",
    [
        ProviderPrefs(),
        ProviderPrefs(only=("groq",)),
        ProviderPrefs(only=("groq/llama-8b",)),
        ProviderPrefs(ignore=("together",)),
        ProviderPrefs(order=("together",)),  # fallbacks allowed by default
        ProviderPrefs(order=("together",), allow_fallbacks=True),
        ProviderPrefs(order=("groq",), allow_fallbacks=False),
        ProviderPrefs(data_collection="allow"),
        ProviderPrefs(zdr=False),
        ProviderPrefs(quantizations=("unknown",)),
        ProviderPrefs(max_price=MaxPrice(prompt=1.0, completion=2.0)),  # at the cap is within it
        ProviderPrefs(max_price=MaxPrice()),
        ProviderPrefs(require_parameters=False),
    ],
)
def test_a_deployment_within_every_rule_stays(prefs):
    assert exclusion(dep(price=1.0, output_price_per_mtok=2.0), prefs, frozenset({"tools"})) is None


def test_data_collection_deny_keeps_self_hosted_and_deny_declaring_deployments():
    deny = ProviderPrefs(data_collection="deny")
    assert exclusion(dep(self_hosted=True), deny, NONE) is None
    assert exclusion(dep(data_collection="deny"), deny, NONE) is None
    assert exclusion(dep(), deny, NONE) is not None
    assert exclusion(dep(zdr=True), ProviderPrefs(zdr=True), NONE) is None
    assert exclusion(dep(quantization="fp8"), ProviderPrefs(quantizations=("fp8", "bf16")), NONE) is None


def test_images_go_only_where_vision_is_declared_or_nothing_is():
    vision = frozenset({"vision"})
    declares_none = dep()
    declares_vision = dep(supported_parameters=frozenset({"vision", "tools"}))
    declares_tools = dep(supported_parameters=frozenset({"tools"}))
    assert exclusion(declares_none, ProviderPrefs(), vision) is None
    assert exclusion(declares_vision, ProviderPrefs(), vision) is None
    assert (
        exclusion(declares_tools, ProviderPrefs(), vision)
        == "declares its parameters without vision (the request has images)"
    )
    assert exclusion(declares_tools, ProviderPrefs(), frozenset({"seed"})) is None


def test_require_parameters_drops_deployments_not_declaring_what_was_sent():
    strict = ProviderPrefs(require_parameters=True)
    tools = frozenset({"tools"})
    assert exclusion(dep(), strict, tools) == "does not declare support for ['tools']"
    assert (
        exclusion(
            dep(supported_parameters=frozenset({"seed"})), strict, frozenset({"tools", "seed", "top_k"})
        )
        == "does not declare support for ['tools', 'top_k']"
    )
    assert exclusion(dep(supported_parameters=frozenset({"tools"})), strict, tools) is None
    assert exclusion(dep(), strict, NONE) is None  # nothing sent, nothing to declare
    assert exclusion(dep(), ProviderPrefs(require_parameters=False), tools) is None


def test_filter_keeps_order_and_lists_each_exclusion_by_id():
    a, b, c = dep("a", price=1.0), dep("b", price=5.0), dep("c", price=2.0)
    kept, excluded = filter_deployments([a, b, c], ProviderPrefs(max_price=MaxPrice(prompt=2.0)), NONE)
    assert kept == [a, c]
    assert excluded == [("b/Llama-8B", "prompt price $5/M above max_price.prompt $2/M")]
    assert filter_deployments([], ProviderPrefs(), NONE) == ([], [])


def test_no_candidates_names_the_model_and_each_exclusion():
    err = NoCandidates("llama", [("groq/x", "in provider.ignore"), ("together/y", "not in provider.only")])
    assert str(err) == (
        "no deployment of model 'llama' fits the request's provider preferences "
        "(groq/x: in provider.ignore; together/y: not in provider.only)"
    )
    assert (err.model, err.excluded) == (
        "llama",
        [("groq/x", "in provider.ignore"), ("together/y", "not in provider.only")],
    )
    assert str(NoCandidates("m", [])).endswith("(no deployments)")


# --------------------------------------------------------------------------- targets


def test_target_misses_name_each_missed_cutoff_and_skip_unmeasured_ones():
    stats = Summary(count=10, ttft_p50_ms=300.0, ttft_p90_ms=900.0, tps_p50=40.0, tps_p90=10.0)
    prefs = parse_prefs(
        {
            "preferred_max_latency": {"p50": 0.3, "p90": 0.5, "p99": 0.1},
            "preferred_min_throughput": {"p50": 40, "p90": 20, "p75": 100},
        }
    )
    assert target_misses(stats, prefs) == [
        "time to first token p90 900 ms above preferred_max_latency.p90 500 ms",
        "throughput p90 10.0 tokens/s below preferred_min_throughput.p90 20",
    ]
    assert target_misses(stats, ProviderPrefs(preferred_max_latency=Cutoffs(p50=0.2))) == [
        "time to first token p50 300 ms above preferred_max_latency.p50 200 ms"
    ]
    assert target_misses(stats, ProviderPrefs(preferred_min_throughput=Cutoffs(p50=40.5))) == [
        "throughput p50 40.0 tokens/s below preferred_min_throughput.p50 40.5"
    ]
    assert target_misses(EMPTY, prefs) == []
    # just past a cutoff is a miss; at it, none
    at_edge = Summary(count=1, ttft_p50_ms=300.0, tps_p50=40.0)
    just_past = Summary(count=1, ttft_p50_ms=300.2, tps_p50=39.9)
    edge_prefs = ProviderPrefs(
        preferred_max_latency=Cutoffs(p50=0.3), preferred_min_throughput=Cutoffs(p50=40)
    )
    assert target_misses(at_edge, edge_prefs) == []
    assert len(target_misses(just_past, edge_prefs)) == 2
    assert target_misses(stats, ProviderPrefs()) == []


def test_with_a_load_fit_latency_targets_are_judged_at_the_current_in_flight_count():
    # 100 ms idle, doubling per answer in flight; the window's own p90 says 1.6 s.
    fitted = LoadFit(math.log(100.0), math.log(2.0), dict.fromkeys(("p50", "p75", "p90", "p99"), 0.0), 20)
    stats = Summary(count=20, ttft_p50_ms=400.0, ttft_p90_ms=1600.0, load_fit=fitted)
    prefs = ProviderPrefs(preferred_max_latency=Cutoffs(p90=0.5))
    assert target_misses(stats, prefs, in_flight=2) == []  # 400 ms predicted
    assert target_misses(stats, prefs, in_flight=3) == [
        "time to first token p90 800 ms at 3 in flight (predicted) above preferred_max_latency.p90 500 ms"
    ]
    assert expected_ttft_ms(stats, "p90", 0) == pytest.approx(100.0)
    assert expected_ttft_ms(Summary(count=20, ttft_p90_ms=1600.0), "p90", 0) == 1600.0  # no fit: the window


# --------------------------------------------------------------------------- price


def usage_summary(n: int, prompt: int, cached: int, completion: int) -> Summary:
    return Summary(
        count=n, usage_count=n, prompt_tokens=prompt, cached_tokens=cached, completion_tokens=completion
    )


def test_effective_price_blends_observed_mix_and_cache_hits_once_enough_answers_reported():
    d = dep(price=2.0, output_price_per_mtok=10.0, cached_input_price_per_mtok=0.5)
    # 3/4 prompt tokens, half of them cached: 0.75 * (0.5 * 2 + 0.5 * 0.5) + 0.25 * 10
    price, hit, share = effective_price(d, usage_summary(MIX_MIN_SAMPLES, 600, 300, 200))
    assert (price, hit, share) == pytest.approx((0.75 * 1.25 + 2.5, 0.5, 0.75))
    # below MIX_MIN_SAMPLES answers: a 1:1 mix and no cache hits
    assert effective_price(d, usage_summary(MIX_MIN_SAMPLES - 1, 600, 300, 200)) == pytest.approx(
        (6.0, 0.0, 0.5)
    )
    assert effective_price(d, EMPTY) == pytest.approx((6.0, 0.0, 0.5))
    # answers that billed no tokens at all
    assert effective_price(d, usage_summary(MIX_MIN_SAMPLES, 0, 0, 0)) == pytest.approx((6.0, 0.0, 0.5))
    # one billed token is already a mix: all prompt
    assert effective_price(d, usage_summary(MIX_MIN_SAMPLES, 1, 0, 0)) == pytest.approx((2.0, 0.0, 1.0))
    # only completion tokens: no prompt to have hit a cache
    assert effective_price(d, usage_summary(MIX_MIN_SAMPLES, 0, 0, 100)) == pytest.approx((10.0, 0.0, 0.0))


def test_free_deployments_get_the_price_floor():
    free = dep(price=0.0, output_price_per_mtok=0.0)
    assert effective_price(free, EMPTY)[0] == PRICE_FLOOR_PER_MTOK
    c = Candidate(free, "m", PRICE_FLOOR_PER_MTOK, EMPTY, 0, 0.0, False, True, "closed")
    assert warm_price(c) == PRICE_FLOOR_PER_MTOK


def test_warm_price_reads_every_prompt_token_from_the_cache():
    d = dep(price=2.0, output_price_per_mtok=10.0, cached_input_price_per_mtok=0.5)
    c = Candidate(d, "m", 6.0, EMPTY, 0, 0.0, False, True, "closed", input_share=0.8)
    assert warm_price(c) == pytest.approx(0.8 * 0.5 + 0.2 * 10.0)


# --------------------------------------------------------------------------- load


def store_at(now: float = NOW) -> LocalStore:
    return LocalStore(clock=lambda: now)


def test_in_flight_against_max_concurrency_is_the_load_and_at_the_cap_busy():
    d = dep(max_concurrency=4)
    store = store_at()
    assert (candidate(d, "m", store, NOW).load, candidate(d, "m", store, NOW).busy) == (0.0, False)
    for _ in range(3):
        store.started(d.id)
    c = candidate(d, "m", store, NOW)
    assert (c.in_flight, c.load, c.busy) == (3, 0.75, False)
    store.started(d.id)
    c = candidate(d, "m", store, NOW)
    assert (c.in_flight, c.load, c.busy) == (4, 1.0, True)  # at the cap: busy
    store.cancelled(d.id)
    store.state(d.id).remote_in_flight = 2  # another replica's
    c = candidate(d, "m", store, NOW)
    assert (c.in_flight, c.load, c.busy) == (5, 1.0, True)
    unlimited = dep("free")
    for _ in range(50):
        store.started(unlimited.id)
    c = candidate(unlimited, "m", store, NOW)
    assert (c.load, c.busy) == (0.0, False)


def test_a_fresh_server_reading_adds_queue_and_kv_cache_load_a_stale_one_nothing():
    d = dep("vllm", max_concurrency=10)
    store = store_at()
    store.set_load("vllm", ServerLoad(waiting=0, kv_cache_usage=0.6, at=NOW - 1))
    c = candidate(d, "m", store, NOW)
    assert (c.load, c.busy) == (pytest.approx(0.3), False)
    store.set_load("vllm", ServerLoad(waiting=1, kv_cache_usage=0.1, at=NOW - 1))
    assert candidate(d, "m", store, NOW).busy
    store.set_load("vllm", ServerLoad(waiting=0, kv_cache_usage=KV_CACHE_BUSY, at=NOW - 1))
    assert candidate(d, "m", store, NOW).busy
    store.set_load("vllm", ServerLoad(waiting=0, kv_cache_usage=KV_CACHE_BUSY - 0.01, at=NOW - 1))
    assert not candidate(d, "m", store, NOW).busy
    store.set_load("vllm", ServerLoad(waiting=5, kv_cache_usage=0.9, at=NOW - SERVER_LOAD_STALE_S))
    c = candidate(d, "m", store, NOW)
    assert (c.load, c.busy) == (0.0, False)
    store.set_load("vllm", ServerLoad(waiting=5, kv_cache_usage=0.9, at=NOW - SERVER_LOAD_STALE_S + 0.5))
    assert candidate(d, "m", store, NOW).busy
    # the in-flight load wins when it is higher than half the KV cache use
    for _ in range(8):
        store.started(d.id)
    store.set_load("vllm", ServerLoad(waiting=0, kv_cache_usage=0.2, at=NOW))
    assert candidate(d, "m", store, NOW).load == pytest.approx(0.8)


def rate_limited(store: LocalStore, d: Deployment, remaining: int, limit: int = 100) -> None:
    info = RateLimitInfo(limit_requests=limit, remaining_requests=remaining, reset_requests_s=60)
    store.finished(d.id, 10.0, 50.0, info)


def test_the_last_fifth_of_an_upstream_rate_limit_counts_as_load_and_none_left_as_busy():
    d = dep()
    store = store_at()
    rate_limited(store, d, 50)
    c = candidate(d, "m", store, NOW)
    assert (c.load, c.busy) == (0.0, False)
    rate_limited(store, d, int(LOW_RATE_LIMIT * 100))  # exactly a fifth left: not yet load
    assert candidate(d, "m", store, NOW).load == pytest.approx(0.0)
    rate_limited(store, d, 5)
    c = candidate(d, "m", store, NOW)
    assert (c.load, c.busy) == (pytest.approx(0.75), False)
    rate_limited(store, d, 0)
    c = candidate(d, "m", store, NOW)
    assert (c.load, c.busy) == (pytest.approx(1.0), True)
    # a reading older than its reset window says nothing any more
    assert candidate(d, "m", store, NOW + 61).busy is False


# --------------------------------------------------------------------------- the candidate


def test_candidate_carries_price_stats_breaker_and_misses_and_describes_itself():
    d = dep(
        "Groq",
        "Llama-8B",
        2.0,
        output_price_per_mtok=10.0,
        cached_input_price_per_mtok=0.5,
        max_concurrency=8,
    )
    store = store_at()
    for _ in range(MIX_MIN_SAMPLES):
        store.started(d.id)
        store.finished(d.id, 400.0, 25.0, None, Usage(60, 20, cached_tokens=30))
    store.started(d.id)  # one in flight
    prefs = parse_prefs({"preferred_max_latency": 0.2})
    c = candidate(d, "llama", store, NOW, prefs)
    assert c.misses == ["time to first token p50 400 ms above preferred_max_latency.p50 200 ms"]
    assert not c.preferred
    assert candidate(d, "llama", store, NOW).misses == []  # no prefs: no targets
    assert candidate(d, "llama", store, NOW, ProviderPrefs(sort="price")).misses == []
    assert c.available and c.breaker == "closed"
    c.score = 0.1234567
    c.reasons.append("cheapest")
    assert c.as_dict() == {
        "deployment": "Groq/Llama-8B",
        "provider": "Groq",
        "model": "llama",
        "score": 0.123457,
        "preferred": False,
        "reasons": ["cheapest"],
        "price_per_mtok": {"prompt": 2.0, "completion": 10.0, "cached_prompt": 0.5},
        "effective_price_per_mtok": round(0.75 * 1.25 + 2.5, 6),
        "cache_hit_rate": 0.5,
        "input_share": 0.75,
        "ttft_ms": {"p50": 400.0, "p75": 400.0, "p90": 400.0, "p99": 400.0},
        "tokens_per_s": {"p50": 25.0, "p75": 25.0, "p90": 25.0, "p99": 25.0},
        "predicted_ttft_ms": None,  # no load recorded with the samples: no fit
        "ttft_p50_ms": 400.0,
        "ttft_p90_ms": 400.0,
        "tokens_per_s_p50": 25.0,
        "error_rate": 0.0,
        "samples": MIX_MIN_SAMPLES,
        "in_flight": 1,
        "max_concurrency": 8,
        "load": 0.125,
        "busy": False,
        "breaker": "closed",
    }


def test_an_open_breaker_makes_a_candidate_unavailable_and_says_so():
    d = dep()
    store = store_at()
    for _ in range(store.breaker_settings.failure_threshold):
        store.started(d.id)
        store.failed(d.id, None, "500", counts=True)
    c = candidate(d, "m", store, NOW)
    assert (c.available, c.breaker) == (False, "open")
    assert c.stats.error_rate == 1.0 and c.as_dict()["error_rate"] == 1.0


def test_the_description_rounds_each_figure_to_its_own_precision():
    stats = Summary(count=3, error_rate=1 / 3)
    c = Candidate(dep(), "m", 0.123456789, stats, 0, 0.123456789, False, True, "closed")
    c.cache_hit_rate, c.input_share, c.score = 0.123456789, 0.987654321, 1.23456789
    described = c.as_dict()
    assert (described["effective_price_per_mtok"], described["cache_hit_rate"], described["input_share"]) == (
        0.123457,
        0.1235,
        0.9877,
    )
    assert (described["error_rate"], described["load"], described["score"]) == (0.3333, 0.1235, 1.234568)


def test_preferred_means_no_missed_target_and_room_left():
    base = Candidate(dep(), "m", 1.0, EMPTY, 0, 0.0, False, True, "closed")
    assert base.preferred
    assert not Candidate(dep(), "m", 1.0, EMPTY, 0, 1.0, True, True, "closed").preferred
    assert not Candidate(dep(), "m", 1.0, EMPTY, 0, 0.0, False, True, "closed", misses=["slow"]).preferred
    assert (base.score, base.cache_hit_rate, base.input_share, base.misses, base.reasons) == (
        0.0,
        0.0,
        0.5,
        [],
        [],
    )
