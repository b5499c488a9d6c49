"""What the gateway returns conforms to OpenAI's published schema (and Anthropic's, on /v1/messages).

The schemas are the SDKs' own types, which both vendors generate from their
OpenAPI specs: `openai` (MIT) and `anthropic` (MIT); written and passing against
openai 2.54.0 and anthropic 2.14.0 (newer SDKs only add types, so they run as well).
Each body, chunk and event is validated with `model_validate`, which fails on a
missing required field or a value of the wrong type; the generated types turn
"required but nullable" into an optional default, so those fields (from the OpenAPI
spec's `required` lists) are checked for presence separately.

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
from tests.harness import config_for

# Required by the OpenAPI spec although nullable: a strict client expects the key.
CHAT_REQUIRED = ("id", "object", "created", "model", "choices")
CHAT_CHOICE_REQUIRED = ("index", "message", "finish_reason", "logprobs")
CHAT_MESSAGE_REQUIRED = ("role", "content", "refusal")
CHUNK_CHOICE_REQUIRED = ("index", "delta", "finish_reason")
RESPONSE_REQUIRED = (
    "id",
    "object",
    "created_at",
    "error",
    "incomplete_details",
    "instructions",
    "model",
    "tools",
    "output",
    "parallel_tool_calls",
    "metadata",
    "tool_choice",
    "temperature",
    "top_p",
)
ERROR_REQUIRED = ("type", "message", "param", "code")
CALLS = [{"id": "call_1", "name": "lookup", "arguments": {"q": "x"}}]
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
ASK = [{"role": "user", "content": "hi"}]


def _has(obj: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in obj]
    assert not missing, f"{where} lacks spec-required {missing}: {obj}"


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
    ChatCompletion.model_validate(raw)
    _has(raw, CHAT_REQUIRED, "chat.completion")
    _has(raw["choices"][0], CHAT_CHOICE_REQUIRED, "choice")
    _has(raw["choices"][0]["message"], CHAT_MESSAGE_REQUIRED, "message")


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
        ChatCompletionChunk.model_validate(chunk)
        _has(chunk, CHAT_REQUIRED, "chat.completion.chunk")
        for choice in chunk["choices"]:
            _has(choice, CHUNK_CHOICE_REQUIRED, "chunk choice")


def test_mid_stream_error_chunk_deviates_only_in_finish_reason(served):
    upstream, gw = served
    upstream.sim.behaviour = Behaviour(content="one two three", die_after_chunks=1)
    events = _sse(f"{gw.url}/v1/chat/completions", {"model": "m", "messages": ASK, "stream": True})
    _, last = events[-2]
    assert last["choices"][0]["finish_reason"] == "error"  # on purpose: OpenRouter's shape, not in the spec
    assert set(last["error"]) >= {"code", "message"}
    conforming = {**last, "choices": [{**last["choices"][0], "finish_reason": None}]}
    ChatCompletionChunk.model_validate(conforming)


def test_error_bodies(served):
    _, gw = served
    for body in ({"model": "nope", "messages": ASK}, {"model": "m", "messages": []}):
        response = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=30)
        assert response.status_code in (400, 404)
        error = response.json()["error"]
        ErrorObject.model_validate(error)
        _has(error, ERROR_REQUIRED, "error")


def test_legacy_completion_and_embeddings(served):
    _, gw = served
    raw = httpx.post(f"{gw.url}/v1/completions", json={"model": "m", "prompt": "hi"}, timeout=30).json()
    Completion.model_validate(raw)
    for _, chunk in _sse(f"{gw.url}/v1/completions", {"model": "m", "prompt": "hi", "stream": True})[:-1]:
        # The spec reuses the non-stream object for chunks, whose finish_reason enum has no
        # null; mid-stream chunks carry null, as OpenAI's own do.
        choices = [{**c, "finish_reason": c["finish_reason"] or "stop"} for c in chunk["choices"]]
        Completion.model_validate({**chunk, "choices": choices})
    raw = httpx.post(f"{gw.url}/v1/embeddings", json={"model": "m", "input": "hi"}, timeout=30).json()
    CreateEmbeddingResponse.model_validate(raw)


@pytest.mark.parametrize("tools", [False, True])
def test_responses_object_and_stream_events(served, tools):
    upstream, gw = served
    upstream.sim.behaviour = Behaviour(tool_calls=CALLS if tools else None)
    body: dict[str, Any] = {"model": "m", "input": "hi"}
    if tools:
        body["tools"] = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
    raw = httpx.post(f"{gw.url}/v1/responses", json=body, timeout=30).json()
    Response.model_validate(raw)
    _has(raw, RESPONSE_REQUIRED, "response")
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    events = _sse(f"{gw.url}/v1/responses", {**body, "stream": True})
    for name, event in events:
        assert name == event["type"]
        adapter.validate_python(event)
        if "response" in event:
            _has(event["response"], RESPONSE_REQUIRED, name or "")


def test_responses_failed_stream_events(served):
    upstream, gw = served
    upstream.sim.behaviour = Behaviour(content="one two three", die_after_chunks=1)
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    events = _sse(f"{gw.url}/v1/responses", {"model": "m", "input": "hi", "stream": True})
    assert [name for name, _ in events[-2:]] == ["error", "response.failed"]
    for _, event in events:
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
