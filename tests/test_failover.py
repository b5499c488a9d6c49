"""Failover before the first byte of content, and clean errors after it."""

from __future__ import annotations

import json

import openai
import pytest

from gateway.simulator import Behaviour
from tests.harness import config_for, curl_stream

MESSAGES = [{"role": "user", "content": "hi"}]


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)


@pytest.mark.parametrize(
    "failure",
    [
        Behaviour(status=500),
        Behaviour(status=429, retry_after_s=1),
        Behaviour(garbage=True),
        Behaviour(status=503),
    ],
    ids=["500", "429", "garbage", "503"],
)
def test_non_stream_fails_over_to_next_deployment(fake, gateway, failure):
    first, second = fake(behaviour=failure), fake(behaviour=Behaviour(content="from second"))
    gw = gateway(config_for({"first": first.url, "second": second.url}))
    raw = _client(gw.url).chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    answer = raw.parse()
    assert answer.choices[0].message.content == "from second"
    assert (answer.model_extra or {})["provider"] == "second"
    route = raw.headers["x-gateway-route"]
    assert route.startswith("first/first-model;") and route.endswith("second/second-model;ok")
    assert len(first.sim.requests) == 1 and len(second.sim.requests) == 1


def test_connection_refused_fails_over(fake, gateway):
    second = fake(behaviour=Behaviour(content="still here"))
    gw = gateway(config_for({"dead": "http://127.0.0.1:9/v1", "second": second.url}))
    answer = _client(gw.url).chat.completions.create(model="m", messages=MESSAGES)
    assert answer.choices[0].message.content == "still here"


@pytest.mark.parametrize(
    "failure",
    [Behaviour(die_after_chunks=0), Behaviour(status=502), Behaviour(error_event_after_chunks=0)],
    ids=["dies-before-content", "502", "error-event-before-content"],
)
def test_stream_fails_over_before_content_into_one_clean_stream(fake, gateway, failure):
    first, second = fake(behaviour=failure), fake(behaviour=Behaviour(content="clean answer here"))
    gw = gateway(config_for({"first": first.url, "second": second.url}))
    chunks = list(_client(gw.url).chat.completions.create(model="m", messages=MESSAGES, stream=True))
    roles = [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role]
    assert roles == ["assistant"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "clean answer here"
    assert {(c.model_extra or {})["provider"] for c in chunks} == {"second"}


def test_mid_stream_death_ends_with_error_chunk_sdk_raises(fake, gateway):
    upstream = fake(behaviour=Behaviour(content="one two three four five six", die_after_chunks=3))
    gw = gateway(config_for({"flaky": upstream.url}))
    received = ""
    with pytest.raises(openai.APIError) as caught:
        for chunk in _client(gw.url).chat.completions.create(model="m", messages=MESSAGES, stream=True):
            if chunk.choices:
                received += chunk.choices[0].delta.content or ""
    assert received == "one two three "
    assert "flaky" in caught.value.message


def test_mid_stream_error_chunk_shape_over_curl(fake, gateway):
    upstream = fake("vllm", Behaviour(content="a b c d e", error_event_after_chunks=2))
    gw = gateway(config_for({"twin": upstream.url}))
    out = curl_stream(
        gw.url, '{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
    )
    events = [line[6:] for line in out.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    final = json.loads(events[-2])
    assert final["object"] == "chat.completion.chunk"
    assert final["choices"] == [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]
    assert final["error"]["metadata"] == {"error_type": "stream_error", "provider": "twin"}
    assert final["provider"] == "twin" and final["model"] == "m" and final["id"].startswith("gen-")
    assert {"code", "message"} <= set(final["error"])
    contents = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-2]]
    assert "".join(c or "" for c in contents) == "a b "


def test_keep_alive_comments_while_waiting_for_first_token(fake, gateway):
    upstream = fake(behaviour=Behaviour(first_byte_ms=1200, content="late"))
    gw = gateway(config_for({"slow": upstream.url}), keepalive_interval_s=0.3)
    out = curl_stream(
        gw.url, '{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
    )
    lines = [line for line in out.split("\n") if line]
    first_data = next(i for i, line in enumerate(lines) if line.startswith("data: "))
    assert lines[:first_data].count(": keep-alive") >= 2
    assert lines[-1] == "data: [DONE]"
    assert '"content":"late"' in out


def test_slow_start_then_total_failure_arrives_as_error_chunk(fake, gateway):
    upstream = fake(behaviour=Behaviour(first_byte_ms=800, status=500))
    gw = gateway(config_for({"slow": upstream.url}), keepalive_interval_s=0.2)
    with pytest.raises(openai.APIError) as caught:
        list(_client(gw.url).chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert "slow" in caught.value.message
