"""Routing pieces on their own: breaker states, preferences, policies, metrics parsing, retry rounds."""

from __future__ import annotations

import asyncio
import random

import pytest

from providers.errors import UpstreamRateLimited, UpstreamUnavailable
from router_policies.attempts import AllAttemptsFailed, AttemptLog
from router_policies.breaker import CLOSED, HALF_OPEN, OPEN, BreakerSettings, CircuitBreaker
from router_policies.prefs import PrefsError, ProviderPrefs, parse_prefs, split_suffix
from router_policies.runner import HedgeSettings, RetrySettings, run_plan
from router_policies.vllm_metrics import parse_metrics, server_load


def test_breaker_opens_on_consecutive_failures_half_opens_one_probe_and_closes():
    breaker = CircuitBreaker(BreakerSettings(failure_threshold=2, cooldown_s=10))
    assert not breaker.on_failure(0, None, "500") and breaker.state(0) == CLOSED
    assert breaker.on_failure(1, None, "500") and breaker.state(5) == OPEN and not breaker.allows(5)
    assert breaker.state(11) == HALF_OPEN and breaker.allows(11)
    breaker.on_attempt(11)
    assert not breaker.allows(11)  # one probe at a time
    assert breaker.on_failure(12, None, "500") and breaker.open_until == 12 + 20  # cooldown doubles
    breaker.on_attempt(40)
    breaker.on_success()
    assert breaker.state(40) == CLOSED and breaker.failures == 0


def test_breaker_retry_after_opens_for_exactly_that_long():
    breaker = CircuitBreaker()
    assert breaker.on_failure(100, 7, "rate_limited 429")
    assert breaker.state(106.9) == OPEN and breaker.state(107) == HALF_OPEN


def test_prefs_parse_merge_and_suffixes():
    prefs = parse_prefs({"order": ["Groq"], "sort": "price", "max_price": {"prompt": 1}})
    assert prefs.order == ("groq",) and prefs.max_price is not None and prefs.max_price.prompt == 1
    assert ProviderPrefs(sort="price", only=("a",)).merge(ProviderPrefs(sort="latency")).only == ("a",)
    assert split_suffix("llama:nitro") == ("llama", ProviderPrefs(sort="throughput"))
    assert split_suffix("llama:floor")[1] == ProviderPrefs(sort="price")
    assert split_suffix("org/model:v2") == ("org/model:v2", None)
    for bad in ({"sort": "cheapest"}, {"order": "groq"}, {"max_price": {"prompt": -1}}, {"nope": 1}):
        with pytest.raises(PrefsError):
            parse_prefs(bad)


def test_vllm_metrics_are_summed_over_models_and_both_kv_names_read():
    text = (
        "# HELP vllm:num_requests_waiting x\n"
        'vllm:num_requests_waiting{model_name="a"} 2.0\n'
        'vllm:num_requests_waiting{model_name="b"} 1.0\n'
        'vllm:gpu_cache_usage_perc{model_name="a"} 0.5\n'
        "other_metric 3\n"
    )
    load = server_load(parse_metrics(text), at=1.0)
    assert load.waiting == 3.0 and load.kv_cache_usage == 0.5


class _Dep:
    def __init__(self, name: str) -> None:
        self.id = self.provider = name
        self.context_window_tokens = None


def test_retry_round_waits_the_retry_after_the_upstreams_asked_for(sleeps):
    calls: list[str] = []

    async def attempt(d):
        calls.append(d.id)
        if len(calls) <= 2:
            raise UpstreamRateLimited("busy", provider=d.id, status=429, retry_after_s=0.2)
        return "ok"

    result, d = asyncio.run(
        run_plan([_Dep("a"), _Dep("b")], AttemptLog(), attempt, retry=RetrySettings(rounds=2))
    )
    assert result == "ok" and d.id == "a" and calls == ["a", "b", "a"]
    assert [s for s in sleeps if s > 0] == [pytest.approx(0.2, abs=0.01)]  # one wait: the Retry-After


def test_retry_gives_up_when_retry_after_is_longer_than_the_request_may_wait(sleeps):
    async def attempt(d):
        raise UpstreamUnavailable("down", provider=d.id, status=503, retry_after_s=30)

    with pytest.raises(AllAttemptsFailed) as caught:
        asyncio.run(run_plan([_Dep("a")], AttemptLog(), attempt, retry=RetrySettings(rounds=3, max_wait_s=1)))
    assert len(caught.value.attempts) == 1 and [s for s in sleeps if s > 0] == []  # gave up without waiting


def test_default_weights_follow_inverse_square_price():
    from router_policies.candidates import Candidate
    from router_policies.deployment import Deployment
    from router_policies.policies import InversePriceSquared
    from router_policies.stats import EMPTY

    def cand(price):
        d = Deployment(str(price), "m", None, price, price)  # type: ignore[arg-type]
        return Candidate(d, "m", price, EMPTY, 0, 0.0, False, True, "closed")

    rng = random.Random(7)
    firsts = [InversePriceSquared().rank([cand(1.0), cand(2.0)], rng)[0].price for _ in range(4000)]
    assert abs(firsts.count(1.0) / 4000 - 0.8) < 0.03


def test_rolling_window_summary_is_exact_when_small_and_bounded_stale_when_large():
    from router_policies.stats import EXACT_BELOW, REFRESH_S, RollingWindow, Sample

    now = [1000.0]
    window = RollingWindow(clock=lambda: now[0])
    window.add(Sample(now[0], True, ttft_ms=100.0))
    assert window.summary().ttft_p50_ms == 100.0
    window.add(Sample(now[0], False, ttft_ms=300.0))
    assert window.summary().count == 2  # small window: every sample shows at once
    for _ in range(EXACT_BELOW):
        window.add(Sample(now[0], True, ttft_ms=100.0))
    now[0] += REFRESH_S
    cached = window.summary()
    assert cached.count == EXACT_BELOW + 2
    window.add(Sample(now[0], False, ttft_ms=9000.0))
    assert window.summary() is cached  # large window: served from cache within REFRESH_S
    now[0] += REFRESH_S
    fresh = window.summary()
    assert fresh.count == cached.count + 1 and fresh.ttft_p90_ms is not None


def test_the_hedge_delay_is_the_first_p90_or_with_a_target_as_late_as_the_next_can_meet_it():
    plain = HedgeSettings(enabled=True, default_delay_ms=1000.0, min_delay_ms=20.0)
    assert plain.delay_ms(300.0, 100.0) == 300.0
    assert plain.delay_ms(None, 100.0) == 1000.0  # no stats yet
    assert plain.delay_ms(5.0, None) == 20.0
    targeted = HedgeSettings(enabled=True, default_delay_ms=1000.0, min_delay_ms=20.0, target_ms=1500.0)
    assert targeted.delay_ms(300.0, 100.0) == 1400.0  # room: wait until the next can just make it
    assert targeted.delay_ms(1450.0, 100.0) == 1450.0  # near the target: its p90, as without one
    assert targeted.delay_ms(300.0, None) == 300.0  # the next is unmeasured: no room assumed
