"""`POST /v1/messages` driven by the anthropic SDK: text, tools, images, streams and errors."""

from __future__ import annotations

import anthropic
import httpx
import pytest

from gateway.simulator import Behaviour
from tests.harness import config_for, generation_record

CALLS = [{"id": "toolu_1", "name": "get_weather", "arguments": {"city": "Paris"}}]
TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK = [{"role": "user", "content": "weather in Paris?"}]


def _client(url: str, key: str = "unused") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0, timeout=60)


def test_text_message_with_system(fake, gateway):
    upstream = fake(behaviour=Behaviour(content="Bonjour from the model."))
    gw = gateway(config_for({"p": upstream.url}))
    message = _client(gw.url).messages.create(
        model="m", max_tokens=64, system="Be polite.", messages=ASK, stop_sequences=["END"]
    )
    assert message.content[0].type == "text" and message.content[0].text == "Bonjour from the model."
    assert message.stop_reason == "end_turn" and message.role == "assistant"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 4
    sent = upstream.sim.requests[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "Be polite."}
    assert sent["max_tokens"] == 64 and sent["stop"] == ["END"]
    record = generation_record(gw.url, "gen-" + message.id.removeprefix("msg_"))
    assert record["kind"] == "messages" and record["cost_usd"] > 0


def test_tool_use_and_tool_result_round_trip(fake, gateway):
    upstream = fake()
    upstream.sim.script(Behaviour(tool_calls=CALLS), Behaviour(content="Sunny."))
    gw = gateway(config_for({"p": upstream.url}))
    client = _client(gw.url)
    first = client.messages.create(
        model="m",
        max_tokens=64,
        messages=ASK,
        tools=[TOOL],
        tool_choice={"type": "any"},  # type: ignore[list-item]
    )
    assert first.stop_reason == "tool_use"
    use = first.content[0]
    assert use.type == "tool_use" and use.id == "toolu_1" and use.input == {"city": "Paris"}
    sent = upstream.sim.requests[-1].body
    assert sent["tool_choice"] == "required"
    assert sent["tools"][0]["function"]["parameters"] == TOOL["input_schema"]
    second = client.messages.create(
        model="m",
        max_tokens=64,
        messages=[
            *ASK,
            {"role": "assistant", "content": [use.model_dump()]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 21C"},
                    {"type": "text", "text": "so?"},
                ],
            },
        ],  # type: ignore[list-item]
        tools=[TOOL],  # type: ignore[list-item]
    )
    assert second.content[0].text == "Sunny."  # type: ignore[union-attr]
    messages = upstream.sim.requests[-1].body["messages"]
    assert messages[1]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
    }
    assert messages[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny, 21C"}
    assert messages[3] == {"role": "user", "content": "so?"}


def test_base64_image_is_forwarded_as_a_data_uri(fake, gateway):
    upstream = fake()
    gw = gateway(config_for({"p": upstream.url}))
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    _client(gw.url).messages.create(
        model="m",
        max_tokens=16,
        messages=[{"role": "user", "content": [image, {"type": "text", "text": "what is this?"}]}],  # type: ignore[list-item]
    )
    parts = upstream.sim.requests[-1].body["messages"][0]["content"]
    assert parts[0] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


def test_stream_text_with_anthropic_events(fake, gateway):
    upstream = fake(behaviour=Behaviour(content="one two three"))
    gw = gateway(config_for({"p": upstream.url}))
    with _client(gw.url).messages.stream(model="m", max_tokens=64, messages=ASK) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "one two three"
    assert final.content[0].text == "one two three"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3 and final.usage.input_tokens > 0
    kinds = [
        e.type for e in _client(gw.url).messages.create(model="m", max_tokens=8, messages=ASK, stream=True)
    ]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds[1:3] == ["content_block_start", "content_block_delta"]


def test_stream_tool_use_accumulates_its_input(fake, gateway):
    upstream = fake(behaviour=Behaviour(tool_calls=CALLS))
    gw = gateway(config_for({"p": upstream.url}))
    with _client(gw.url).messages.stream(model="m", max_tokens=64, messages=ASK, tools=[TOOL]) as stream:  # type: ignore[list-item]
        final = stream.get_final_message()
    use = final.content[0]
    assert use.type == "tool_use" and use.input == {"city": "Paris"} and use.name == "get_weather"
    assert final.stop_reason == "tool_use"


def test_mid_stream_failure_is_an_anthropic_error_event(fake, gateway):
    upstream = fake(behaviour=Behaviour(content="one two three four", die_after_chunks=2))
    gw = gateway(config_for({"p": upstream.url}))
    client = _client(gw.url)
    with (
        pytest.raises(anthropic.APIStatusError) as broke,
        client.messages.stream(model="m", max_tokens=64, messages=ASK) as stream,  # type: ignore[arg-type]
    ):
        for _ in stream:
            pass
    assert "stream broke" in str(broke.value)


def test_errors_come_in_anthropic_shape(fake, gateway):
    upstream = fake()
    gw = gateway(config_for({"p": upstream.url}), admin_key="sk-admin")
    with pytest.raises(anthropic.AuthenticationError):
        _client(gw.url, key="wrong").messages.create(model="m", max_tokens=8, messages=ASK)  # type: ignore[arg-type]
    client = _client(gw.url, key="sk-admin")  # sent as x-api-key
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="nope", max_tokens=8, messages=ASK)  # type: ignore[arg-type]
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    response = httpx.post(
        f"{gw.url}/v1/messages",
        json={"model": "m", "messages": ASK},
        headers={"x-api-key": "sk-admin", "anthropic-version": "2023-06-01"},
        timeout=30,
    )
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    assert client.messages.create(model="m", max_tokens=8, messages=ASK).content  # type: ignore[arg-type]
