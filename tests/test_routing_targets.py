"""Latency/throughput targets, effective price, true cost and prompt-cache stickiness, end to end:
the real gateway over HTTP, the openai SDK and fake upstreams."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.simulator import Behaviour
from tests.harness import generation_record, runtime_of
from tests.routing_helpers import MESSAGES, client, provider_of, routing_config, wait_until

CACHED_USAGE = {
    "prompt_tokens": 1000,
    "completion_tokens": 100,
    "prompt_tokens_details": {"cached_tokens": 800, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 40, "audio_tokens": 0},
}


@pytest.mark.parametrize(
    ("provider", "field"),
    [
        ({"preferred_max_latency": "fast"}, "provider.preferred_max_latency"),
        ({"preferred_max_latency": {"p95": 1}}, "provider.preferred_max_latency"),
        ({"preferred_min_throughput": {"p90": True}}, "provider.preferred_min_throughput.p90"),
        ({"sort": {"by": "price", "partition": "everything"}}, "provider.sort.partition"),
        ({"quantizations": "fp8"}, "provider.quantizations"),
        ({"zdr": 1}, "provider.zdr"),
    ],
)
def test_a_wrong_preference_is_a_400_naming_the_field(fake, gateway, provider, field):
    up = fake(name="up")
    gw = gateway(routing_config({"up": {"url": up.url}}))
    response = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": "m", "messages": MESSAGES, "provider": provider},
        timeout=10,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == field and field in error["message"]
    assert up.sim.requests == []


def test_a_deployment_missing_the_latency_target_is_a_fallback_and_the_metadata_says_why(fake, gateway):
    slow = fake(behaviour=Behaviour(first_byte_ms=400), name="slow")
    quick = fake(name="quick")
    gw = gateway(
        routing_config({"slow": {"url": slow.url, "price": 0.1}, "quick": {"url": quick.url, "price": 5.0}})
    )
    api = client(gw.url, **{"X-Gateway-Metadata": "enabled"})
    for name in ("slow", "quick"):  # measure both
        api.chat.completions.create(model="m", messages=MESSAGES, extra_body={"provider": {"only": [name]}})
    target = {"preferred_max_latency": {"p50": 0.2}}
    answer = api.chat.completions.create(model="m", messages=MESSAGES, extra_body={"provider": target})
    assert provider_of(answer) == "quick"
    meta = answer.model_extra["gateway"]
    assert meta["preferences"] == target
    assert meta["plan"] == ["quick/quick-model", "slow/slow-model"]
    by_name = {c["provider"]: c for c in meta["candidates"]}
    assert by_name["quick"]["preferred"] is True and by_name["quick"]["reasons"] == ["meets the targets"]
    assert by_name["slow"]["preferred"] is False
    assert any("above preferred_max_latency.p50 200 ms" in r for r in by_name["slow"]["reasons"])
    assert set(by_name["slow"]["ttft_ms"]) == {"p50", "p75", "p90", "p99"}
    # Deprioritised, not excluded: with the quick one gone, the slow one still answers.
    quick.sim.behaviour = Behaviour(status=503)
    answer = api.chat.completions.create(model="m", messages=MESSAGES, extra_body={"provider": target})
    assert provider_of(answer) == "slow"


def test_model_defaults_set_targets_and_sort_objects(fake, gateway):
    slow = fake(behaviour=Behaviour(first_byte_ms=400), name="slow")
    quick = fake(name="quick")
    config = routing_config(
        {"slow": {"url": slow.url, "price": 0.1}, "quick": {"url": quick.url, "price": 5.0}},
        routing={"defaults": {"preferred_max_latency": 0.2, "sort": {"by": "price", "partition": "model"}}},
    )
    api = client(gateway(config).url, **{"X-Gateway-Metadata": "enabled"})
    for name in ("slow", "quick"):
        api.chat.completions.create(model="m", messages=MESSAGES, extra_body={"provider": {"only": [name]}})
    answer = api.chat.completions.create(model="m", messages=MESSAGES)
    meta = answer.model_extra["gateway"]
    assert meta["preferences"] == {
        "sort": {"by": "price", "partition": "model"},
        "preferred_max_latency": {"p50": 0.2},
    }
    assert provider_of(answer) == "quick"  # cheapest first, but the target goes before price


def test_zdr_and_quantization_filters(fake, gateway):
    keeps, forgets = fake(name="keeps"), fake(name="forgets")
    config = routing_config(
        {
            "keeps": {"url": keeps.url, "price": 1.0, "quantization": "fp8"},
            "forgets": {"url": forgets.url, "price": 2.0, "quantization": "bf16"},
        },
        providers={"forgets": {"zdr": True}},
    )
    api = client(gateway(config).url)
    for _ in range(5):
        zdr = api.chat.completions.create(
            model="m", messages=MESSAGES, extra_body={"provider": {"zdr": True}}
        )
        assert provider_of(zdr) == "forgets"
        fp8 = api.chat.completions.create(
            model="m", messages=MESSAGES, extra_body={"provider": {"quantizations": ["fp8"]}}
        )
        assert provider_of(fp8) == "keeps"
    with pytest.raises(Exception) as caught:
        api.chat.completions.create(
            model="m", messages=MESSAGES, extra_body={"provider": {"quantizations": ["int4"]}}
        )
    assert "quantization" in str(caught.value)


@pytest.mark.parametrize("stream", [False, True])
def test_cost_bills_cached_prompt_and_reasoning_tokens(fake, gateway, stream):
    up = fake(behaviour=Behaviour(usage=CACHED_USAGE), name="up")
    config = routing_config(
        {
            "up": {
                "url": up.url,
                "price": 2.0,
                "cached_input_price_per_mtok": 0.5,
                "reasoning_price_per_mtok": 4.0,
            }
        }
    )
    gw = gateway(config)
    api = client(gw.url)
    expected = (200 * 2.0 + 800 * 0.5 + 60 * 2.0 + 40 * 4.0) / 1e6
    if stream:
        chunks = list(
            api.chat.completions.create(
                model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
        )
        usage, request_id = chunks[-1].usage, chunks[-1].id
    else:
        answer = api.chat.completions.create(model="m", messages=MESSAGES)
        usage, request_id = answer.usage, answer.id
    assert usage is not None and usage.model_extra["cost"] == pytest.approx(expected)
    assert usage.prompt_tokens_details.cached_tokens == 800
    assert generation_record(gw.url, request_id)["cost_usd"] == pytest.approx(expected)
    window = runtime_of(gw).routing.store.state("up/up-model").window
    wait_until(lambda: window.summary().usage_count == 1, what="the billed tokens to reach the router")
    summary = window.summary()
    assert (summary.prompt_tokens, summary.cached_tokens, summary.completion_tokens) == (1000, 800, 100)


def test_prompt_cache_stickiness_keeps_a_keys_long_prefix_on_one_deployment(fake, gateway):
    one, two = fake(name="one"), fake(name="two")
    config = routing_config(
        {"one": {"url": one.url, "price": 1.0}, "two": {"url": two.url, "price": 1.0}},
        top={"routing": {"seed": 11}},
    )
    api = client(gateway(config).url, **{"X-Gateway-Metadata": "enabled"})
    system = {"role": "system", "content": "You answer questions about the routing manual. " * 120}
    served = []
    for i in range(12):
        answer = api.chat.completions.create(
            model="m", messages=[system, {"role": "user", "content": f"question {i}"}]
        )
        served.append(provider_of(answer))
    assert len(set(served)) == 1, served
    meta = answer.model_extra["gateway"]
    assert meta["sticky_prefix"] is True
    assert any("prompt prefix" in r for r in meta["candidates"][0]["reasons"])
    short = {provider_of(api.chat.completions.create(model="m", messages=MESSAGES)) for _ in range(20)}
    assert short == {"one", "two"}  # short prompts are spread as usual


def test_latency_targets_are_judged_at_the_load_the_next_answer_meets(fake, gateway):
    """A cheap deployment slow only while busy: with nothing in flight it meets a p90 target its
    five-minute window misses; with the same load as its slow answers it is a fallback again."""
    cheap = fake(name="cheap")
    dear = fake(behaviour=Behaviour(first_byte_ms=300), name="dear")
    gw = gateway(
        routing_config({"cheap": {"url": cheap.url, "price": 0.1}, "dear": {"url": dear.url, "price": 5.0}})
    )
    api = client(gw.url, **{"X-Gateway-Metadata": "enabled"})
    only_cheap = {"provider": {"only": ["cheap"]}}
    for _ in range(8):  # idle: quick
        api.chat.completions.create(model="m", messages=MESSAGES, extra_body=only_cheap)
    api.chat.completions.create(model="m", messages=MESSAGES, extra_body={"provider": {"only": ["dear"]}})

    def hold(n: int) -> list[Any]:
        """n streams left open on the cheap deployment, each past its first token."""
        cheap.sim.script(*[Behaviour(hang_after_chunks=2)] * n)
        streams = []
        for _ in range(n):
            stream = api.chat.completions.create(
                model="m", messages=MESSAGES, stream=True, extra_body=only_cheap
            )
            next(iter(stream))
            streams.append(stream)
        wait_until(lambda: cheap.sim.in_flight == n, what=f"{n} streams held on the cheap deployment")
        return streams

    held = hold(4)
    cheap.sim.behaviour = Behaviour(first_byte_ms=400)  # busy: slow
    for _ in range(8):
        api.chat.completions.create(model="m", messages=MESSAGES, extra_body=only_cheap)
    for stream in held:
        stream.close()
    cheap.sim.behaviour = Behaviour()
    wait_until(lambda: cheap.sim.in_flight == 0, what="the held streams to close")

    target = {"provider": {"preferred_max_latency": {"p90": 0.2}}}
    answer = api.chat.completions.create(model="m", messages=MESSAGES, extra_body=target)
    meta = answer.model_extra["gateway"]
    by_name = {c["provider"]: c for c in meta["candidates"]}
    assert by_name["cheap"]["ttft_ms"]["p90"] > 200  # the window alone would call it slow
    assert by_name["cheap"]["in_flight"] == 0 and by_name["cheap"]["predicted_ttft_ms"]["p90"] < 200
    assert by_name["cheap"]["preferred"] is True and provider_of(answer) == "cheap"
    assert meta["plan"] == ["cheap/cheap-model", "dear/dear-model"]

    held = hold(4)
    answer = api.chat.completions.create(model="m", messages=MESSAGES, extra_body=target)
    by_name = {c["provider"]: c for c in answer.model_extra["gateway"]["candidates"]}
    assert by_name["cheap"]["in_flight"] == 4 and by_name["cheap"]["preferred"] is False
    assert by_name["cheap"]["predicted_ttft_ms"]["p90"] > 200
    assert any(
        "at 4 in flight (predicted) above preferred_max_latency.p90 200 ms" in r
        for r in by_name["cheap"]["reasons"]
    )
    for stream in held:
        stream.close()
