"""Routing state shared through the real Redis: two gateways, one breaker; Redis going away and back.

Needs Redis at 127.0.0.1:6379 (and `redis-server` for the outage test); skipped when it
is absent unless GATEWAY_REQUIRE_SERVICES=1, in which case the absence is a failure.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest
import redis

from gateway.simulator import Behaviour
from tests.harness import reserve_port, runtime_of
from tests.routing_helpers import MESSAGES, client, provider_of, routing_config, wait_until

SHARED_REDIS = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _missing(what: str) -> None:
    if os.environ.get("GATEWAY_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} is required (GATEWAY_REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not available")


@pytest.fixture
def shared_redis() -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(SHARED_REDIS, socket_timeout=1, socket_connect_timeout=1)
    try:
        conn.ping()
    except redis.RedisError:
        _missing(f"Redis at {SHARED_REDIS}")
    yield conn
    conn.close()


def _config(cheap_url: str, spare_url: str, prefix: str) -> str:
    return routing_config(
        {"cheap": {"url": cheap_url, "price": 1.0}, "spare": {"url": spare_url, "price": 5.0}},
        routing={"policy": "price", "retries": 0},
        top={"routing": {"state_prefix": prefix, "state_sync_interval_ms": 50}},
    )


def test_breaker_opened_by_one_replica_is_seen_by_the_other(fake, gateway, shared_redis):
    cheap, spare = fake(name="cheap"), fake(name="spare")
    prefix = f"gwtest-{uuid.uuid4().hex[:8]}"
    config = _config(cheap.url, spare.url, prefix)
    one, two = gateway(config, redis_url=SHARED_REDIS), gateway(config, redis_url=SHARED_REDIS)
    cheap.sim.script(Behaviour(status=429, retry_after_s=30))  # one 429, then healthy again
    raw = client(one.url).chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    assert raw.headers["x-gateway-route"] == "cheap/cheap-model;rate_limited, spare/spare-model;ok"
    key = f"{prefix}:breaker:cheap/cheap-model"
    wait_until(lambda: bool(shared_redis.exists(key)), 2.0, "the opening to be published")
    assert 25_000 < int(shared_redis.pttl(key)) <= 30_000
    store = runtime_of(two).routing.store  # the second replica's next sync brings the opening in
    wait_until(lambda: not store.state("cheap/cheap-model").breaker.allows(store.now()), 5.0, "the sync")
    api = client(two.url, **{"X-Gateway-Metadata": "enabled"})
    for _ in range(3):
        answer = api.chat.completions.create(model="m", messages=MESSAGES)
        assert provider_of(answer) == "spare"
    excluded = answer.model_extra["gateway"]["excluded"]
    assert excluded[0]["deployment"] == "cheap/cheap-model" and "another replica" in excluded[0]["reason"]
    assert len(cheap.sim.requests) == 1  # only the first replica's failed attempt ever reached it
    shared_redis.delete(*shared_redis.keys(f"{prefix}:*"))


class OwnRedis:
    """A throwaway redis-server on a spare port that the test may kill and restart.

    The port stays reserved for the server's whole life, restarts included.
    """

    def __init__(self) -> None:
        self._reservation = reserve_port()
        self.port = int(self._reservation.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        conn = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_until(lambda: _pings(conn), 5.0, "redis-server to start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
            self.proc = None

    def release(self) -> None:
        self.stop()
        self._reservation.close()


def _pings(conn: redis.Redis) -> bool:
    try:
        return bool(conn.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        _missing("redis-server")
    server = OwnRedis()
    server.start()
    yield server
    server.release()


def test_redis_going_away_keeps_routing_on_local_state_and_reconnects(fake, gateway, own_redis, caplog):
    caplog.set_level(logging.INFO, logger="router_policies.redis_store")
    cheap, spare = fake(name="cheap"), fake(name="spare")
    gw = gateway(_config(cheap.url, spare.url, "gw"), redis_url=own_redis.url)
    api = client(gw.url)
    assert provider_of(api.chat.completions.create(model="m", messages=MESSAGES)) == "cheap"
    own_redis.stop()
    wait_until(lambda: "unreachable" in caplog.text, 3.0, "the outage to be logged")
    cheap.sim.script(Behaviour(status=429, retry_after_s=30))
    for _ in range(5):
        assert provider_of(api.chat.completions.create(model="m", messages=MESSAGES)) == "spare"
    assert len(cheap.sim.requests) == 2  # the local breaker keeps it out
    own_redis.start()  # same port, empty: the replica reconnects and publishes what it knows
    conn = redis.Redis(port=own_redis.port, socket_timeout=1)
    wait_until(
        lambda: bool(conn.exists("gw:breaker:cheap/cheap-model")), 3.0, "the breaker to reach Redis again"
    )
    wait_until(
        lambda: "reachable" in caplog.text.split("unreachable")[-1], 3.0, "the reconnection to be logged"
    )
    assert conn.llen("gw:samples:spare/spare-model") >= 5


def test_a_prompt_prefix_served_through_one_replica_sticks_on_the_other(fake, gateway, shared_redis):
    one_up, two_up = fake(name="one"), fake(name="two")
    prefix = f"gwtest-{uuid.uuid4().hex[:8]}"
    config = routing_config(
        {"one": {"url": one_up.url, "price": 1.0}, "two": {"url": two_up.url, "price": 1.0}},
        top={"routing": {"state_prefix": prefix, "state_sync_interval_ms": 50}},
    )
    first, second = gateway(config, redis_url=SHARED_REDIS), gateway(config, redis_url=SHARED_REDIS)
    messages = [
        {"role": "system", "content": "Answer from the shared handbook. " * 150},
        {"role": "user", "content": "q"},
    ]
    served = provider_of(client(first.url).chat.completions.create(model="m", messages=messages))
    wait_until(lambda: shared_redis.xlen(f"{prefix}:sticky") == 1, 2.0, "the prefix to be shared")
    other = runtime_of(second).routing.store
    wait_until(lambda: len(other._sticky) == 1, 2.0, "the other replica to read it")
    api = client(second.url)
    assert {provider_of(api.chat.completions.create(model="m", messages=messages)) for _ in range(8)} == {
        served
    }
    shared_redis.delete(f"{prefix}:sticky")
