"""`POST /v1/responses` served natively by deployments that have the Responses API.

The fake upstreams are real HTTP servers speaking both APIs (`gateway.simulator`), so
each test can tell which one a request reached and whether the client got the
upstream's own items (ids `msg_sim…`, `fc_sim…`) or the gateway's translation.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from gateway.simulator import Behaviour
from tests.harness import config_for, generation_record
from tests.openai_spec import conforms, conforms_event

CALLS = [{"id": "call_a", "name": "get_weather", "arguments": {"city": "Paris"}}]
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": False,
}
NATIVE = {"responses_api": "true"}


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


def _paths(fake) -> list[str]:
    return [r.path for r in fake.sim.requests]


def test_non_stream_reaches_the_responses_api_with_its_own_parameters(fake, gateway):
    upstream = fake(behaviour=Behaviour(content="Paris is the capital."))
    gw = gateway(config_for({"p": upstream.url}, p=NATIVE))
    response = _client(gw.url).responses.create(
        model="m",
        input="capital of France?",
        instructions="Answer briefly.",
        max_output_tokens=50,
        reasoning={"effort": "low"},
        include=["reasoning.encrypted_content"],
        metadata={"team": "geo"},
    )
    assert _paths(upstream) == ["/v1/responses"]
    sent = upstream.sim.requests[-1].body
    assert sent["model"] == "p-model" and sent["store"] is False
    assert sent["input"] == [
        {"type": "message", "role": "system", "content": "Answer briefly."},
        {"type": "message", "role": "user", "content": "capital of France?"},
    ]
    assert sent["max_output_tokens"] == 50
    assert sent["reasoning"] == {"effort": "low"} and sent["include"] == ["reasoning.encrypted_content"]
    assert not any(k in sent for k in ("messages", "stream_options", "_responses", "provider"))
    assert response.output_text == "Paris is the capital."
    assert response.output[0].id.startswith("msg_sim")  # the upstream's own item
    assert response.id.startswith("resp_") and not response.id.startswith("resp_sim")
    assert response.model == "m" and response.store is True and response.instructions == "Answer briefly."
    assert response.reasoning is not None and response.reasoning.effort == "low"
    raw = httpx.get(f"{gw.url}/v1/responses/{response.id}", timeout=30).json()
    conforms(raw, "Response")
    assert raw["metadata"] == {"team": "geo"}
    usage = raw["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] == 4 and usage["cost"] > 0
    record = generation_record(gw.url, "gen-" + response.id.removeprefix("resp_"))
    assert record["kind"] == "responses" and record["provider"] == "p"
    assert record["prompt_tokens"] == usage["input_tokens"] and record["completion_tokens"] == 4
    assert record["cost_usd"] == pytest.approx(usage["cost"])


def test_a_chat_request_to_the_same_deployment_still_uses_chat_completions(fake, gateway):
    upstream = fake()
    gw = gateway(config_for({"p": upstream.url}, p=NATIVE))
    _client(gw.url).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert _paths(upstream) == ["/v1/chat/completions"]
    assert "_responses" not in upstream.sim.requests[-1].body


def test_stream_relays_the_upstreams_events_with_the_gateways_id_and_cost(fake, gateway):
    upstream = fake(behaviour=Behaviour(content="Sunny and mild today."))
    gw = gateway(config_for({"p": upstream.url}, p=NATIVE))
    with httpx.stream(
        "POST", f"{gw.url}/v1/responses", json={"model": "m", "input": "weather?", "stream": True}, timeout=30
    ) as response:
        assert response.status_code == 200
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert (
        upstream.sim.requests[-1].path == "/v1/responses" and upstream.sim.requests[-1].body["stream"] is True
    )
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert kinds.count("response.created") == 1 and kinds.count("response.completed") == 1
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        conforms_event(event)
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert "".join(deltas) == "Sunny and mild today."
    added = next(e for e in events if e["type"] == "response.output_item.added")
    assert added["item"]["id"].startswith("msg_sim")
    final = events[-1]["response"]
    response_id = events[0]["response"]["id"]
    assert final["id"] == response_id and response_id.startswith("resp_") and final["model"] == "m"
    assert final["output"][0]["content"][0]["text"] == "Sunny and mild today."
    assert final["usage"]["output_tokens"] == 4 and final["usage"]["cost"] > 0
    record = generation_record(gw.url, "gen-" + response_id.removeprefix("resp_"))
    assert record["completion_tokens"] == 4 and record["cost_usd"] == pytest.approx(final["usage"]["cost"])


def test_sdk_stream_with_a_function_call_then_continued_by_previous_response_id(fake, gateway):
    upstream = fake()
    upstream.sim.script(Behaviour(tool_calls=CALLS), Behaviour(content="It is sunny in Paris."))
    gw = gateway(config_for({"p": upstream.url}, p=NATIVE))
    client = _client(gw.url)
    with client.responses.stream(model="m", input="weather in Paris?", tools=[TOOL]) as stream:  # type: ignore[list-item]
        first = stream.get_final_response()
    calls = [item for item in first.output if item.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("call_a", "get_weather", {"city": "Paris"})
    ]
    assert calls[0].id.startswith("fc_sim")
    assert upstream.sim.requests[-1].body["tools"] == [TOOL]  # as the client wrote it
    second = client.responses.create(
        model="m",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "call_a", "output": '{"sky": "sunny"}'}],
    )
    assert second.output_text == "It is sunny in Paris." and second.previous_response_id == first.id
    sent = upstream.sim.requests[-1].body
    assert "previous_response_id" not in sent  # the gateway keeps the conversation
    assert sent["input"] == [
        {"type": "message", "role": "user", "content": "weather in Paris?"},
        {
            "type": "function_call",
            "call_id": "call_a",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_a", "output": '{"sky": "sunny"}'},
    ]


def test_a_failing_native_deployment_fails_over_to_a_translated_one(fake, gateway):
    native, chat_only = fake(name="native"), fake(name="chat")
    native.sim.behaviour = Behaviour(status=503)
    chat_only.sim.behaviour = Behaviour(content="From the fallback.")
    models = {"m": [("native", "n-model"), ("chat", "c-model")]}
    gw = gateway(config_for({"native": native.url, "chat": chat_only.url}, models, native=NATIVE))
    response = _client(gw.url).responses.create(model="m", input="hi", reasoning={"effort": "low"})
    assert _paths(native) == ["/v1/responses"] and _paths(chat_only) == ["/v1/chat/completions"]
    sent = chat_only.sim.requests[-1].body
    assert "reasoning" not in sent and "_responses" not in sent and "input" not in sent
    assert response.output_text == "From the fallback." and response.output[0].id.startswith("msg_")
    assert not response.output[0].id.startswith("msg_sim")  # the gateway's translation


def test_a_native_stream_that_fails_after_text_ends_with_response_failed(fake, gateway):
    upstream = fake(behaviour=Behaviour(content="one two three four", error_event_after_chunks=2))
    gw = gateway(config_for({"p": upstream.url}, p=NATIVE))
    with httpx.stream(
        "POST", f"{gw.url}/v1/responses", json={"model": "m", "input": "count", "stream": True}, timeout=30
    ) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    kinds = [e["type"] for e in events]
    assert kinds[-2:] == ["error", "response.failed"] and "response.completed" not in kinds
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == "one two "
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["output"][0]["id"].startswith("msg_sim")
    conforms_event(events[-1])


def test_responses_api_on_a_litellm_provider_is_a_config_error(tmp_path):
    from gateway.config import ConfigError, load_config

    path = tmp_path / "gateway.yaml"
    path.write_text(
        "providers:\n  - name: anthropic\n    responses_api: true\n"
        "models:\n  - name: m\n    deployments:\n      - provider: anthropic\n        model: claude\n"
        "        input_price_per_mtok: 1\n        output_price_per_mtok: 1\n"
    )
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "providers[0].responses_api" in str(error.value) and "OpenAI-compatible" in str(error.value)


def test_chat_body_as_a_responses_request():
    """Images, tool calls and their outputs, tools, a forced tool and a JSON schema, mapped field by field."""
    from providers.responses_wire import RESPONSES_FIELD, request

    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    chat = {
        "model": "up",
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
        "max_tokens": 30,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is it?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                ],
            },
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "a cat"},
            {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
        ],
        "tools": [{"type": "function", "function": {"name": "look", "parameters": schema}}],
        "tool_choice": {"type": "function", "function": {"name": "look"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "A", "schema": schema}},
        RESPONSES_FIELD: {"truncation": "auto"},
    }  # fmt: skip
    assert request(chat) == {
        "model": "up",
        "stream": True,
        "temperature": 0.2,
        "max_output_tokens": 30,
        "input": [
            {"type": "message", "role": "system", "content": "Be brief."},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "what is it?"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
            ]},
            {"type": "function_call", "call_id": "c1", "name": "look", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "a cat"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A cat."}]},
        ],
        "tools": [{"type": "function", "name": "look", "parameters": schema}],
        "tool_choice": {"type": "function", "name": "look"},
        "text": {"format": {"type": "json_schema", "name": "A", "schema": schema}},
        "truncation": "auto",
        "store": False,
    }  # fmt: skip


@pytest.mark.parametrize(
    "event",
    [
        {"type": "response.output_item.added", "item": "a function call"},
        {"type": "response.output_item.added"},
        {"type": "response.completed", "response": ["not", "an", "object"]},
    ],
)
def test_an_event_without_its_object_is_a_protocol_error_naming_the_provider(event):
    """Not the Responses API: classified like any garbage from an upstream (fail over before the first token)."""
    from providers.errors import UpstreamProtocolError
    from providers.responses_wire import EventsToChunks

    events = EventsToChunks("acme", redact=str)
    with pytest.raises(UpstreamProtocolError) as error:
        events.feed(event)
    assert error.value.provider == "acme" and event["type"] in str(error.value)
