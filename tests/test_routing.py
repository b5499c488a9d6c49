"""Routing end to end: the real gateway over HTTP, the openai SDK, fake upstreams.

Provider preferences (OpenRouter's `provider` object through `extra_body`), suffixes,
the `models` fallback list, the default policy's spread, load shedding, breakers.
"""

from __future__ import annotations

import threading

import httpx
import openai
import pytest

from gateway.simulator import Behaviour
from tests.routing_helpers import MESSAGES, client, provider_of, routing_config, wait_until


def _three(fake, **kw):
    cheap, mid, dear = fake(name="cheap"), fake(name="mid"), fake(name="dear")
    deployments = {
        "dear": {"url": dear.url, "price": 9.0},
        "cheap": {"url": cheap.url, "price": 1.0},
        "mid": {"url": mid.url, "price": 3.0},
    }
    return (cheap, mid, dear), routing_config(deployments, **kw)


def test_price_sort_and_floor_suffix_pick_the_cheapest(fake, gateway):
    _, config = _three(fake)
    api = client(gateway(config).url)
    for _ in range(5):
        answer = api.chat.completions.create(
            model="m", messages=MESSAGES, extra_body={"provider": {"sort": "price"}}
        )
        assert provider_of(answer) == "cheap"
        assert provider_of(api.chat.completions.create(model="m:floor", messages=MESSAGES)) == "cheap"


def test_latency_sort_picks_the_fastest_once_stats_exist(fake, gateway):
    slow = fake(behaviour=Behaviour(first_byte_ms=150), name="slow")
    quick = fake(behaviour=Behaviour(first_byte_ms=5), name="quick")
    gw = gateway(
        routing_config({"slow": {"url": slow.url, "price": 1.0}, "quick": {"url": quick.url, "price": 5.0}})
    )
    api = client(gw.url)
    for name in ("slow", "quick", "slow", "quick"):  # measure both
        api.chat.completions.create(model="m", messages=MESSAGES, extra_body={"provider": {"only": [name]}})
    for _ in range(5):
        answer = api.chat.completions.create(
            model="m", messages=MESSAGES, extra_body={"provider": {"sort": "latency"}}
        )
        assert provider_of(answer) == "quick"


def test_default_policy_spreads_by_inverse_square_price(fake, gateway):
    one, two = fake(name="one"), fake(name="two")
    gw = gateway(
        routing_config({"one": {"url": one.url, "price": 1.0}, "two": {"url": two.url, "price": 2.0}})
    )
    api = client(gw.url)
    n = 200
    for _ in range(n):
        api.chat.completions.create(model="m", messages=MESSAGES)
    share = len(one.sim.requests) / n  # weights 1/1² : 1/2² → 80 % : 20 %
    assert len(one.sim.requests) + len(two.sim.requests) == n
    assert 0.68 < share < 0.92, share


def test_saturated_deployment_sheds_load(fake, gateway):
    busy = fake(behaviour=Behaviour(first_byte_ms=1500), name="busy")
    spare = fake(name="spare")
    gw = gateway(
        routing_config(
            {
                "busy": {"url": busy.url, "price": 0.1, "max_concurrency": 1},
                "spare": {"url": spare.url, "price": 10.0},
            }
        )
    )
    api = client(gw.url)
    first: list[str] = []
    holder = threading.Thread(
        target=lambda: first.append(provider_of(api.chat.completions.create(model="m", messages=MESSAGES)))
    )
    holder.start()
    wait_until(lambda: busy.sim.in_flight == 1, what="the first request to occupy the cheap deployment")
    raw = client(gw.url, **{"X-Gateway-Metadata": "enabled"}).chat.completions.with_raw_response.create(
        model="m", messages=MESSAGES
    )
    answer = raw.parse()
    assert provider_of(answer) == "spare"
    gateway_meta = answer.model_extra["gateway"]
    busy_candidate = next(c for c in gateway_meta["candidates"] if c["provider"] == "busy")
    assert busy_candidate["busy"] is True and busy_candidate["in_flight"] == 1
    holder.join(timeout=10)
    assert first == ["busy"]


def test_busy_vllm_twin_sheds_load_to_the_cloud(fake, gateway):
    twin = fake("vllm", name="twin")
    cloud = fake(name="cloud")
    config = routing_config(
        {"twin": {"url": twin.url, "price": 0.0}, "cloud": {"url": cloud.url, "price": 0.2}},
        providers={"twin": {"preset": "vllm", "self_hosted": True}},
        top={"routing": {"metrics_interval_ms": 30}},
    )
    api = client(gateway(config).url)
    assert provider_of(api.chat.completions.create(model="m", messages=MESSAGES)) == "twin"
    twin.sim.behaviour = Behaviour(queue_waiting=4, kv_cache_usage=0.7)
    wait_until(
        lambda: provider_of(api.chat.completions.create(model="m", messages=MESSAGES)) == "cloud",
        3,
        "the scrape",
    )
    assert {provider_of(api.chat.completions.create(model="m", messages=MESSAGES)) for _ in range(10)} == {
        "cloud"
    }
    twin.sim.behaviour = Behaviour(queue_waiting=0, kv_cache_usage=0.2)
    wait_until(
        lambda: provider_of(api.chat.completions.create(model="m", messages=MESSAGES)) == "twin",
        3,
        "recovery",
    )


@pytest.mark.parametrize(
    ("failure", "breaker", "opens_after"),
    [
        (Behaviour(status=500), {"failure_threshold": 3, "cooldown_ms": 2000}, 3),
        (Behaviour(status=429, retry_after_s=2), {"failure_threshold": 5, "cooldown_ms": 60_000}, 1),
        (Behaviour(first_byte_ms=2000), {"failure_threshold": 2, "cooldown_ms": 2000}, 2),
    ],
    ids=["500", "429-retry-after", "timeout"],
)
def test_failing_provider_is_bypassed_kept_out_and_let_back_in(fake, gateway, failure, breaker, opens_after):
    flaky, steady = fake(behaviour=failure, name="flaky"), fake(name="steady")
    config = routing_config(
        {
            # Well under the stalling case's 2 s, well over a healthy answer on a loaded machine:
            # once recovered, flaky must never time out.
            "flaky": {"url": flaky.url, "price": 1.0, "first_byte_timeout_ms": 1000},
            "steady": {"url": steady.url, "price": 5.0},
        },
        routing={"policy": "price", "retries": 0},
        top={"routing": {"breaker": breaker}},
    )
    api = client(gateway(config).url, **{"X-Gateway-Metadata": "enabled"})
    for _ in range(opens_after):  # bypassed (failed over) until exactly the threshold is reached
        raw = api.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
        assert provider_of(raw.parse()) == "steady"
        route = raw.headers["x-gateway-route"]
        assert route.startswith("flaky/flaky-model;") and route.endswith(", steady/steady-model;ok")
    assert len(flaky.sim.requests) == opens_after
    for _ in range(3):  # kept out: not even tried
        raw = api.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
        assert raw.headers["x-gateway-route"] == "steady/steady-model;ok"
    excluded = raw.parse().model_extra["gateway"]["excluded"]
    assert excluded[0]["deployment"] == "flaky/flaky-model" and excluded[0]["reason"].startswith(
        "breaker open"
    )
    assert len(flaky.sim.requests) == opens_after
    flaky.sim.behaviour = Behaviour()  # it recovers; after the cooldown a probe lets it back in
    wait_until(
        lambda: provider_of(api.chat.completions.create(model="m", messages=MESSAGES)) == "flaky", 10, "probe"
    )
    assert {provider_of(api.chat.completions.create(model="m", messages=MESSAGES)) for _ in range(3)} == {
        "flaky"
    }


def test_models_list_falls_back_to_the_next_model(fake, gateway):
    broken, good = fake(behaviour=Behaviour(status=503), name="broken"), fake(name="good")
    config = routing_config(
        {"broken": {"url": broken.url}},
        model="primary",
        extra_models=[
            {
                "name": "backup",
                "deployments": [
                    {
                        "provider": "good",
                        "model": "good-model",
                        "input_price_per_mtok": 1,
                        "output_price_per_mtok": 1,
                    }
                ],
            }
        ],
        providers={},
    ).replace("providers:\n", f"providers:\n- name: good\n  base_url: {good.url}\n", 1)
    gw = gateway(config)
    raw = client(gw.url).chat.completions.with_raw_response.create(
        model="primary", messages=MESSAGES, extra_body={"models": ["backup"]}
    )
    answer = raw.parse()
    assert answer.model == "backup" and provider_of(answer) == "good"
    assert raw.headers["x-gateway-route"].startswith("broken/broken-model;unavailable")
    without_model = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"models": ["primary", "backup"], "messages": MESSAGES},
        timeout=10,
    )
    assert without_model.status_code == 200 and without_model.json()["model"] == "backup"
    chunks = list(
        client(gw.url).chat.completions.create(
            model="primary",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"models": ["backup"]},
        )
    )
    assert {chunk.model for chunk in chunks} == {"backup"}  # streams name the model that answered


def test_max_price_with_nothing_under_it_is_a_clear_4xx(fake, gateway):
    _, config = _three(fake)
    api = client(gateway(config).url)
    with pytest.raises(openai.BadRequestError) as caught:
        api.chat.completions.create(
            model="m", messages=MESSAGES, extra_body={"provider": {"max_price": {"prompt": 0.5}}}
        )
    assert caught.value.status_code == 400
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "no_matching_deployment"
    assert "max_price.prompt" in body["message"] and "cheap/cheap-model" in body["message"]
    answer = api.chat.completions.create(
        model="m",
        messages=MESSAGES,
        extra_body={"provider": {"max_price": {"prompt": 4, "completion": 4}, "sort": "price"}},
    )
    assert provider_of(answer) == "cheap"


def test_order_only_ignore_and_allow_fallbacks(fake, gateway):
    (_cheap, _mid, dear), config = _three(fake)
    api = client(gateway(config).url)

    def route(prefs):
        return api.chat.completions.create(model="m", messages=MESSAGES, extra_body={"provider": prefs})

    assert provider_of(route({"order": ["dear", "mid"], "sort": "price"})) == "dear"
    assert provider_of(route({"only": ["mid"]})) == "mid"
    assert {provider_of(route({"ignore": ["cheap", "dear"]})) for _ in range(5)} == {"mid"}
    dear.sim.behaviour = Behaviour(status=500)
    assert provider_of(route({"order": ["dear"], "sort": "price"})) == "cheap"  # fell back
    with pytest.raises(openai.InternalServerError):
        route({"order": ["dear"], "allow_fallbacks": False})
    with pytest.raises(openai.BadRequestError) as caught:
        route({"sort": "fastest"})
    assert "provider.sort" in caught.value.message


def test_data_collection_deny_and_require_parameters(fake, gateway):
    cloud, private = fake(name="cloud"), fake(name="private")
    config = routing_config(
        {
            "cloud": {"url": cloud.url, "price": 0.1, "supported_parameters": ["tools", "tool_choice"]},
            "private": {"url": private.url, "price": 5.0},
        },
        providers={"private": {"data_collection": "deny"}},
    )
    api = client(gateway(config).url)
    for _ in range(5):
        denied = api.chat.completions.create(
            model="m", messages=MESSAGES, extra_body={"provider": {"data_collection": "deny"}}
        )
        assert provider_of(denied) == "private"
    tools = [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    ]
    for _ in range(5):
        answer = api.chat.completions.create(
            model="m",
            messages=MESSAGES,
            tools=tools,
            extra_body={"provider": {"require_parameters": True, "sort": "price"}},
        )
        assert provider_of(answer) == "cloud"
    with pytest.raises(openai.BadRequestError) as caught:
        api.chat.completions.create(
            model="m",
            messages=MESSAGES,
            tools=tools,
            extra_body={"provider": {"require_parameters": True, "data_collection": "deny"}},
        )
    assert "does not declare support" in caught.value.message and "may keep data" in caught.value.message


def test_model_and_key_defaults_from_config(fake, gateway):
    (_cheap, _mid, _dear), config = _three(
        fake,
        routing={"defaults": {"order": ["dear"]}},
        top={"routing": {"key_defaults": {"anonymous": {"ignore": ["dear"], "sort": "price"}}}},
    )
    api = client(gateway(config).url)
    # Model default pins dear first, but the (open gateway's) key default ignores it and sorts by price.
    assert provider_of(api.chat.completions.create(model="m", messages=MESSAGES)) == "cheap"
    # Field by field, the request wins: its `ignore` replaces the key's, so the model's `order` pins dear again.
    answer = api.chat.completions.create(
        model="m", messages=MESSAGES, extra_body={"provider": {"ignore": ["cheap"]}}
    )
    assert provider_of(answer) == "dear"


def test_nitro_suffix_sorts_by_throughput(fake, gateway):
    _, config = _three(fake)
    api = client(gateway(config).url, **{"X-Gateway-Metadata": "enabled"})
    answer = api.chat.completions.create(model="m:nitro", messages=MESSAGES)
    assert answer.model == "m"
    assert answer.model_extra["gateway"]["policy"] == "throughput"
