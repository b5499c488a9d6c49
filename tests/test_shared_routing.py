"""Three `gateway serve` processes on the real Redis share what steers routing.

What must hold across replicas: an upstream's rate-limit reading taken through one replica
steers the others, which never called it; a breaker open everywhere is probed by exactly
one replica when its time is up, and its result (closed, or open again with the next
back-off) reaches all; a vLLM server's load read by one replica is used by all. Replicas
`b` and `c` are given a /metrics address where nothing listens, so whatever load they
know came through Redis.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis
import yaml

from gateway.simulator import Behaviour, Simulator, SimulatorServer
from tests.harness import GatewayProcess, current_namespace, redis_url, reserve_port, wait_for
from tests.routing_helpers import MESSAGES, provider_of

ADMIN = "admin-secret"
COOLDOWN_MS = 2500


class GatedSimulator(Simulator):
    """A fake upstream that can hold its next chat request until the test lets it go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._armed = False
        self.released = threading.Event()

    def hold_next(self) -> None:
        self.released.clear()
        self._armed = True

    async def _chat(self, *args: Any) -> None:
        if self._armed:
            self._armed = False
            await asyncio.to_thread(self.released.wait, 60)  # bounded: a test that forgets fails
        await super()._chat(*args)


class Upstream:
    def __init__(self, name: str, flavour: str = "openai") -> None:
        self.sim = GatedSimulator(flavour, None, name=name)
        self.server = SimulatorServer(self.sim)
        self.url = self.server.start_in_thread()

    @property
    def calls(self) -> int:
        return len(self.sim.requests)


def _config(up: dict[str, Upstream], prefix: str, metrics_url: str | None) -> str:
    def pair(name: str, cheap: str, dear: str) -> dict[str, Any]:
        return {
            "name": name,
            "routing": {"policy": "price", "retries": 0},
            "deployments": [
                {"provider": p, "model": f"{p}-model", "input_price_per_mtok": price,
                 "output_price_per_mtok": price}
                for p, price in ((cheap, 1.0), (dear, 5.0))
            ],
        }  # fmt: skip

    providers: list[dict[str, Any]] = [{"name": n, "base_url": u.url} for n, u in up.items() if n != "twin"]
    twin: dict[str, Any] = {"name": "twin", "preset": "vllm", "base_url": up["twin"].url}
    if metrics_url is not None:
        twin["metrics_url"] = metrics_url
    config = {
        "routing": {
            "state_prefix": prefix,
            "state_sync_interval_ms": 50,
            "state_timeout_ms": 2000,
            "metrics_interval_ms": 200,
            "breaker": {"failure_threshold": 1, "cooldown_ms": COOLDOWN_MS},
        },
        "providers": [*providers, twin],
        "models": [pair("rl", "limited", "spare"), pair("br", "flaky", "spare"), pair("v", "twin", "cloud")],
    }
    return yaml.safe_dump(config, sort_keys=False)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp: Path = tmp_path_factory.mktemp("shared")
    url, prefix = redis_url(), current_namespace() + "-shared"
    up = {name: Upstream(name) for name in ("limited", "flaky", "spare", "cloud")}
    up["twin"] = Upstream("twin", "vllm")
    nowhere = reserve_port()  # bound, never listening: connections are refused
    dead_metrics = f"http://127.0.0.1:{nowhere.getsockname()[1]}/metrics"
    conn = redis.Redis.from_url(url, decode_responses=True)
    replicas: list[GatewayProcess] = []

    def start(name: str, metrics_url: str | None) -> GatewayProcess:
        home = tmp / name
        home.mkdir()
        config = home / "gateway.yaml"
        config.write_text(_config(up, prefix, metrics_url))
        process = GatewayProcess(config, {"REDIS_URL": url, "GATEWAY_ADMIN_KEY": ADMIN}, home / "serve.log")
        replicas.append(process)
        return process

    try:
        start("a", None).wait_ready(timeout_s=90)
        wait_for(lambda: conn.exists(f"{prefix}:scraper:twin"), timeout_s=10)  # `a` reads the vLLM server
        for r in [start("b", dead_metrics), start("c", dead_metrics)]:
            r.wait_ready(timeout_s=90)
        yield {"replicas": replicas, "up": up, "redis": conn, "prefix": prefix}
    finally:
        for r in replicas:
            r.stop()
        keys = conn.keys(f"{prefix}:*")
        if keys:
            conn.delete(*keys)
        conn.close()
        nowhere.close()
        for u in up.values():
            u.server.stop()


def _live(replica: GatewayProcess, deployment: str) -> dict[str, Any]:
    """What a replica's router knows of a deployment now (GET /admin/api/deployments): no upstream call."""
    response = httpx.get(
        f"{replica.url}/admin/api/deployments", headers={"authorization": f"Bearer {ADMIN}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return next(d for d in response.json()["data"] if d["deployment"] == deployment)


def _api(replica: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{replica.url}/v1", api_key=ADMIN, max_retries=0, timeout=30)


def _ask(replica: GatewayProcess, model: str) -> str:
    return provider_of(_api(replica).chat.completions.create(model=model, messages=MESSAGES))


def test_a_rate_limit_met_through_one_replica_steers_the_others(fleet: dict[str, Any]) -> None:
    a, b, c = fleet["replicas"]
    limited: Upstream = fleet["up"]["limited"]
    spent = {"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "0",
             "x-ratelimit-reset-requests": "60s"}  # fmt: skip
    limited.sim.script(Behaviour(ratelimit_headers=spent))  # then the flavour's: plenty left
    assert _ask(a, "rl") == "limited"
    for other in (b, c):
        wait_for(lambda r=other: (_live(r, "limited/limited-model")["rate_limit"] or {}).get("remaining_requests") == 0,
                 timeout_s=10)  # fmt: skip
    assert [_ask(r, "rl") for r in (b, c, b, c)] == ["spare"] * 4
    assert limited.calls == 1  # only `a` ever called it; `b` and `c` steered by its reading
    assert _ask(a, "rl") == "spare"


def _until_probe(replicas: list[GatewayProcess], flaky: Upstream, pool: ThreadPoolExecutor) -> Future[str]:
    """Traffic round the replicas until the probe reaches `flaky` (where it is held); its future."""
    before = flaky.calls
    deadline = time.monotonic() + 20
    i = 0
    while time.monotonic() < deadline:
        future = pool.submit(_ask, replicas[i % 3], "br")
        wait_for(lambda f=future: f.done() or flaky.calls > before, timeout_s=15)
        if not future.done():
            return future
        assert future.result() == "spare"  # waiting for the probe, or before anyone took the lease
        i += 1
    raise AssertionError("no replica probed the half-open deployment within 20 s")


def _open_everywhere(fleet: dict[str, Any]) -> None:
    a, b, c = fleet["replicas"]
    flaky: Upstream = fleet["up"]["flaky"]
    flaky.sim.script(Behaviour(status=500))
    raw = _api(a).chat.completions.with_raw_response.create(model="br", messages=MESSAGES)
    assert raw.headers["x-gateway-route"] == "flaky/flaky-model;unavailable, spare/spare-model;ok"
    for other in (b, c):
        wait_for(
            lambda r=other: _live(r, "flaky/flaky-model")["breaker"] == "open", timeout_s=COOLDOWN_MS / 1000
        )


def test_one_replica_probes_a_recovering_deployment_and_its_result_reaches_all(fleet: dict[str, Any]) -> None:
    replicas: list[GatewayProcess] = fleet["replicas"]
    flaky: Upstream = fleet["up"]["flaky"]
    opening = f"{fleet['prefix']}:breaker:flaky/flaky-model"
    with ThreadPoolExecutor(max_workers=4) as pool:
        for probe_fails in (False, True):
            _open_everywhere(fleet)
            flaky.sim.hold_next()
            if probe_fails:
                flaky.sim.script(Behaviour(status=500))
            wait_for(lambda: not fleet["redis"].exists(opening), timeout_s=COOLDOWN_MS / 1000 + 5)
            probe = _until_probe(replicas, flaky, pool)
            calls = flaky.calls
            # While the probe is out, every replica (the prober too) keeps the deployment open.
            assert [_ask(r, "br") for r in replicas * 2] == ["spare"] * 6
            assert flaky.calls == calls
            flaky.sim.released.set()
            if not probe_fails:
                assert probe.result(timeout=15) == "flaky"
                for r in replicas:  # closed everywhere
                    wait_for(lambda r=r: _ask(r, "br") == "flaky", timeout_s=10)
                continue
            assert probe.result(timeout=15) == "spare"  # failed over
            wait_for(lambda: fleet["redis"].exists(opening), timeout_s=5)
            # The second opening in a row: twice the cooldown, on every replica.
            assert fleet["redis"].pttl(opening) > COOLDOWN_MS
            for r in replicas:
                wait_for(lambda r=r: _live(r, "flaky/flaky-model")["breaker"] == "open", timeout_s=5)
            assert [_ask(r, "br") for r in replicas] == ["spare"] * 3
            assert flaky.calls == calls


def test_vllm_load_read_by_one_replica_is_used_by_all(fleet: dict[str, Any]) -> None:
    a, b, c = fleet["replicas"]
    twin: Upstream = fleet["up"]["twin"]
    twin.sim.behaviour = Behaviour(queue_waiting=3)
    for r in (b, c):  # they cannot reach /metrics themselves: the reading came through Redis
        wait_for(
            lambda r=r: (_live(r, "twin/twin-model")["server_load"] or {}).get("waiting") == 3, timeout_s=10
        )
    assert [_ask(r, "v") for r in (a, b, c)] == ["cloud"] * 3
    twin.sim.behaviour = Behaviour()
    for r in (b, c):
        wait_for(
            lambda r=r: (_live(r, "twin/twin-model")["server_load"] or {}).get("waiting") == 0, timeout_s=10
        )
    assert [_ask(r, "v") for r in (a, b, c)] == ["twin"] * 3
