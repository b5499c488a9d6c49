"""The Redis store's shared readings, probe lease and scrape lease, on the real Redis.

Three `RedisStore`s on one per-test prefix stand for three replicas; each test drives
their syncs by hand, so the order of events is the test's, not the scheduler's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
import redis

from providers.types import RateLimitInfo
from router_policies.breaker import CLOSED, HALF_OPEN, OPEN, BreakerSettings
from router_policies.redis_store import RedisStore
from router_policies.shared_state import decode_opening, decode_rate_limit, encode_rate_limit
from router_policies.stats import RateLimitState, ServerLoad
from tests.harness import async_wait_for, current_namespace, redis_url

DEP = "cheap/cheap-model"
pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def replicas() -> AsyncIterator[Callable[..., list[RedisStore]]]:
    """`count` stores on this test's prefix; `lease_s` shortens their probe lease from its default."""
    url = redis_url()
    made: list[RedisStore] = []

    def make(count: int, cooldown_s: float = 0.3, lease_s: float | None = None) -> list[RedisStore]:
        for _ in range(count):
            store = RedisStore(
                url,
                prefix=current_namespace(),
                op_timeout_s=2.0,
                breaker_settings=BreakerSettings(failure_threshold=1, cooldown_s=cooldown_s),
            )
            if lease_s is not None:
                store.breakers.lease_s = lease_s
            store.track([DEP])
            made.append(store)
        return made[-count:]

    yield make
    for store in made:
        await store.aclose()
    conn = redis.Redis.from_url(url)
    keys = conn.keys(f"{current_namespace()}:*")
    if keys:
        conn.delete(*keys)
    conn.close()


async def sync(*stores: RedisStore) -> None:
    for store in stores:
        assert await store.sync_once()


async def open_and_wait_out(opener: RedisStore, *others: RedisStore) -> float:
    """Open DEP's breaker on `opener`, share it with `others`, and wait out its cooldown; its end."""
    opener.started(DEP)
    opener.failed(DEP, None, "server_error 500", counts=True)
    until = opener.state(DEP).breaker.open_until
    await sync(opener, *others)
    await async_wait_for(lambda: opener.now() > until + 0.01, 5.0)
    return until


async def opened_half_open(stores: list[RedisStore]) -> list[RedisStore]:
    """The first store opens DEP's breaker, all share it, its cooldown runs out and all sync again:
    DEP is half-open everywhere and the first to sync after the cooldown holds the probe lease."""
    await sync(*stores)
    await open_and_wait_out(*stores)
    await sync(*stores)
    return stores


async def test_readings_round_trip_and_reject_damage() -> None:
    reading = RateLimitState(RateLimitInfo(100, 3, None, None, 20.0, None, None), 1234.5)
    at, payload = encode_rate_limit(reading)
    decoded = decode_rate_limit(f"{at}|{payload}")
    assert decoded is not None and decoded.info == reading.info and decoded.at == 1234.5
    assert decode_rate_limit("1|[1,2]") is None  # a reading of another shape
    assert decode_rate_limit("1|[true,1,1,1,1,1,1]") is None
    assert decode_rate_limit("x|not json") is None
    assert decode_opening("12.5|2|3 consecutive failures (a|b)") == (12.5, 2, "3 consecutive failures (a|b)")
    assert decode_opening("nonsense") is None


async def test_a_rate_limit_seen_by_one_replica_reaches_the_others_and_the_newest_wins(replicas) -> None:
    a, b, c = replicas(3)
    spent = RateLimitInfo(limit_requests=100, remaining_requests=0, reset_requests_s=60.0)
    a.finished(DEP, 10.0, None, spent)
    await sync(a, b, c)
    for other in (b, c):
        reading = other.state(DEP).rate_limit
        assert reading is not None and reading.info == spent
        assert reading.at == pytest.approx(a.state(DEP).rate_limit.at, abs=1e-5)  # its own time
        assert reading.remaining_fraction(other.now()) == 0.0

    plenty = RateLimitInfo(limit_requests=100, remaining_requests=90, reset_requests_s=60.0)
    b.finished(DEP, 10.0, None, plenty)
    # `a` publishes an older reading after `b`'s newer one: it must not win.
    a.state(DEP).rate_limit = RateLimitState(spent, b.state(DEP).rate_limit.at - 5)
    a._limits_pending.add(DEP)
    await sync(b, a, c)
    for store in (a, b, c):
        assert store.state(DEP).rate_limit.info == plenty


async def test_a_reading_past_its_reset_steers_nobody(replicas) -> None:
    a, b = replicas(2)
    a.finished(DEP, 10.0, None, RateLimitInfo(limit_requests=10, remaining_requests=0, reset_requests_s=0.2))
    await sync(a, b)
    reading = b.state(DEP).rate_limit
    assert reading is not None
    assert reading.remaining_fraction(reading.at + 0.1) == 0.0
    assert reading.remaining_fraction(reading.at + 0.3) is None


async def test_one_replica_probes_the_others_wait_and_close_on_its_success(replicas) -> None:
    a, b, c = replicas(3)
    await sync(a, b, c)  # healthy: breakers are shared from now on
    opened_until = await open_and_wait_out(a, b, c)
    assert all(s.state(DEP).breaker.open_until == pytest.approx(opened_until, abs=0.002) for s in (a, b, c))

    await sync(c, b, a)  # whoever asks first takes the lease: here `c`
    assert [s.state(DEP).breaker.allows(s.now()) for s in (a, b, c)] == [False, False, True]
    assert [s.state(DEP).breaker.state(s.now()) for s in (a, b, c)] == [OPEN, OPEN, HALF_OPEN]
    c.started(DEP)  # the probe is out: renewing the lease, nobody else may probe
    await sync(a, b, c, a, b)
    assert [s.state(DEP).breaker.allows(s.now()) for s in (a, b, c)] == [False, False, False]

    c.succeeded(DEP)
    c.finished(DEP, 10.0, None, None)
    await sync(c, a, b)
    assert [s.state(DEP).breaker.state(s.now()) for s in (a, b, c)] == [CLOSED] * 3


async def test_a_failed_probe_reopens_everywhere_with_the_next_back_off(replicas) -> None:
    a, b, c = replicas(3)
    await sync(a, b, c)
    await open_and_wait_out(a, b, c)
    await sync(b, a, c)  # `b`, which only adopted the opening, probes
    assert b.state(DEP).breaker.allows(b.now())
    b.started(DEP)
    b.failed(DEP, None, "server_error 500", counts=True)
    reopened = b.state(DEP).breaker
    # The second opening of this deployment: twice the cooldown, though `b` never opened it before.
    assert reopened.open_until - b.now() > 0.45
    await sync(b, a, c)
    for store in (a, b, c):
        breaker = store.state(DEP).breaker
        assert breaker.open_until == pytest.approx(reopened.open_until, abs=0.002)
        assert breaker.state(store.now()) == OPEN and breaker.opened_times == 2


async def test_the_lease_of_a_prober_that_dies_expires_and_another_probes(replicas) -> None:
    a, b = await opened_half_open(replicas(2, lease_s=0.3))
    a.started(DEP)  # `a` sends its probe and dies: it never syncs again
    assert not b.state(DEP).breaker.allows(b.now())

    async def b_may_probe() -> bool:
        await sync(b)
        return b.state(DEP).breaker.allows(b.now())

    deadline = time.monotonic() + 5.0  # the lease is 0.3 s
    while not await b_may_probe():
        assert time.monotonic() < deadline, "the dead prober's lease never expired"
        await asyncio.sleep(0.05)


async def test_one_replica_scrapes_and_every_replica_reads_its_load(replicas) -> None:
    a, b, c = replicas(3)
    assert await a.claim_scrape("twin", 5.0)
    assert not await b.claim_scrape("twin", 5.0) and not await c.claim_scrape("twin", 5.0)
    assert await a.claim_scrape("twin", 5.0)  # renewed by its holder
    a.set_load("twin", ServerLoad(waiting=4, running=8, kv_cache_usage=0.5, at=a.now()))
    await sync(a, b, c)
    for other in (b, c):
        load = other.load("twin")
        assert load is not None and (load.waiting, load.running, load.kv_cache_usage) == (4, 8, 0.5)
    await a.release_scrape("twin")  # `a` cannot reach the server: someone else may try
    assert await b.claim_scrape("twin", 5.0)


async def test_damaged_values_in_redis_are_ignored_not_taken_for_an_outage(replicas) -> None:
    (a,) = replicas(1)
    await sync(a)
    until = await open_and_wait_out(a)
    conn = redis.Redis.from_url(redis_url())
    prefix = current_namespace()
    conn.set(f"{prefix}:breaker:{DEP}", "garbage", px=60_000)
    conn.set(f"{prefix}:closed:{DEP}", "garbage", px=60_000)
    conn.hset(f"{prefix}:ratelimit", DEP, "1|not json")
    conn.hset(f"{prefix}:load", "twin", "garbage")
    conn.close()
    assert await a.sync_once() and a.healthy
    state = a.state(DEP)
    assert state.rate_limit is None and a.load("twin") is None
    assert state.breaker.open_until == until and state.breaker.allows(a.now())  # it may probe


async def test_a_holder_that_sends_no_probe_gives_the_lease_up_to_a_replica_with_traffic(replicas) -> None:
    a, b = await opened_half_open(replicas(2, lease_s=0.3))
    assert a.state(DEP).breaker.allows(a.now()) and not b.state(DEP).breaker.allows(b.now())
    taken = a.now()
    await async_wait_for(lambda: a.now() > taken + 0.35, 5.0)  # a whole lease, and no request came
    await sync(a, b)
    assert not a.state(DEP).breaker.allows(a.now()) and b.state(DEP).breaker.allows(b.now())
