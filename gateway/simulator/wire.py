"""OpenAI's wire format, as plain dicts and SSE bytes, before any provider quirks.

Kept apart from the flavours so the baseline shape is written once and each
flavour only adds what its real provider adds. Key order follows OpenAI's own
responses (orjson keeps insertion order), which makes captured bytes easy to
compare with a real trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

JSON = dict[str, Any]

DONE = b"data: [DONE]\n\n"
GARBAGE_EVENT = b"data: {not json\n\n"
GARBAGE_BODY = b"<html>upstream exploded</html>"


@dataclass(slots=True)
class Reply:
    """Everything one answer needs, fixed before the first byte so every chunk agrees."""

    id: str
    created: int
    model: str
    chunks: list[str]
    usage: JSON | None
    include_usage: bool
    prompt: str
    # A second, provider-specific request id (Groq's `x_groq.id`).
    tag: str
    # Complete tool calls the answer ends with (OpenAI's message shape), if any.
    tool_calls: list[JSON] | None = None

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"

    @property
    def text(self) -> str:
        return "".join(self.chunks)


def sse(payload: JSON) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> JSON:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(reply: Reply) -> JSON:
    body: JSON = {
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "logprobs": None,
                "finish_reason": reply.finish_reason,
            }
        ],
    }
    if reply.tool_calls:
        message = body["choices"][0]["message"]
        message["content"] = reply.text or None
        message["tool_calls"] = reply.tool_calls
    if reply.usage is not None:
        body["usage"] = reply.usage
    return body


def chunk(reply: Reply, delta: JSON, finish_reason: str | None) -> JSON:
    return {
        "id": reply.id,
        "object": "chat.completion.chunk",
        "created": reply.created,
        "model": reply.model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage_chunk(reply: Reply) -> JSON:
    """The extra last chunk `stream_options.include_usage` asks for: no choices, just usage."""
    return {
        "id": reply.id,
        "object": "chat.completion.chunk",
        "created": reply.created,
        "model": reply.model,
        "choices": [],
        "usage": reply.usage,
    }


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> JSON:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def vllm_error_event(message: str) -> bytes:
    """vLLM's in-stream error: a data line with an `error` object and no choices."""
    error = {"object": "error", "message": message, "type": "InternalServerError", "code": 500}
    return sse({"error": error})


def embeddings(model: str, vectors: list[Any], prompt_tokens: int) -> JSON:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def model_list(models: list[str], owned_by: str, created: int) -> JSON:
    data = [{"id": m, "object": "model", "created": created, "owned_by": owned_by} for m in models]
    return {"object": "list", "data": data}
