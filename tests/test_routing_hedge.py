"""Hedging, and explaining every decision: `x-gateway-route`, the `gateway` metadata, `/v1/generation`."""

from __future__ import annotations

import httpx

from gateway.simulator import Behaviour
from tests.routing_helpers import MESSAGES, client, provider_of, routing_config, wait_until

META = {"X-Gateway-Metadata": "enabled"}


def _hedged(fake, gateway):
    first = fake(behaviour=Behaviour(first_byte_ms=30), name="first")
    second = fake(behaviour=Behaviour(first_byte_ms=30), name="second")
    config = routing_config(
        {"first": {"url": first.url, "price": 1.0}, "second": {"url": second.url, "price": 2.0}},
        routing={"policy": "price", "hedge": {"enabled": True, "default_delay_ms": 3000}},
    )
    gw = gateway(config)
    api = client(gw.url, **META)
    for _ in range(5):  # first's p90 time to first token becomes ~30 ms
        assert provider_of(api.chat.completions.create(model="m", messages=MESSAGES)) == "first"
    # Now it stalls, for longer than the tests below wait for its request to be closed:
    # only the gateway cancelling the loser can bring it to zero in flight in time.
    first.sim.behaviour = Behaviour(first_byte_ms=30_000)
    return first, second, api


def test_hedge_starts_the_next_after_p90_ttft_keeps_the_winner_and_closes_the_loser(fake, gateway):
    first, _second, api = _hedged(fake, gateway)
    raw = api.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    answer = raw.parse()
    assert provider_of(answer) == "second"
    attempts = answer.model_extra["gateway"]["attempts"]
    assert [(a["provider"], a["outcome"]) for a in attempts] == [("first", "cancelled"), ("second", "ok")]
    assert (
        attempts[1]["hedge"] is True and 25 <= attempts[1]["start_ms"] < 3000
    )  # after first's p90 (~30 ms), before the 3 s default
    assert raw.headers["x-gateway-route"] == "first/first-model;cancelled, second/second-model;ok"
    wait_until(lambda: first.sim.in_flight == 0, 10.0, "the loser's upstream request to be closed")


def test_hedged_stream_closes_the_losing_stream(fake, gateway):
    first, _second, api = _hedged(fake, gateway)
    chunks = list(api.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert {(c.model_extra or {}).get("provider") for c in chunks} == {"second"}
    meta = chunks[-1].model_extra["gateway"]  # the last chunk explains the route
    assert [a["outcome"] for a in meta["attempts"]] == ["cancelled", "ok"]
    wait_until(lambda: first.sim.in_flight == 0, 10.0, "the losing stream to be closed")


def test_metadata_and_generation_record(fake, gateway):
    bad, good = fake(behaviour=Behaviour(status=502), name="bad"), fake(name="good")
    gw = gateway(
        routing_config(
            {"bad": {"url": bad.url, "price": 1.0}, "good": {"url": good.url, "price": 3.0}},
            routing={"policy": "price"},
        )
    )
    raw = client(gw.url, **META).chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    answer = raw.parse()
    meta = answer.model_extra["gateway"]
    assert meta["policy"] == "price" and meta["plan"] == ["bad/bad-model", "good/good-model"]
    assert {c["deployment"] for c in meta["candidates"]} == {"bad/bad-model", "good/good-model"}
    assert all("score" in c and "ttft_p50_ms" in c and "breaker" in c for c in meta["candidates"])
    assert [(a["outcome"], a["status"]) for a in meta["attempts"]] == [("unavailable", 502), ("ok", 200)]
    assert all(a["elapsed_ms"] >= 0 and a["start_ms"] >= 0 for a in meta["attempts"])
    assert raw.headers["x-gateway-route"] == "bad/bad-model;unavailable, good/good-model;ok"
    plain = client(gw.url).chat.completions.create(model="m", messages=MESSAGES)
    assert "gateway" not in (plain.model_extra or {})
    record = httpx.get(f"{gw.url}/v1/generation", params={"id": answer.id}, timeout=10).json()["data"]
    assert record["provider"] == "good" and record["policy"] == "price" and record["finish_reason"] == "stop"
    assert len(record["attempts"]) == 2 and record["completion_tokens"] > 0 and record["cost_usd"] > 0
    assert record["latency_ms"] > 0 and record["ttft_ms"] > 0


def test_route_header_on_errors_and_streams(fake, gateway):
    down = fake(behaviour=Behaviour(status=500), name="down")
    gw = gateway(routing_config({"down": {"url": down.url}}, routing={"retries": 0}))
    response = httpx.post(
        f"{gw.url}/v1/chat/completions", json={"model": "m", "messages": MESSAGES}, timeout=10
    )
    assert (
        response.status_code == 502 and response.headers["x-gateway-route"] == "down/down-model;unavailable"
    )
    down.sim.behaviour = Behaviour(first_byte_ms=50)
    with httpx.stream(
        "POST",
        f"{gw.url}/v1/chat/completions",
        json={"model": "m", "messages": MESSAGES, "stream": True},
        timeout=10,
    ) as stream:
        assert stream.headers["x-gateway-route"].startswith("down/down-model;")
        stream.read()


def test_with_a_latency_target_the_hedge_waits_as_long_as_the_next_can_still_meet_it(fake, gateway):
    first, second, api = _hedged(fake, gateway)
    first.sim.behaviour = Behaviour(first_byte_ms=30)
    for _ in range(2):  # the next deployment's p90 becomes ~30 ms too
        api.chat.completions.create(
            model="m", messages=MESSAGES, extra_body={"provider": {"only": ["second"]}}
        )
    first.sim.behaviour = Behaviour(first_byte_ms=300)  # late, but well within the target
    # No target: hedged after first's p90 (~30 ms); the next answers first.
    answer = api.chat.completions.create(model="m", messages=MESSAGES)
    assert provider_of(answer) == "second"
    assert [a["provider"] for a in answer.model_extra["gateway"]["attempts"]] == ["first", "second"]
    wait_until(lambda: first.sim.in_flight == 0, 5.0, "the loser's upstream request to be closed")
    # A 2 s target: the hedge would start ~1.97 s in (2 s less second's p90); first answers at 0.3 s.
    target = {"provider": {"preferred_max_latency": 2}}
    answer = api.chat.completions.create(model="m", messages=MESSAGES, extra_body=target)
    assert provider_of(answer) == "first"
    assert [a["provider"] for a in answer.model_extra["gateway"]["attempts"]] == ["first"]
    assert len(second.sim.requests) == 3
