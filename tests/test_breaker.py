"""The circuit breaker on its own: exact thresholds, cooldowns, Retry-After, probes, shared openings."""

from __future__ import annotations

import pytest

from router_policies.breaker import CLOSED, HALF_OPEN, OPEN, BreakerSettings, CircuitBreaker


def breaker(threshold: int = 3, cooldown_s: float = 10.0, max_cooldown_s: float = 300.0) -> CircuitBreaker:
    return CircuitBreaker(BreakerSettings(threshold, cooldown_s, max_cooldown_s))


def test_defaults():
    assert BreakerSettings() == BreakerSettings(failure_threshold=3, cooldown_s=10.0, max_cooldown_s=300.0)
    fresh = CircuitBreaker()
    assert fresh.settings == BreakerSettings() and fresh.state(0.0) == CLOSED and fresh.allows(0.0)
    assert (fresh.failures, fresh.open_until, fresh.opened_times, fresh.reason) == (0, 0.0, 0, "")


@pytest.mark.parametrize("threshold", [1, 2, 3, 5])
def test_opens_on_exactly_the_threshold_th_consecutive_failure(threshold):
    b = breaker(threshold)
    for i in range(threshold - 1):
        assert b.on_failure(100.0, None, "500") is False, i
        assert b.state(100.0) == CLOSED and b.allows(100.0)
    assert b.on_failure(100.0, None, "500") is True
    assert b.state(100.0) == OPEN and not b.allows(100.0)
    assert b.open_until == 110.0 and b.opened_times == 1
    assert b.reason == f"{threshold} consecutive failures (500)"


def test_a_success_resets_the_count():
    b = breaker(3)
    b.on_failure(0.0, None, "x")
    b.on_failure(0.0, None, "x")
    b.on_success()
    assert b.failures == 0
    assert b.on_failure(0.0, None, "x") is False and b.on_failure(0.0, None, "x") is False
    assert b.state(0.0) == CLOSED


def test_open_until_the_cooldown_then_half_open_with_one_probe():
    b = breaker(1, cooldown_s=10.0)
    b.on_failure(100.0, None, "x")
    assert b.state(109.999) == OPEN and b.state(110.0) == HALF_OPEN
    assert b.allows(110.0)
    b.on_attempt(110.0)  # the probe goes out
    assert not b.allows(110.0) and b.state(110.0) == HALF_OPEN
    b.on_release()  # cancelled without a verdict: the slot is free again
    assert b.allows(110.0)
    b.on_attempt(110.0)
    b.on_success()
    assert b.state(110.0) == CLOSED and b.allows(110.0)
    assert (b.failures, b.open_until, b.opened_times, b.reason) == (0, 0.0, 0, "")


def test_an_attempt_while_closed_takes_no_probe_slot():
    b = breaker(1)
    b.on_attempt(0.0)
    b.on_failure(0.0, None, "x")
    assert b.allows(10.0)  # half-open, and no probe counted from the closed-state attempt


def test_a_failed_probe_reopens_at_once_with_a_doubled_cooldown_up_to_the_cap():
    b = breaker(3, cooldown_s=10.0, max_cooldown_s=35.0)
    for _ in range(3):
        b.on_failure(0.0, None, "x")
    assert b.open_until == 10.0
    b.on_attempt(10.0)
    assert b.on_failure(10.0, None, "x") is True  # one failure suffices when half-open
    assert b.open_until == 30.0 and b.opened_times == 2 and b.allows(30.0)
    b.on_attempt(30.0)
    b.on_failure(30.0, None, "x")
    assert b.open_until == 65.0  # 40 s capped at 35 s
    assert b.reason == "5 consecutive failures (x)"


def test_retry_after_opens_exactly_that_long_on_the_first_failure():
    b = breaker(5)
    assert b.on_failure(50.0, 2.5, "rate_limited") is True
    assert b.open_until == 52.5 and b.state(52.4) == OPEN and b.state(52.5) == HALF_OPEN
    assert b.reason == "rate_limited; Retry-After 2.5s"
    assert b.on_failure(50.0, 0.0, "x") is False and b.open_until == 52.5  # a zero Retry-After counts only


def test_a_shorter_opening_does_not_shorten_a_longer_one():
    b = breaker(5)
    b.on_failure(0.0, 30.0, "a")
    assert b.open_for(0.0, 10.0, "b") is False and b.open_until == 30.0 and b.reason == "a; Retry-After 30s"
    assert b.open_for(0.0, 30.0, "c") is False  # the same end is no extension either
    assert b.open_for(0.0, 40.0, "d") is True and b.open_until == 40.0 and b.opened_times == 2


def test_adopting_another_replicas_opening():
    b = breaker(3)
    b.on_failure(0.0, 1.0, "mine")
    b.on_attempt(1.0)  # our probe is out
    b.adopt(20.0, "theirs (seen by another replica)")
    assert b.open_until == 20.0 and b.reason == "theirs (seen by another replica)"
    assert b.allows(20.0)  # the probe slot was freed with the new opening
    b.adopt(5.0, "older")
    assert b.open_until == 20.0 and b.reason == "theirs (seen by another replica)"
    assert b.opened_times == 1  # adopting is not an opening of ours


def test_an_opening_set_directly_still_lets_exactly_one_probe_through():
    fresh = breaker(3)
    fresh.open_for(0.0, 10.0, "told to")
    assert fresh.allows(10.0)  # no probe was ever out
    after_success = breaker(1)
    after_success.on_failure(0.0, None, "x")
    after_success.on_attempt(10.0)
    after_success.on_success()
    after_success.open_for(20.0, 5.0, "again")
    assert after_success.allows(25.0)  # the success freed the probe slot


def test_a_zero_retry_after_opens_nothing_on_its_own():
    b = breaker(5)
    assert b.on_failure(50.0, 0.0, "x") is False
    assert b.open_until == 0.0 and b.state(50.0) == CLOSED and b.failures == 1


def test_a_failed_probe_reopens_even_below_the_threshold():
    b = breaker(5)
    b.on_failure(0.0, 2.0, "rate_limited")  # one failure, opened by Retry-After
    b.on_attempt(2.0)  # half-open: the probe
    assert b.on_failure(2.0, None, "500") is True  # 2 failures of 5, but a failed probe reopens
    assert b.open_until == 22.0 and b.reason == "2 consecutive failures (500)"  # 10 s doubled once


def test_adopting_the_same_opening_changes_nothing():
    b = breaker(5)
    b.on_failure(0.0, 10.0, "mine")
    b.on_attempt(10.0)
    b.adopt(10.0, "theirs")
    assert b.reason == "mine; Retry-After 10s" and not b.allows(10.0)  # our probe is still out


def test_a_shared_breaker_half_opens_only_with_the_probe_lease():
    b = breaker(1)
    b.shared = True
    b.on_failure(0.0, None, "x")  # open until 10
    assert not b.due(9.9) and b.due(10.0)
    assert b.state(10.0) == OPEN and not b.allows(10.0)  # another replica may be probing
    b.lease = True
    assert b.state(10.0) == HALF_OPEN and b.allows(10.0)
    b.on_attempt(10.0)
    assert b.probing and not b.allows(10.0)
    assert b.on_failure(10.0, None, "x") is True and not b.lease  # reopened: the lease is spent
    assert b.open_until == 30.0 and not b.allows(30.0)


def test_an_adopted_opening_brings_its_count_of_openings():
    b = breaker(1)
    b.adopt(10.0, "theirs", opened_times=2)
    b.on_attempt(10.0)  # not shared (Redis away): this replica probes on its own
    assert b.on_failure(10.0, None, "x") is True
    assert b.open_until == 50.0 and b.opened_times == 3  # 10 s doubled twice: the third opening
