"""`POST /v1/responses` driven by the openai SDK: text, messages, tools, streams, stored responses."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from gateway.simulator import Behaviour
from tests.harness import config_for, generation_record

CALLS = [{"id": "call_a", "name": "get_weather", "arguments": {"city": "Paris"}}]
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_text_input_with_instructions(fake, gateway):
    upstream = fake(behaviour=Behaviour(content="Paris is the capital."))
    gw = gateway(config_for({"p": upstream.url}))
    response = _client(gw.url).responses.create(
        model="m", input="capital of France?", instructions="Answer briefly.", max_output_tokens=50
    )
    assert response.output_text == "Paris is the capital."
    assert response.status == "completed" and response.id.startswith("resp_")
    sent = upstream.sim.requests[-1].body
    assert sent["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "capital of France?"},
    ]
    assert sent["max_tokens"] == 50
    usage = response.usage
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens == 4
    record = generation_record(gw.url, "gen-" + response.id.removeprefix("resp_"))
    assert record["kind"] == "responses" and record["cost_usd"] > 0


def test_message_input_with_an_image_and_json_schema(fake, gateway):
    upstream = fake()
    gw = gateway(config_for({"p": upstream.url}))
    schema = {
        "type": "object",
        "properties": {"animal": {"type": "string"}},
        "required": ["animal"],
        "additionalProperties": False,
    }
    response = _client(gw.url).responses.create(
        model="m",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what animal?"},
                    {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "low"},
                ],
            }
        ],
        text={"format": {"type": "json_schema", "name": "Animal", "schema": schema, "strict": True}},
    )
    sent = upstream.sim.requests[-1].body
    assert sent["messages"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "https://example.com/cat.png", "detail": "low"},
    }
    assert sent["response_format"]["json_schema"]["name"] == "Animal"
    assert set(json.loads(response.output_text)) == {"animal"}


def test_function_call_round_trip_with_previous_response_id(fake, gateway):
    upstream = fake()
    upstream.sim.script(Behaviour(tool_calls=CALLS), Behaviour(content="It is sunny in Paris."))
    gw = gateway(config_for({"p": upstream.url}))
    client = _client(gw.url)
    first = client.responses.create(model="m", input="weather in Paris?", tools=[TOOL])  # type: ignore[list-item]
    calls = [item for item in first.output if item.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("call_a", "get_weather", {"city": "Paris"})
    ]
    assert upstream.sim.requests[-1].body["tools"][0]["function"]["name"] == "get_weather"
    second = client.responses.create(
        model="m",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "call_a", "output": '{"sky": "sunny"}'}],
    )
    assert second.output_text == "It is sunny in Paris."
    assert second.previous_response_id == first.id
    messages = upstream.sim.requests[-1].body["messages"]
    assert messages[0] == {"role": "user", "content": "weather in Paris?"}
    assert messages[1]["role"] == "assistant" and messages[1]["tool_calls"][0]["id"] == "call_a"
    assert messages[2] == {"role": "tool", "tool_call_id": "call_a", "content": '{"sky": "sunny"}'}
    assert client.responses.retrieve(second.id).output_text == "It is sunny in Paris."


def test_store_false_keeps_nothing_and_unknown_ids_are_404(fake, gateway):
    upstream = fake()
    gw = gateway(config_for({"p": upstream.url}))
    client = _client(gw.url)
    unstored = client.responses.create(model="m", input="hi", store=False)
    for response_id in (unstored.id, "resp_missing"):
        with pytest.raises(openai.NotFoundError) as missing:
            client.responses.create(model="m", input="again", previous_response_id=response_id)
        assert missing.value.code == "response_not_found"
    stored = client.responses.create(model="m", input="hi")
    client.responses.delete(stored.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(stored.id)


def test_bad_input_is_a_400_naming_the_field(fake, gateway):
    gw = gateway(config_for({"p": fake().url}))
    response = httpx.post(
        f"{gw.url}/v1/responses",
        json={"model": "m", "input": [{"type": "web_search_call"}]},
        timeout=30,
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input[0].type"
    response = httpx.post(
        f"{gw.url}/v1/responses",
        json={"model": "m", "input": "x", "tools": [{"type": "web_search"}]},
        timeout=30,
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "tools[0].type"


def test_stream_text_events_and_final_response(fake, gateway):
    upstream = fake(behaviour=Behaviour(content="one two three four"))
    gw = gateway(config_for({"p": upstream.url}))
    with _client(gw.url).responses.stream(model="m", input="count") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds.count("response.output_text.delta") == 4
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.output_text == "one two three four"
    assert final.usage is not None and final.usage.output_tokens == 4
    # Stored: a later turn continues it.
    _client(gw.url).responses.create(model="m", input="more", previous_response_id=final.id)
    assert upstream.sim.requests[-1].body["messages"][1] == {
        "role": "assistant",
        "content": "one two three four",
    }


def test_stream_function_call_events(fake, gateway):
    upstream = fake(behaviour=Behaviour(tool_calls=CALLS))
    gw = gateway(config_for({"p": upstream.url}))
    with _client(gw.url).responses.stream(model="m", input="weather?", tools=[TOOL]) as stream:  # type: ignore[list-item]
        events = list(stream)
        final = stream.get_final_response()
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(deltas) > 1 and "".join(deltas) == '{"city":"Paris"}'
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done[0].name == "get_weather" and done[0].arguments == '{"city":"Paris"}'  # type: ignore[union-attr]
    item = final.output[0]
    assert item.type == "function_call" and item.call_id == "call_a"


def test_stream_failure_after_content_is_response_failed(fake, gateway):
    upstream = fake(behaviour=Behaviour(content="one two three four five", die_after_chunks=2))
    gw = gateway(config_for({"p": upstream.url}))
    client = _client(gw.url)
    events = list(client.responses.create(model="m", input="count", stream=True))
    kinds = [e.type for e in events]
    assert kinds[-2:] == ["error", "response.failed"]
    failed = events[-1]
    assert failed.type == "response.failed"
    assert failed.response.status == "failed" and failed.response.error is not None
    assert failed.response.output[0].status == "incomplete"  # type: ignore[union-attr]
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(failed.response.id)
