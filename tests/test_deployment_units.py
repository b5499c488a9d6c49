"""A deployment's identity and prices, and the record of a request's attempts, on their own.

What a request costs is what the ledger books and budgets are charged, and the attempt record is
what `x-gateway-route` and the ledger's attempt log show; both are compared figure by figure.
"""

from __future__ import annotations

import time

import pytest

from providers.errors import UpstreamStatusError, UpstreamTimeout
from providers.types import Timeouts, Usage
from router_policies.attempts import AllAttemptsFailed, Attempt, AttemptLog
from router_policies.deployment import Deployment, ModelGroup


def dep(**kw) -> Deployment:
    return Deployment("groq", "llama-8b", None, 2.0, 8.0, **kw)  # type: ignore[arg-type]


def test_a_deployment_is_named_provider_slash_model_and_has_defaults():
    d = dep()
    assert d.id == "groq/llama-8b"
    assert (d.timeouts, d.context_window_tokens, d.max_concurrency) == (Timeouts(), None, None)
    assert (d.self_hosted, d.data_collection, d.supported_parameters, d.simulated) == (
        False,
        "allow",
        None,
        False,
    )
    assert (d.price_source, d.quantization, d.zdr) == ("config", "unknown", False)
    assert (d.cached_input_price_per_mtok, d.reasoning_price_per_mtok) == (None, None)
    assert d.cached_price == 2.0
    assert dep(cached_input_price_per_mtok=0.5).cached_price == 0.5
    assert dep(cached_input_price_per_mtok=0.0).cached_price == 0.0  # free cache reads are a price too
    assert dep() != dep()  # identity, not value: two configs of one deployment are two deployments
    group = ModelGroup("llama", (d,))
    assert (group.name, group.deployments) == ("llama", (d,))


def test_cost_prices_plain_cached_and_reasoning_tokens_each_at_its_own_rate():
    d = dep(cached_input_price_per_mtok=0.5, reasoning_price_per_mtok=20.0)
    assert d.cost_usd(1000, 100) == (1000 * 2.0 + 100 * 8.0) / 1e6
    assert d.cost_usd(1000, 100, cached_tokens=600) == (400 * 2.0 + 600 * 0.5 + 100 * 8.0) / 1e6
    assert d.cost_usd(1000, 100, reasoning_tokens=40) == (1000 * 2.0 + 60 * 8.0 + 40 * 20.0) / 1e6
    assert d.cost_usd(0, 0) == 0.0
    # without their own prices cached tokens cost the input price, reasoning the output price
    plain = dep()
    assert plain.cost_usd(1000, 100, 600, 40) == plain.cost_usd(1000, 100) == (1000 * 2.0 + 100 * 8.0) / 1e6


def test_cost_clamps_impossible_token_counts_and_is_never_negative():
    d = dep(cached_input_price_per_mtok=0.5, reasoning_price_per_mtok=20.0)
    assert d.cost_usd(10, 5, cached_tokens=99, reasoning_tokens=99) == (10 * 0.5 + 5 * 20.0) / 1e6
    assert d.cost_usd(10, 5, cached_tokens=-3, reasoning_tokens=-3) == (10 * 2.0 + 5 * 8.0) / 1e6
    assert d.cost_usd(-100, -100) == 0.0
    assert d.cost_usd(10, 0, reasoning_tokens=5) == 10 * 2.0 / 1e6  # no completion: nothing reasoned
    assert d.cost_usd(0, 10, cached_tokens=5) == 10 * 8.0 / 1e6  # no prompt: nothing cached
    assert d.cost_usd(-10, 5, cached_tokens=4) == pytest.approx((-10 * 2.0 + 5 * 8.0) / 1e6)


def test_cost_of_a_usage_reads_its_cached_and_reasoning_tokens():
    d = dep(cached_input_price_per_mtok=0.5, reasoning_price_per_mtok=20.0)
    usage = Usage(1000, 100, cached_tokens=600, reasoning_tokens=40)
    assert (
        d.cost_of(usage)
        == d.cost_usd(1000, 100, 600, 40)
        == (400 * 2.0 + 600 * 0.5 + 60 * 8.0 + 40 * 20.0) / 1e6
    )


def test_a_failed_attempt_keeps_the_errors_type_status_message_and_time():
    attempt = Attempt("groq/llama-8b", "groq", 1.0)
    assert (attempt.outcome, attempt.status, attempt.message, attempt.elapsed_ms) == (
        "pending",
        None,
        None,
        0.0,
    )
    attempt.failed(UpstreamStatusError("upstream said 503", provider="groq", status=503), 12.345)
    assert (attempt.outcome, attempt.status, attempt.message, attempt.elapsed_ms) == (
        "upstream_status",
        503,
        "upstream said 503",
        12.345,
    )
    timed_out = Attempt("b", "p", 0.0)
    timed_out.failed(UpstreamTimeout("no first byte in 150 ms", phase="first_byte"), 150.0)
    assert (timed_out.outcome, timed_out.status) == ("timeout", None)


def test_an_attempt_describes_itself_for_the_ledger_and_metadata():
    attempt = Attempt(
        "groq/llama-8b", "groq", 1.0, elapsed_ms=12.3456, outcome="ok", status=200, offset_ms=3.14159
    )
    assert attempt.as_dict() == {
        "deployment": "groq/llama-8b",
        "provider": "groq",
        "outcome": "ok",
        "status": 200,
        "start_ms": 3.14,
        "elapsed_ms": 12.35,
    }
    hedged = Attempt("a", "p", 0.0, outcome="cancelled", message="lost the race", hedge=True)
    assert hedged.as_dict() == {
        "deployment": "a",
        "provider": "p",
        "outcome": "cancelled",
        "status": None,
        "start_ms": 0.0,
        "elapsed_ms": 0.0,
        "hedge": True,
        "message": "lost the race",
    }
    assert "message" not in Attempt("a", "p", 0.0, message="").as_dict()


def test_the_log_stamps_each_attempt_from_the_requests_start_and_lists_the_route():
    before = time.monotonic()
    log = AttemptLog()
    assert before <= log.started_at <= time.monotonic() and log.attempts == []
    first = log.begin("groq/llama-8b", "groq")
    second = log.begin("together/llama", "together", hedge=True)
    assert log.attempts == [first, second]
    assert (first.deployment_id, first.provider, first.hedge, second.hedge) == (
        "groq/llama-8b",
        "groq",
        False,
        True,
    )
    assert first.started_at <= second.started_at
    assert first.offset_ms == pytest.approx((first.started_at - log.started_at) * 1000)
    assert second.offset_ms == pytest.approx((second.started_at - log.started_at) * 1000)
    assert 0.0 <= first.offset_ms <= second.offset_ms
    first.outcome, second.outcome = "timeout", "ok"
    assert log.route_header() == "groq/llama-8b;timeout, together/llama;ok"
    assert AttemptLog().route_header() == ""


def test_all_attempts_failed_carries_them_and_the_last_error():
    attempts = [Attempt("a", "p", 0.0)]
    error = UpstreamStatusError("bad gateway", status=502)
    failed = AllAttemptsFailed(attempts, error)
    assert (str(failed), failed.attempts, failed.last_error) == ("all deployments failed", attempts, error)
