"""OpenTelemetry spans for upstream attempts, named and attributed by the GenAI conventions.

Written against the OpenTelemetry API only: the process that embeds the router
decides whether an SDK records anything. An attempt span is started only when the
caller's span is recording, so an untraced request pays one context lookup per
attempt and nothing else. A span is current while its attempt talks to the upstream,
which is what puts the attempt's `traceparent` on the outgoing request.

A non-streamed attempt's span ends with its answer; a stream's stays open until the
stream is closed, so usage and finish reasons (known only at the end) land on it,
as OpenTelemetry's OpenAI instrumentation does for streams.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode

from providers.errors import ProviderError
from providers.types import JSON, Usage
from router_policies.deployment import Deployment

tracer = trace.get_tracer("router_policies")

_REQUEST_ATTRIBUTES = (
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
)


def open_attempt(d: Deployment, body: JSON, operation: str) -> Span | None:
    """A CLIENT span for one attempt, or None when the request is not traced."""
    if not trace.get_current_span().is_recording():
        return None
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.system": d.provider,
        "gen_ai.provider.name": d.provider,
        "gen_ai.request.model": d.model,
        "gateway.deployment": d.id,
    }
    for field, name in _REQUEST_ATTRIBUTES:
        value = body.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attributes[name] = value
    return tracer.start_span(f"{operation} {d.model}", kind=SpanKind.CLIENT, attributes=attributes)


def current(span: Span | None) -> AbstractContextManager[Any]:
    """Make the attempt's span current (so the transport propagates it) without ending it."""
    if span is None:
        return nullcontext()
    return trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False)


def fail_attempt(span: Span | None, error: BaseException) -> None:
    if span is None:
        return
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        span.set_attribute("gateway.outcome", "cancelled")
    elif isinstance(error, ProviderError):
        span.set_attribute("error.type", error.error_type)
        span.set_attribute("gateway.outcome", error.error_type)
        if error.status is not None:
            span.set_attribute("http.response.status_code", error.status)
        span.set_status(StatusCode.ERROR, error.error_type)
    else:
        span.set_attribute("error.type", type(error).__name__)
        span.set_status(StatusCode.ERROR, type(error).__name__)
    span.end()


class AnswerTrace:
    """What the span needs from an answer: id, model, finish reasons, usage; fed chunk by chunk."""

    __slots__ = ("finish_reasons", "response_id", "response_model", "usage")

    def __init__(self) -> None:
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.finish_reasons: list[str] = []
        self.usage: Usage | None = None

    def observe(self, payload: JSON) -> None:
        if self.response_id is None and isinstance(payload.get("id"), str):
            self.response_id = payload["id"]
        if self.response_model is None and isinstance(payload.get("model"), str):
            self.response_model = payload["model"]
        for choice in payload.get("choices") or ():
            if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                self.finish_reasons.append(choice["finish_reason"])
        usage = Usage.from_openai(payload.get("usage"))
        if usage is not None:
            self.usage = usage


def finish_attempt(span: Span | None, d: Deployment, answer: AnswerTrace, usage: Usage | None = None) -> None:
    if span is None:
        return
    usage = usage or answer.usage
    span.set_attribute("gateway.outcome", "ok")
    if answer.response_id:
        span.set_attribute("gen_ai.response.id", answer.response_id)
    if answer.response_model:
        span.set_attribute("gen_ai.response.model", answer.response_model)
    if answer.finish_reasons:
        span.set_attribute("gen_ai.response.finish_reasons", answer.finish_reasons)
    if usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
        span.set_attribute("gateway.cost_usd", d.cost_of(usage))
    span.end()
