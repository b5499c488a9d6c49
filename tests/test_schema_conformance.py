"""What the gateway returns conforms to OpenAI's published schema (and Anthropic's, on /v1/messages).

Two independent checks on every body, chunk and event:
- OpenAI's OpenAPI spec itself (`openai/openai-openapi`, MIT), the response schemas
  extracted into `tests/openai_spec/schemas.json` with the source commit recorded,
  validated as JSON Schema: required fields (including "required but nullable" ones
  a strict client expects), types and enums;
- the SDKs' own generated types (`openai`, `anthropic`, both MIT; written against
  openai 2.54.0 and anthropic 2.14.0) with `model_validate`, which is what SDK users
  parse with. Anthropic publishes no OpenAPI spec, so `/v1/messages` has only this.

Deliberate deviation: the chunk that ends a stream broken mid-way carries a
top-level `error` and `finish_reason: "error"` (OpenRouter's shape), which is not in
the spec's `finish_reason` enum; the test below checks it separately and says so.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from openai.types import Completion, CreateEmbeddingResponse, ErrorObject
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.simulator import Behaviour
from tests.harness import config_for, wait_for
from tests.openai_spec import conforms, conforms_event

CALLS = [{"id": "call_1", "name": "lookup", "arguments": {"q": "x"}}]
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
ASK = [{"role": "user", "content": "hi"}]


def _sse(
    url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) for each SSE event of a POST."""
    out: list[tuple[str | None, Any]] = []
    event: str | None = None
    with httpx.stream("POST", url, json=body, headers=headers or {}, timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
                out.append((event, data if data == "[DONE]" else json.loads(data)))
                event = None
    return out


@pytest.fixture
def served(fake, gateway):
    upstream = fake("together")  # a flavour that omits fields the spec requires
    return upstream, gateway(config_for({"p": upstream.url}))


@pytest.mark.parametrize("tools", [False, True])
def test_chat_completion_body(served, tools):
    upstream, gw = served
    upstream.sim.behaviour = Behaviour(tool_calls=CALLS if tools else None)
    body: dict[str, Any] = {"model": "m", "messages": ASK, **({"tools": [TOOL]} if tools else {})}
    raw = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=30).json()
    conforms(raw, "CreateChatCompletionResponse")
    ChatCompletion.model_validate(raw)


@pytest.mark.parametrize("tools", [False, True])
def test_chat_completion_chunks(served, tools):
    upstream, gw = served
    upstream.sim.behaviour = Behaviour(tool_calls=CALLS if tools else None)
    body: dict[str, Any] = {
        "model": "m",
        "messages": ASK,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if tools:
        body["tools"] = [TOOL]
    events = _sse(f"{gw.url}/v1/chat/completions", body)
    assert events[-1][1] == "[DONE]"
    for _, chunk in events[:-1]:
        conforms(chunk, "CreateChatCompletionStreamResponse")
        ChatCompletionChunk.model_validate(chunk)


@pytest.mark.parametrize("tools", [False, True])
def test_cache_hits_replayed_as_a_body_and_as_chunks(served, tools):
    upstream, gw = served
    upstream.sim.behaviour = Behaviour(tool_calls=CALLS if tools else None)
    body: dict[str, Any] = {"model": "m", "messages": ASK, "cache": {"mode": "exact"}}
    if tools:
        body["tools"] = [TOOL]
    url = f"{gw.url}/v1/chat/completions"
    assert httpx.post(url, json=body, timeout=30).headers["x-gateway-cache"] == "miss"

    def hit() -> dict[str, Any] | None:
        response = httpx.post(url, json=body, timeout=30)
        return response.json() if response.headers["x-gateway-cache"] == "hit" else None

    raw = wait_for(hit)
    conforms(raw, "CreateChatCompletionResponse")
    ChatCompletion.model_validate(raw)
    events = _sse(url, {**body, "stream": True, "stream_options": {"include_usage": True}})
    assert events[-1][1] == "[DONE]"
    for _, chunk in events[:-1]:
        conforms(chunk, "CreateChatCompletionStreamResponse")
        ChatCompletionChunk.model_validate(chunk)


def test_mid_stream_error_chunk_deviates_only_in_finish_reason(served):
    upstream, gw = served
    upstream.sim.behaviour = Behaviour(content="one two three", die_after_chunks=1)
    events = _sse(f"{gw.url}/v1/chat/completions", {"model": "m", "messages": ASK, "stream": True})
    _, last = events[-2]
    assert last["choices"][0]["finish_reason"] == "error"  # on purpose: OpenRouter's shape, not in the spec
    assert set(last["error"]) >= {"code", "message"}
    conforming = {**last, "choices": [{**last["choices"][0], "finish_reason": None}]}
    with pytest.raises(AssertionError, match="finish_reason"):
        conforms(last, "CreateChatCompletionStreamResponse")  # the deviation is exactly this field
    conforms(conforming, "CreateChatCompletionStreamResponse")
    ChatCompletionChunk.model_validate(conforming)


def test_error_bodies(served):
    _, gw = served
    for body in ({"model": "nope", "messages": ASK}, {"model": "m", "messages": []}):
        response = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=30)
        assert response.status_code in (400, 404)
        conforms(response.json(), "ErrorResponse")
        ErrorObject.model_validate(response.json()["error"])


def test_legacy_completion_and_embeddings(served):
    _, gw = served
    raw = httpx.post(f"{gw.url}/v1/completions", json={"model": "m", "prompt": "hi"}, timeout=30).json()
    conforms(raw, "CreateCompletionResponse")
    Completion.model_validate(raw)
    for _, chunk in _sse(f"{gw.url}/v1/completions", {"model": "m", "prompt": "hi", "stream": True})[:-1]:
        # The spec reuses the non-stream object for chunks, whose finish_reason enum has no
        # null; mid-stream chunks carry null, as OpenAI's own do.
        choices = [{**c, "finish_reason": c["finish_reason"] or "stop"} for c in chunk["choices"]]
        conforms({**chunk, "choices": choices}, "CreateCompletionResponse")
        Completion.model_validate({**chunk, "choices": choices})
    raw = httpx.post(f"{gw.url}/v1/embeddings", json={"model": "m", "input": "hi"}, timeout=30).json()
    conforms(raw, "CreateEmbeddingResponse")
    CreateEmbeddingResponse.model_validate(raw)


@pytest.mark.parametrize("tools", [False, True])
def test_responses_object_and_stream_events(served, tools):
    upstream, gw = served
    upstream.sim.behaviour = Behaviour(tool_calls=CALLS if tools else None)
    body: dict[str, Any] = {"model": "m", "input": "hi"}
    if tools:
        body["tools"] = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
    raw = httpx.post(f"{gw.url}/v1/responses", json=body, timeout=30).json()
    conforms(raw, "Response")
    Response.model_validate(raw)
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    events = _sse(f"{gw.url}/v1/responses", {**body, "stream": True})
    for name, event in events:
        assert name == event["type"]
        conforms_event(event)
        adapter.validate_python(event)


def test_responses_failed_stream_events(served):
    upstream, gw = served
    upstream.sim.behaviour = Behaviour(content="one two three", die_after_chunks=1)
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    events = _sse(f"{gw.url}/v1/responses", {"model": "m", "input": "hi", "stream": True})
    assert [name for name, _ in events[-2:]] == ["error", "response.failed"]
    for _, event in events:
        conforms_event(event)
        adapter.validate_python(event)


@pytest.mark.parametrize("tools", [False, True])
def test_anthropic_message_and_stream_events(served, tools):
    upstream, gw = served
    upstream.sim.behaviour = Behaviour(tool_calls=CALLS if tools else None)
    body: dict[str, Any] = {"model": "m", "max_tokens": 32, "messages": ASK}
    if tools:
        body["tools"] = [{"name": "lookup", "input_schema": {"type": "object"}}]
    raw = httpx.post(f"{gw.url}/v1/messages", json=body, timeout=30).json()
    Message.model_validate(raw)
    adapter: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
    for name, event in _sse(f"{gw.url}/v1/messages", {**body, "stream": True}):
        assert name == event["type"]
        adapter.validate_python(event)


def test_models_list(served):
    _, gw = served
    raw = httpx.get(f"{gw.url}/v1/models", timeout=30).json()
    conforms(raw, "ListModelsResponse")
    assert raw["data"], "the configured model is listed"


def test_spec_check_catches_a_missing_required_field(served):
    """The fixture is live: dropping a field the spec requires (though nullable) fails."""
    _, gw = served
    raw = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "m", "messages": ASK}, timeout=30).json()
    del raw["choices"][0]["logprobs"]
    with pytest.raises(AssertionError, match="logprobs"):
        conforms(raw, "CreateChatCompletionResponse")
