"""Tool calls, structured outputs and image inputs through chat completions, with the openai SDK."""

from __future__ import annotations

import base64
import json

import httpx
import openai
import pytest
from pydantic import BaseModel

from gateway.simulator import Behaviour
from tests.harness import config_for, generation_record

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
CALLS = [
    {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
    {"name": "get_weather", "arguments": {"city": "Tokyo, Japan", "unit": "fahrenheit"}},
]
ASK = [{"role": "user", "content": "weather in Paris and Tokyo?"}]


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


def _declared(fakes: dict[str, tuple[str, list[str] | None]], **model_extra: str) -> str:
    """One model `m` with one deployment per fake, each declaring its supported parameters."""
    lines = ["providers:"]
    for name, (url, _) in fakes.items():
        lines += [f"  - name: {name}", f"    base_url: {url}"]
    lines += ["models:", "  - name: m"]
    lines += [f"    {k}: {v}" for k, v in model_extra.items()]
    lines += ["    routing:", "      policy: price", "    deployments:"]
    for name, (_, params) in fakes.items():
        lines += [f"      - provider: {name}", f"        model: {name}-model"]
        lines += ["        input_price_per_mtok: 1.0", "        output_price_per_mtok: 2.0"]
        if params is not None:
            lines.append(f"        supported_parameters: {json.dumps(params)}")
    return "\n".join(lines) + "\n"


def test_tool_calls_non_stream_are_forwarded_and_returned(fake, gateway):
    upstream = fake(behaviour=Behaviour(tool_calls=CALLS))
    gw = gateway(config_for({"p": upstream.url}))
    answer = _client(gw.url).chat.completions.create(
        model="m", messages=ASK, tools=[WEATHER_TOOL], tool_choice="auto", parallel_tool_calls=True
    )
    sent = upstream.sim.requests[-1].body
    assert sent["tools"] == [WEATHER_TOOL] and sent["tool_choice"] == "auto"
    assert sent["parallel_tool_calls"] is True
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_weather"]  # type: ignore[union-attr]
    assert [json.loads(c.function.arguments) for c in calls] == [c["arguments"] for c in CALLS]  # type: ignore[union-attr]
    assert answer.usage is not None and answer.usage.completion_tokens > 0


def test_streamed_tool_call_deltas_accumulate_to_the_upstreams_calls(fake, gateway):
    calls = [{"id": f"call_{i}", **call} for i, call in enumerate(CALLS)]
    upstream = fake(behaviour=Behaviour(tool_calls=calls))
    gw = gateway(config_for({"p": upstream.url}))
    with _client(gw.url).chat.completions.stream(model="m", messages=ASK, tools=[WEATHER_TOOL]) as stream:
        fragments = [e for e in stream if e.type == "tool_calls.function.arguments.delta"]
        final = stream.get_final_completion()
    assert len(fragments) > 4  # arguments arrive in pieces, relayed in order
    expected = [(c["id"], c["name"], json.dumps(c["arguments"], separators=(",", ":"))) for c in calls]
    got = final.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in got] == expected  # type: ignore[union-attr]
    assert final.choices[0].finish_reason == "tool_calls"
    assert final.usage is None or final.usage.completion_tokens > 0


def test_tool_role_conversation_is_routed_and_costed(fake, gateway):
    upstream = fake(behaviour=Behaviour(content="It is 18 degrees in Paris."))
    gw = gateway(config_for({"p": upstream.url}))
    messages = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris","unit":"celsius"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 18}'},
    ]
    answer = _client(gw.url).chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL])  # type: ignore[arg-type]
    assert upstream.sim.requests[-1].body["messages"] == messages
    assert answer.choices[0].message.content == "It is 18 degrees in Paris."
    record = generation_record(gw.url, answer.id)
    assert record["cost_usd"] > 0 and record["finish_reason"] == "stop"


class Weather(BaseModel):
    city: str
    temperature_c: float
    sunny: bool
    tags: list[str]


def test_parse_with_a_pydantic_model_gets_a_parsed_object(fake, gateway):
    upstream = fake()
    gw = gateway(config_for({"p": upstream.url}))
    completion = _client(gw.url).chat.completions.parse(model="m", messages=ASK, response_format=Weather)
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Weather) and parsed.sunny is True and parsed.tags
    sent = upstream.sim.requests[-1].body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["name"] == "Weather"


def test_json_object_mode_streamed(fake, gateway):
    upstream = fake()
    gw = gateway(config_for({"p": upstream.url}))
    stream = _client(gw.url).chat.completions.create(
        model="m", messages=ASK, response_format={"type": "json_object"}, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert set(json.loads(text)) == {"answer"}


def test_require_parameters_is_exact_for_tools_and_response_format(fake, gateway):
    plain, tools, both = fake(name="plain"), fake(name="tools"), fake(name="both")
    config = _declared(
        {
            "plain": (plain.url, None),
            "tools": (tools.url, ["tools", "tool_choice"]),
            "both": (both.url, ["tools", "tool_choice", "response_format"]),
        }
    )
    client = _client(gateway(config).url)
    required = {"provider": {"require_parameters": True}}
    client.chat.completions.create(
        model="m", messages=ASK, tools=[WEATHER_TOOL], tool_choice="auto", extra_body=required
    )
    assert (len(plain.sim.requests), len(tools.sim.requests), len(both.sim.requests)) == (0, 1, 0)
    client.chat.completions.parse(model="m", messages=ASK, response_format=Weather, extra_body=required)
    assert (len(plain.sim.requests), len(tools.sim.requests), len(both.sim.requests)) == (0, 1, 1)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="m", messages=ASK, tools=[WEATHER_TOOL], parallel_tool_calls=False, extra_body=required
        )
    assert "parallel_tool_calls" in refused.value.message
    # Without require_parameters the cheapest (first) deployment takes it, declared or not.
    client.chat.completions.create(model="m", messages=ASK, response_format={"type": "json_object"})
    assert len(plain.sim.requests) == 1


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(30_000)).decode()


def _image_message(url: str) -> list[dict[str, object]]:
    parts = [
        {"type": "text", "text": "what is in this image?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    return [{"role": "user", "content": parts}]


def test_images_go_only_to_deployments_that_declare_vision(fake, gateway):
    text_only, vision = fake(name="text", behaviour=Behaviour(omit_usage=True)), fake(name="vision")
    vision.sim.behaviour = Behaviour(omit_usage=True)
    config = _declared({"text": (text_only.url, ["tools"]), "vision": (vision.url, ["vision", "tools"])})
    client = _client(gateway(config).url)
    for url in ("https://example.com/cat.png", f"data:image/png;base64,{PNG}"):
        answer = client.chat.completions.create(model="m", messages=_image_message(url))  # type: ignore[arg-type]
        assert vision.sim.requests[-1].body["messages"][0]["content"][1]["image_url"]["url"] == url
        usage = answer.usage
        assert usage is not None and (usage.model_extra or {})["estimated"] is True
        assert usage.prompt_tokens < 50  # the image's 40 kB of base64 is not counted as text
    assert text_only.sim.requests == []
    answer = client.chat.completions.create(model="m", messages=ASK)
    assert len(text_only.sim.requests) == 1  # text still goes to the cheapest


def test_body_size_limit_applies_to_images(fake, gateway):
    upstream = fake()
    gw = gateway(config_for({"p": upstream.url}), max_body_bytes=20_000)
    response = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": "m", "messages": _image_message(f"data:image/png;base64,{PNG}")},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert upstream.sim.requests == []


def test_a_stream_broken_inside_a_tool_call_is_not_resumed(fake, gateway):
    first = fake(name="first", behaviour=Behaviour(tool_calls=CALLS, die_after_chunks=4))
    second = fake(name="second", behaviour=Behaviour(tool_calls=CALLS))
    config = _declared({"first": (first.url, None), "second": (second.url, None)}, resume_streams="true")
    client = _client(gateway(config).url)
    stream = client.chat.completions.create(model="m", messages=ASK, tools=[WEATHER_TOOL], stream=True)
    seen = []
    with pytest.raises(openai.APIError) as broke:
        for chunk in stream:
            seen.append(chunk)
    assert "stream broke" in broke.value.message
    assert any(c.choices and c.choices[0].delta.tool_calls for c in seen)
    assert second.sim.requests == []  # no continuation was attempted
