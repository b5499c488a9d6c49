"""Limits on their own: the backends' counters (in-process, and Redis on the local server under a
prefix of this test's own) and the `Limiter`'s admission, headers, refusals and settlement.

The end-to-end tests in test_limits.py drive the same through a gateway over HTTP; these check
every figure and message exactly, fast enough to judge each mutant of gateway/limits/ with.
The in-process backend runs on a hand-moved clock, so a window's ageing needs no waiting.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import pytest_asyncio

from gateway.errors import GatewayError
from gateway.keys import KeyRecord
from gateway.limits.limiter import (
    DEFAULT_COMPLETION_TOKENS,
    RESERVATION_TTL_S,
    Admission,
    Limiter,
    estimate_cost,
    estimate_tokens,
)
from gateway.limits.memory import WINDOW_S, MemoryBackend
from gateway.limits.periods import period_end, period_start
from gateway.limits.redis_store import RedisBackend
from gateway.limits.types import BudgetCheck, LimitBackend, WindowCheck
from gateway.records import RequestRecord
from tests.harness import current_namespace, redis_url


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture(params=["memory", "redis"], loop_scope="function")
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[LimitBackend]:
    """Each backend, the Redis one under this test's own key prefix."""
    if request.param == "memory":
        yield MemoryBackend()
        return
    redis = RedisBackend(redis_url(), prefix=f"{current_namespace()}:lim:")
    try:
        yield redis
    finally:
        await redis.aclose()


# --------------------------------------------------------------------------- backends: one contract


async def test_requests_per_minute_admit_up_to_the_limit_then_refuse(backend: LimitBackend):
    first = await backend.hit_requests("k", 3, "r1")
    # the window's only admission is this one, timed by the same clock reading: a whole minute
    assert first == WindowCheck(True, 2, pytest.approx(WINDOW_S, abs=1e-9))
    assert (await backend.hit_requests("k", 3, "r2")).remaining == 1
    third = await backend.hit_requests("k", 3, "r3")
    assert (third.allowed, third.remaining) == (True, 0)
    refused = await backend.hit_requests("k", 3, "r4")
    assert (refused.allowed, refused.remaining) == (False, 0) and 0 < refused.reset_s <= WINDOW_S
    assert (await backend.hit_requests("other", 3, "r5")).remaining == 2  # per key
    assert (await backend.hit_requests("k", 4, "r6")).allowed  # a raised limit admits at once


async def test_tokens_per_minute_admit_while_under_the_limit_and_count_corrections(backend: LimitBackend):
    first = await backend.reserve_tokens("k", 100, 60)
    assert (first.allowed, first.remaining) == (True, 40)
    second = await backend.reserve_tokens("k", 100, 60)  # under the limit when asked: admitted
    assert (second.allowed, second.remaining) == (True, 0)
    refused = await backend.reserve_tokens("k", 100, 1)
    assert (refused.allowed, refused.remaining) == (False, 0) and 0 < refused.reset_s <= WINDOW_S
    await backend.add_tokens("k", -50)  # the answers used less than reserved
    check = await backend.reserve_tokens("k", 100, 0)
    assert (check.allowed, check.remaining, check.reset_s) == (True, 30, 0.0)
    assert (await backend.reserve_tokens("other", 100, 0)).remaining == 100


async def test_adding_tokens_to_an_unseen_key_counts_them(backend: LimitBackend):
    await backend.add_tokens("fresh", 70)
    assert (await backend.reserve_tokens("fresh", 100, 0)).remaining == 30
    await backend.add_tokens("fresh", 40)
    assert not (await backend.reserve_tokens("fresh", 100, 5)).allowed


async def test_budget_reserves_until_spent_plus_held_reaches_it_then_settles(backend: LimitBackend):
    assert await backend.spent("b") is None
    first = await backend.reserve("b", 1.0, 0.25, "r1", 60.0, 0.5, 0)
    assert first == BudgetCheck(True, 0.5, 0.25)
    second = await backend.reserve("b", 1.0, 0.2, "r2", 60.0, 0.0, 0)  # initial only seeds a new bucket
    assert second == BudgetCheck(True, 0.5, pytest.approx(0.45))
    assert await backend.spent("b") == 0.5
    await backend.settle("b", "r1", 0.1)
    assert await backend.spent("b") == pytest.approx(0.6)
    third = await backend.reserve("b", 1.0, 0.2, "r3", 60.0, 0.0, 0)
    assert third.allowed and third.reserved == pytest.approx(0.4)  # r2 and r3 held
    await backend.settle("b", "r2", 0.2)
    await backend.settle("b", "r3", 0.2)
    assert await backend.spent("b") == pytest.approx(1.0)
    refused = await backend.reserve("b", 1.0, 0.01, "r4", 60.0, 0.0, 0)
    assert (refused.allowed, refused.spent, refused.reserved) == (False, pytest.approx(1.0), 0.0)


async def test_a_budget_is_refused_once_held_reservations_reach_it(backend: LimitBackend):
    assert (await backend.reserve("b", 1.0, 0.6, "r1", 60.0, 0.0, 0)).allowed
    assert (await backend.reserve("b", 1.0, 0.6, "r2", 60.0, 0.0, 0)).allowed  # 0.6 held < 1: admitted
    refused = await backend.reserve("b", 1.0, 0.01, "r3", 60.0, 0.0, 0)
    assert (refused.allowed, refused.spent, refused.reserved) == (False, 0.0, pytest.approx(1.2))
    exact = await backend.reserve("full", 1.0, 0.1, "r4", 60.0, 1.0, 0)  # spent equals the budget
    assert exact == BudgetCheck(False, 1.0, 0.0)


async def test_settling_an_unknown_bucket_creates_nothing(backend: LimitBackend):
    await backend.settle("never-reserved", "r1", 5.0)
    assert await backend.spent("never-reserved") is None


async def test_settling_a_request_the_bucket_no_longer_holds_still_counts_its_cost(backend: LimitBackend):
    assert (await backend.reserve("b", 1.0, 0.1, "r1", 60.0, 0.25, 0)).allowed
    await backend.settle("b", "expired-or-unknown", 0.5)
    assert await backend.spent("b") == 0.75
    assert (await backend.reserve("b", 1.0, 0.0, "probe", 60.0, 0.0, 0)).reserved == pytest.approx(0.1)


# --------------------------------------------------------------------------- the in-process windows


async def test_requests_age_out_of_the_window_and_reset_counts_down_to_the_oldest():
    clock = Clock()
    backend = MemoryBackend(clock)
    assert await backend.hit_requests("k", 2, "a") == WindowCheck(True, 1, WINDOW_S)
    clock.now += 10
    assert await backend.hit_requests("k", 2, "b") == WindowCheck(True, 0, WINDOW_S - 10)
    clock.now += 20
    assert await backend.hit_requests("k", 2, "c") == WindowCheck(False, 0, WINDOW_S - 30)
    clock.now = 1000.0 + WINDOW_S - 0.5  # the first is still inside
    assert not (await backend.hit_requests("k", 2, "d")).allowed
    clock.now = 1000.0 + WINDOW_S  # exactly a minute old: out
    assert await backend.hit_requests("k", 2, "e") == WindowCheck(True, 0, 10.0)


async def test_tokens_age_out_and_reset_says_when_enough_have_to_drop_below_the_limit():
    clock = Clock()
    backend = MemoryBackend(clock)
    assert await backend.reserve_tokens("k", 100, 50) == WindowCheck(True, 50, 0.0)
    clock.now += 10
    assert await backend.reserve_tokens("k", 100, 30) == WindowCheck(True, 20, 0.0)
    clock.now += 10
    # 50 + 30 + 40 = 120: over once this one is counted; below again when the first 50 leave
    assert await backend.reserve_tokens("k", 100, 40) == WindowCheck(True, 0, WINDOW_S - 20)
    clock.now += 5
    assert await backend.reserve_tokens("k", 100, 1) == WindowCheck(False, 0, WINDOW_S - 25)
    await backend.add_tokens("k", 30)  # 150 in the window: the first two have to go
    assert await backend.reserve_tokens("k", 100, 1) == WindowCheck(False, 0, WINDOW_S - 15)
    clock.now = 1000.0 + WINDOW_S  # the first 50 aged out: 100 left, still at the limit
    assert await backend.reserve_tokens("k", 100, 0) == WindowCheck(False, 0, 10.0)
    clock.now = 1000.0 + WINDOW_S + 10  # the 30 too
    assert await backend.reserve_tokens("k", 100, 0) == WindowCheck(True, 30, 0.0)


async def test_the_kept_token_sum_matches_the_window_over_many_reservations_and_corrections():
    """The backend keeps the window's sum as entries come and go; recount it from scratch each step."""
    clock = Clock()
    backend = MemoryBackend(clock)
    window: list[tuple[float, int]] = []  # what should be in the window: (time, tokens)
    limit = 10**6
    for step in range(3000):
        clock.now += (step % 7) * 0.25  # two or three minutes in all: entries leave all along
        window = [(t, n) for t, n in window if t > clock.now - WINDOW_S]
        if step % 3 == 2:
            correction = -(step % 11)  # the answers used less than reserved
            await backend.add_tokens("k", correction)
            window.append((clock.now, correction))
        else:
            tokens = 1 + step % 13
            check = await backend.reserve_tokens("k", limit, tokens)
            window.append((clock.now, tokens))
            assert check.remaining == limit - sum(n for _, n in window), step


async def test_an_unreported_budget_reservation_expires_after_its_ttl():
    clock = Clock()
    backend = MemoryBackend(clock)
    assert (await backend.reserve("b", 1.0, 1.0, "lost", 30.0, 0.0, 0)).allowed
    assert not (await backend.reserve("b", 1.0, 0.2, "r", 30.0, 0.0, 0)).allowed
    clock.now += 30.0  # at the expiry instant it still holds
    assert not (await backend.reserve("b", 1.0, 0.2, "r", 30.0, 0.0, 0)).allowed
    clock.now += 0.01
    assert await backend.reserve("b", 1.0, 0.2, "r", 30.0, 0.0, 0) == BudgetCheck(True, 0.0, 0.2)


# --------------------------------------------------------------------------- estimates


def test_estimates_take_a_quarter_token_per_prompt_byte_and_the_completion_cap():
    messages = [{"role": "user", "content": "x" * 37}]
    prompt = len(orjson.dumps(messages)) // 4 + 1
    assert estimate_tokens({"messages": messages}) == (prompt, DEFAULT_COMPLETION_TOKENS)
    assert estimate_tokens({"messages": messages}, 64) == (prompt, 64)
    assert estimate_tokens({"messages": messages, "max_tokens": 10}) == (prompt, 10)
    assert estimate_tokens({"messages": messages, "max_completion_tokens": 20, "max_tokens": 10}) == (
        prompt,
        20,
    )
    assert estimate_tokens({"messages": messages, "max_completion_tokens": 0, "max_tokens": 10}) == (
        prompt,
        10,
    )
    assert estimate_tokens({"messages": messages, "max_tokens": 1}) == (prompt, 1)
    for cap in (0, -5, "100", 2.5, None):
        assert estimate_tokens({"messages": messages, "max_tokens": cap}) == (
            prompt,
            DEFAULT_COMPLETION_TOKENS,
        )
    assert estimate_tokens({"max_tokens": 5}) == (len(b'""') // 4 + 1, 5)


def test_embeddings_input_has_no_completion_and_messages_win_over_input():
    texts = ["a" * 40, "b" * 40]
    assert estimate_tokens({"input": texts, "max_tokens": 9}) == (len(orjson.dumps(texts)) // 4 + 1, 0)
    messages = [{"role": "user", "content": "hi"}]
    both = {"messages": messages, "input": texts, "max_tokens": 9}
    assert estimate_tokens(both) == (len(orjson.dumps(messages)) // 4 + 1, 9)


def test_estimated_cost_prices_prompt_and_completion_per_million():
    body = {"messages": "x" * 398, "max_tokens": 1000}  # 400 bytes of JSON: 101 prompt tokens
    assert estimate_cost(body, (2.0, 10.0)) == (101 * 2.0 + 1000 * 10.0) / 1e6
    assert estimate_cost({"messages": "x" * 398}, (0.0, 1.0), 10) == 10 / 1e6


# --------------------------------------------------------------------------- the limiter

BODY = {"messages": "x" * 398, "max_tokens": 1000}  # 101 + 1000 tokens
PRICES = (2.0, 10.0)  # USD per million: the worst case of BODY costs 0.010202


def key(**limits: Any) -> KeyRecord:
    return KeyRecord("key-1", "team-a", "sk-gw-ab", "hash", **limits)


class Ledger:
    """The ledger's spend per key, as the database would answer; counts its reads."""

    def __init__(
        self, spent: float = 0.0, fails: bool = False, by_key: dict[str, float] | None = None
    ) -> None:
        self.spent = spent
        self.by_key = by_key or {}
        self.fails = fails
        self.reads: list[tuple[str, datetime]] = []

    async def __call__(self, key_id: str, start: datetime) -> float:
        self.reads.append((key_id, start))
        if self.fails:
            raise ConnectionRefusedError("database away")
        return self.by_key.get(key_id, self.spent)


def limiter(backend: LimitBackend | None = None, ledger: Ledger | None = None, **kw: Any) -> Limiter:
    return Limiter(backend or MemoryBackend(Clock()), ledger or Ledger(), **kw)


async def refusal(lim: Limiter, k: KeyRecord, request_id: str = "r", **kw: Any) -> GatewayError:
    with pytest.raises(GatewayError) as err:
        await lim.admit(
            k, kw.get("models", ["m"]), kw.get("body", BODY), request_id, kw.get("prices", PRICES)
        )
    assert request_id not in lim.in_flight
    return err.value


async def settled(lim: Limiter) -> None:
    """Wait for the settlements the limiter spawned (bounded)."""
    await lim.drain(5.0)


async def test_without_a_key_nothing_is_limited_or_held():
    lim = limiter()
    admission = await lim.admit(None, ["m"], BODY, "r1", PRICES)
    assert admission == Admission("r1", None)
    assert lim.in_flight == {"r1": admission}
    lim.record(RequestRecord("r1", "m", cost_usd=1.0, prompt_tokens=5))
    assert lim.in_flight == {} and not lim._tasks


async def test_a_key_without_limits_is_admitted_with_no_headers():
    ledger = Ledger()
    lim = limiter(ledger=ledger)
    admission = await lim.admit(key(models=()), ["m"], BODY, "r1", PRICES)
    assert (admission.headers, admission.bucket, admission.tokens_reserved) == ({}, None, 0)
    assert ledger.reads == []


async def test_models_outside_the_allow_list_are_refused_naming_where_they_came_from():
    lim = limiter()
    k = key(models=("small", "medium"))
    err = await refusal(lim, k, models=["large"])
    assert (err.status, err.code, err.param) == (403, "model_not_allowed", "model")
    assert err.message == "this key may not use model 'large'; allowed: small, medium"
    err = await refusal(lim, k, models=["small", "large"])
    assert (err.status, err.param) == (403, "models")
    assert (await lim.admit(k, ["small", "medium"], BODY, "ok", PRICES)).key is k


async def test_rpm_sets_the_headers_and_refuses_with_429_and_retry_after():
    clock = Clock()
    lim = limiter(MemoryBackend(clock))
    k = key(rpm=2)
    first = await lim.admit(k, ["m"], BODY, "r1", PRICES)
    assert first.headers["x-ratelimit-reset-requests"] == "60.000s" and first.tokens_reserved == 0
    clock.now += 12.5
    assert (await lim.admit(k, ["m"], BODY, "r2", PRICES)).headers["x-ratelimit-reset-requests"] == "47.500s"
    clock.now += 0.25
    err = await refusal(lim, k, "r3")
    assert (err.status, err.code) == (429, "rate_limit_exceeded")
    assert err.message == "rate limit reached for key 'team-a': 2 requests per minute; retry in 48 s"
    assert err.headers == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "47.250s",
        "retry-after": "48",
    }


async def test_retry_after_is_at_least_one_second():
    clock = Clock()
    lim = limiter(MemoryBackend(clock))
    await lim.admit(key(rpm=1), ["m"], BODY, "r1", PRICES)
    clock.now += WINDOW_S - 0.2
    err = await refusal(lim, key(rpm=1), "r2")
    assert err.headers["retry-after"] == "1" and err.message.endswith("retry in 1 s")


async def test_tpm_reserves_the_worst_case_and_settles_to_the_actual_tokens():
    backend = MemoryBackend(Clock())
    lim = limiter(backend)
    k = key(tpm=5000)
    admission = await lim.admit(k, ["m"], BODY, "r1", PRICES)
    assert admission.tokens_reserved == 1101
    assert admission.headers == {
        "x-ratelimit-limit-tokens": "5000",
        "x-ratelimit-remaining-tokens": "3899",
        "x-ratelimit-reset-tokens": "0.000s",
    }
    lim.record(RequestRecord("r1", "m", key_id=k.id, prompt_tokens=100, completion_tokens=50))
    await settled(lim)
    assert (await backend.reserve_tokens(k.id, 5000, 0)).remaining == 4850
    # one that used exactly what it reserved leaves the count alone
    await lim.admit(k, ["m"], BODY, "r2", PRICES)
    lim.record(RequestRecord("r2", "m", prompt_tokens=101, completion_tokens=1000))
    await settled(lim)
    assert (await backend.reserve_tokens(k.id, 5000, 0)).remaining == 4850 - 1101


async def test_tpm_refuses_with_429_once_the_window_is_full():
    lim = limiter()
    k = key(tpm=1000)
    assert (await lim.admit(k, ["m"], BODY, "r1", PRICES)).headers["x-ratelimit-remaining-tokens"] == "0"
    err = await refusal(lim, k, "r2")
    assert (err.status, err.code) == (429, "rate_limit_exceeded")
    assert err.message == "rate limit reached for key 'team-a': 1000 tokens per minute; retry in 60 s"
    assert err.headers == {
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "60.000s",
        "retry-after": "60",
    }


async def test_rpm_and_tpm_headers_together():
    lim = limiter()
    headers = (await lim.admit(key(rpm=10, tpm=10_000), ["m"], BODY, "r1", PRICES)).headers
    assert headers["x-ratelimit-remaining-requests"] == "9"
    assert headers["x-ratelimit-remaining-tokens"] == str(10_000 - 1101)


async def test_budget_reserves_the_worst_case_cost_in_the_periods_bucket_and_settles_the_actual():
    backend = MemoryBackend(Clock())
    ledger = Ledger(spent=0.25)
    lim = limiter(backend, ledger)
    k = key(budget_usd=1.0, budget_period="day")
    admission = await lim.admit(k, ["m"], BODY, "r1", PRICES)
    start = period_start("day", datetime.now(UTC))
    assert admission.bucket == f"key-1:day:{int(start.timestamp())}"
    assert ledger.reads == [("key-1", start)]
    assert admission.tokens_reserved == 0  # no tpm: tokens are estimated for the budget only
    held = await backend.reserve(admission.bucket, 1.0, 0.0, "probe", 60.0, 0.0, 0)
    assert (held.spent, held.reserved) == (0.25, (101 * 2.0 + 1000 * 10.0) / 1e6)
    lim.record(RequestRecord("r1", "m", cost_usd=0.003))
    await settled(lim)
    assert await backend.spent(admission.bucket) == pytest.approx(0.253)
    assert await lim.spent(k) == (pytest.approx(0.253), period_end("day", datetime.now(UTC)))
    await lim.admit(k, ["m"], BODY, "r2", PRICES)
    assert len(ledger.reads) == 1  # the ledger is read once per bucket and process


async def test_a_budget_without_a_period_is_monthly():
    lim = limiter()
    admission = await lim.admit(key(budget_usd=1.0), ["m"], BODY, "r1", PRICES)
    start = period_start("month", datetime.now(UTC))
    assert admission.bucket == f"key-1:month:{int(start.timestamp())}"


async def test_an_exhausted_budget_gives_402_naming_the_period_and_its_reset():
    lim = limiter(ledger=Ledger(spent=2.0))
    k = key(budget_usd=2.0, budget_period="week", rpm=5)
    err = await refusal(lim, k)
    end = period_end("week", datetime.now(UTC))
    assert end is not None
    assert (err.status, err.code) == (402, "budget_exceeded")
    assert err.message == (
        "budget exhausted for key 'team-a': $2.000000 spent of its weekly budget of $2.00 "
        f"($0.000000 held by requests in flight); it resets at {end.isoformat().replace('+00:00', 'Z')}"
    )
    assert err.headers["x-ratelimit-remaining-requests"] == "4"  # the rate headers still go out


async def test_a_total_budget_never_resets_and_says_so():
    lim = limiter(ledger=Ledger(spent=1.0))
    k = key(budget_usd=1.0, budget_period="total")
    err = await refusal(lim, k)
    assert err.message.endswith(
        "total budget of $1.00 ($0.000000 held by requests in flight); it does not reset"
    )
    assert (await lim.spent(k))[1] is None


async def test_a_refusal_after_reserving_tokens_gives_them_back():
    backend = MemoryBackend(Clock())
    lim = limiter(backend, Ledger(spent=5.0))
    k = key(tpm=5000, budget_usd=1.0)
    await refusal(lim, k)
    await settled(lim)
    assert (await backend.reserve_tokens(k.id, 5000, 0)).remaining == 5000


async def test_a_database_away_when_the_budget_is_first_read_is_a_503():
    lim = limiter(ledger=Ledger(fails=True))
    err = await refusal(lim, key(budget_usd=1.0))
    assert (err.status, err.code) == (503, "budget_unavailable")
    assert err.message == "budget state is unavailable (database unreachable); retry shortly"
    assert isinstance(err.__cause__, ConnectionRefusedError)


async def test_limits_fail_open_when_the_backend_is_unreachable(caplog: pytest.LogCaptureFixture):
    backend = RedisBackend("redis://127.0.0.1:1/0", prefix=f"{current_namespace()}:")
    try:
        lim = limiter(backend)
        with caplog.at_level(logging.WARNING, logger="gateway.limits"):
            admission = await lim.admit(key(rpm=1, budget_usd=1.0), ["m"], BODY, "r1", PRICES)
        assert admission.headers == {} and lim.in_flight == {"r1": admission}
        [failed_open] = [r.getMessage() for r in caplog.records if "failed open" in r.getMessage()]
        assert re.fullmatch(r"limit check for key-1 failed open: \w*Error: .*127\.0\.0\.1.*", failed_open)
        # settling against the unreachable backend is logged, not raised
        admission.bucket, admission.tokens_reserved = "key-1:month:0", 0
        with caplog.at_level(logging.WARNING, logger="gateway.limits"):
            lim.record(RequestRecord("r1", "m", cost_usd=0.5))
            await settled(lim)
        [failed] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("settling")]
        assert re.fullmatch(r"settling r1 failed: \w*Error: .*127\.0\.0\.1.*", failed)
    finally:
        await backend.aclose()


async def test_release_frees_the_reservations_of_a_request_that_ended_without_a_record():
    backend = MemoryBackend(Clock())
    lim = limiter(backend)
    k = key(tpm=5000, budget_usd=1.0)
    admission = await lim.admit(k, ["m"], BODY, "r1", PRICES)
    assert admission.bucket is not None
    lim.release("r1")
    await settled(lim)
    assert lim.in_flight == {}
    assert (await backend.reserve_tokens(k.id, 5000, 0)).remaining == 5000
    assert (await backend.reserve(admission.bucket, 1.0, 0.0, "probe", 60.0, 0.0, 0)).reserved == 0.0
    assert await backend.spent(admission.bucket) == 0.0
    lim.release("unknown")  # nothing to do
    await lim.admit(key(), ["m"], BODY, "r2", PRICES)
    lim.release("r2")  # no reservation: nothing spawned
    assert lim.in_flight == {} and not lim._tasks


async def test_release_frees_a_budget_reservation_without_tokens():
    backend = MemoryBackend(Clock())
    lim = limiter(backend)
    admission = await lim.admit(key(budget_usd=1.0), ["m"], BODY, "r1", PRICES)
    assert admission.bucket is not None and admission.tokens_reserved == 0
    lim.release("r1")
    await settled(lim)
    assert (await backend.reserve(admission.bucket, 1.0, 0.0, "probe", 60.0, 0.0, 0)).reserved == 0.0


async def test_each_key_has_its_own_rpm_window_and_its_own_ledger_spend():
    ledger = Ledger(by_key={"key-a": 0.99, "key-b": 0.0})
    lim = limiter(ledger=ledger)
    a = KeyRecord("key-a", "a", "sk-gw-aa", "h", rpm=1, budget_usd=1.0)
    b = KeyRecord("key-b", "b", "sk-gw-bb", "h", rpm=1, budget_usd=1.0)
    await lim.admit(a, ["m"], BODY, "r1", PRICES)  # 0.99 spent + 0.0102 held: the next one is refused
    admitted = await lim.admit(b, ["m"], BODY, "r2", PRICES)
    assert admitted.headers["x-ratelimit-remaining-requests"] == "0"
    assert (await refusal(lim, a, "r3", body={"messages": "x", "max_tokens": 1})).status == 429
    assert [k for k, _ in ledger.reads] == ["key-a", "key-b"]


async def test_the_limiter_counts_each_request_of_the_window_on_either_backend(backend: LimitBackend):
    lim = limiter(backend)
    k = key(rpm=2)
    first = await lim.admit(k, ["m"], BODY, "r1", PRICES)
    assert first.headers == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-reset-requests": "60.000s",
    }
    second = await lim.admit(k, ["m"], BODY, "r2", PRICES)
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    assert (await refusal(lim, k, "r3")).status == 429


async def test_redis_keys_live_under_the_default_prefix_unless_told_otherwise():
    backend = RedisBackend(redis_url())
    key_id = f"{current_namespace()}-{uuid.uuid4().hex[:8]}"
    try:
        await backend.hit_requests(key_id, 5, "r1")
        assert await backend._redis.exists(f"gw:lim:rpm:{key_id}") == 1
    finally:
        await backend._redis.delete(f"gw:lim:rpm:{key_id}")
        await backend.aclose()


async def test_recording_an_unknown_request_or_a_key_without_tpm_counts_no_tokens():
    backend = MemoryBackend(Clock())
    lim = limiter(backend)
    lim.record(RequestRecord("never-admitted", "m", prompt_tokens=5))
    await lim.admit(key(budget_usd=1.0), ["m"], BODY, "r1", PRICES)
    lim.record(RequestRecord("r1", "m", prompt_tokens=400, completion_tokens=100, cost_usd=0.001))
    await settled(lim)
    assert (await backend.reserve_tokens("key-1", 1000, 0)).remaining == 1000


async def test_spent_reads_the_ledger_when_this_process_has_no_live_counter():
    ledger = Ledger(spent=0.75)
    lim = limiter(ledger=ledger)
    k = key(budget_usd=5.0, budget_period="month")
    now = datetime.now(UTC)
    assert await lim.spent(k) == (0.75, period_end("month", now))
    assert ledger.reads == [("key-1", period_start("month", now))]
    assert await limiter(ledger=Ledger(spent=0.5)).spent(key(budget_usd=1.0)) == (
        0.5,
        period_end("month", now),
    )


async def test_drain_waits_for_in_flight_records_and_their_settlements():
    backend = MemoryBackend(Clock())
    lim = limiter(backend)
    k = key(budget_usd=1.0, budget_period="total")
    admission = await lim.admit(k, ["m"], BODY, "r1", PRICES)
    assert admission.bucket is not None

    async def report_later() -> None:
        await asyncio.sleep(0.05)
        lim.record(RequestRecord("r1", "m", cost_usd=0.125))

    reporter = asyncio.create_task(report_later())
    await lim.drain(10.0)
    await reporter
    assert lim.in_flight == {} and not lim._tasks
    assert await backend.spent(admission.bucket) == 0.125


async def test_drain_gives_up_at_its_deadline():
    lim = limiter()
    await lim.admit(key(), ["m"], BODY, "never-reports", PRICES)
    await lim.drain(0.05)
    assert "never-reports" in lim.in_flight


def test_the_reservation_ttl_and_default_completion_are_configurable():
    lim = Limiter(MemoryBackend(), Ledger(), reservation_ttl_s=5.0, default_completion_tokens=7)
    assert (lim._ttl_s, lim._default_completion) == (5.0, 7)
    assert Limiter(MemoryBackend(), Ledger())._ttl_s == RESERVATION_TTL_S


async def test_the_reservation_expires_after_the_configured_ttl_and_the_completion_default_applies():
    clock = Clock()
    backend = MemoryBackend(clock)
    lim = Limiter(backend, Ledger(), reservation_ttl_s=5.0, default_completion_tokens=7)
    body = {"messages": "x" * 398}  # 101 + 7 tokens
    admission = await lim.admit(key(tpm=1000, budget_usd=1.0), ["m"], body, "r1", PRICES)
    assert admission.tokens_reserved == 108
    assert admission.bucket is not None
    probe = await backend.reserve(admission.bucket, 1.0, 0.0, "p", 60.0, 0.0, 0)
    assert probe.reserved == pytest.approx((101 * 2.0 + 7 * 10.0) / 1e6)
    clock.now += 5.01
    assert (await backend.reserve(admission.bucket, 1.0, 0.0, "p", 60.0, 0.0, 0)).reserved == 0.0


async def test_the_budget_bucket_expires_two_days_after_its_period_in_redis():
    backend = RedisBackend(redis_url(), prefix=f"{current_namespace()}:lim:")
    try:
        lim = limiter(backend)
        admission = await lim.admit(key(budget_usd=1.0, budget_period="day"), ["m"], BODY, "r1", PRICES)
        end = period_end("day", datetime.now(UTC))
        assert end is not None
        expire_at = await backend._redis.expiretime(f"{current_namespace()}:lim:budget:{admission.bucket}")
        assert expire_at == int((end + timedelta(days=2)).timestamp())
        total = await lim.admit(key(budget_usd=1.0, budget_period="total"), ["m"], BODY, "r2", PRICES)
        assert await backend._redis.ttl(f"{current_namespace()}:lim:budget:{total.bucket}") == -1  # never
    finally:
        await backend.aclose()


async def test_a_total_budget_over_redis_keeps_what_was_settled_across_reservations():
    backend = RedisBackend(redis_url(), prefix=f"{current_namespace()}:lim:")
    try:
        lim = limiter(backend, Ledger(spent=0.25))
        k = key(budget_usd=10.0, budget_period="total")
        admission = await lim.admit(k, ["m"], BODY, "r1", PRICES)
        lim.record(RequestRecord("r1", "m", cost_usd=0.5))
        await settled(lim)
        assert await backend.spent(admission.bucket or "") == 0.75
        await lim.admit(k, ["m"], BODY, "r2", PRICES)
        assert await lim.spent(k) == (0.75, None)
    finally:
        await backend.aclose()
