"""Response bodies of the OpenAI-compatible (and Anthropic-compatible) endpoints under `/v1`.

Request bodies are `gateway.request_body`'s models, the ones the handlers validate with,
so the description cannot promise a field the gateway would refuse. Responses describe
what the gateway always sends; upstreams may add fields, which pass through (`Open`).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from gateway.api_schema.common import Open

SSE = {
    "text/event-stream": {
        "schema": {"type": "string"},
        "description": "With `stream: true`: server-sent events, ending as the endpoint's protocol ends them. "
        "A failure after the first byte ends the stream with one event carrying a top-level `error`.",
    }
}


class Usage(Open):
    prompt_tokens: int
    completion_tokens: int | None = None
    total_tokens: int
    cost: float = Field(description="What the gateway booked for this request, in USD")
    estimated: bool | None = Field(None, description="True when the gateway counted the tokens itself")


class Message(Open):
    role: str
    content: str | list[Any] | None = None


class Choice(Open):
    index: int
    message: Message
    finish_reason: str | None


class ChatCompletion(Open):
    id: str = Field(description="The request's id (`gen-…`), as in `x-request-id` and `/v1/generation`")
    object: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    provider: str = Field(description="The provider that answered")


class TextChoice(Open):
    index: int
    text: str | None
    finish_reason: str | None


class TextCompletion(Open):
    id: str
    object: str
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage | None = None


class Embedding(Open):
    object: str
    index: int
    embedding: list[float] | str


class EmbeddingList(Open):
    object: str
    data: list[Embedding]
    model: str
    provider: str
    usage: Usage


class Pricing(Open):
    input_per_mtok_usd: float | None
    output_per_mtok_usd: float | None
    source: str


class ModelDeployment(Open):
    id: str
    provider: str
    model: str
    pricing: Pricing
    context_window_tokens: int | None
    self_hosted: bool
    data_collection: str | bool | None
    simulated: bool


class Model(Open):
    id: str
    object: str
    created: int
    owned_by: str
    simulated: bool
    deployments: list[ModelDeployment]


class ModelList(Open):
    object: str
    data: list[Model]


class GenerationRecord(Open):
    request_id: str
    model: str
    created_at: float
    key_id: str | None
    deployment: str | None
    provider: str | None
    attempts: list[dict[str, Any]]
    prompt_tokens: int
    completion_tokens: int
    usage_estimated: bool
    cost_usd: float
    latency_ms: float
    ttft_ms: float | None
    status: int
    finish_reason: str | None
    streamed: bool
    cancelled: bool
    error: str | None
    kind: str
    overhead_ms: float | None = Field(
        None, description="Time spent in the gateway itself, upstream waits excluded, in milliseconds"
    )


class Generation(Open):
    data: GenerationRecord


class ResponseObject(Open):
    """A Responses API `response`; `output` items are messages and function calls."""

    id: str = Field(description="`resp_` plus the request id")
    object: str
    created_at: int
    status: str
    model: str
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None


class AnthropicMessage(Open):
    id: str
    type: str
    role: str
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: dict[str, Any]


class Health(Open):
    status: str


class Readiness(Open):
    status: str = Field(description="`ready`, `starting` or `shutting_down`")
    checks: dict[str, Any]
