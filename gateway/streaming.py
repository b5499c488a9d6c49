"""Relaying an upstream stream to the client as Server-Sent Events.

Each upstream chunk is rewritten (our request id, the model name the client asked
for, the provider that answered) and sent as soon as it arrives; sse-starlette awaits
every send, so a slow client slows our reads of the upstream instead of filling
memory. Usage is always requested upstream; the client sees the usage chunk (with
`cost`) only if it asked for it.

Once content has gone out the status is 200 and cannot change, so a failure after
that point becomes one final chunk with a top-level `error` and
`finish_reason: "error"` (OpenRouter's shape, which the OpenAI SDK raises as
`APIError`), then `[DONE]`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson

from gateway.accounting import estimate_usage, usage_payload
from gateway.errors import from_all_failed
from gateway.records import RequestRecord
from providers.errors import ProviderError, UpstreamTimeout
from providers.types import Usage
from router_policies.attempts import AllAttemptsFailed, AttemptLog
from router_policies.executor import StartedStream

DONE = b"data: [DONE]\n\n"
_bookings: set[asyncio.Task[None]] = set()


def encode(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


@dataclass(slots=True)
class StreamContext:
    """Per-request state of one relayed stream."""

    request_id: str
    model: str
    created: int
    messages: list[Any]
    client_wants_usage: bool
    record: RequestRecord
    log: AttemptLog
    started_at: float
    finish: Callable[[RequestRecord], None]
    provider: str = ""
    usage: Usage | None = None
    upstream_usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    text: list[str] = field(default_factory=list)

    def rewrite(self, chunk: dict[str, Any]) -> bytes | None:
        chunk["id"] = self.request_id
        chunk["model"] = self.model
        chunk["provider"] = self.provider
        choices = chunk.get("choices")
        if choices and isinstance(choices[0], dict):
            first = choices[0]
            delta = first.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                self.text.append(delta["content"])
            if first.get("finish_reason") is not None:
                self.finish_reason = first["finish_reason"]
        upstream_usage = chunk.pop("usage", None)
        if isinstance(upstream_usage, dict):
            usage = Usage.from_openai(upstream_usage)
            if usage is not None:
                self.usage = usage
                self.upstream_usage = upstream_usage
        if not choices:
            # Usage-only chunk: sent once, at the end, in `usage_chunk` (with its cost).
            return None
        return encode(chunk)

    def usage_chunk(self, usage: Usage, started: StartedStream) -> bytes:
        """OpenAI's final usage chunk (empty `choices`), with `cost` added."""
        return encode(
            {
                "id": self.request_id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "provider": self.provider,
                "choices": [],
                "usage": usage_payload(usage, started.deployment, self.upstream_usage),
            }
        )

    def error_chunk(self, error: ProviderError) -> bytes:
        code = 504 if isinstance(error, UpstreamTimeout) else 502
        return encode(
            {
                "id": self.request_id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "provider": error.provider or self.provider,
                "error": {
                    "code": code,
                    "message": f"the upstream stream broke: {error}",
                    "metadata": {"error_type": error.error_type, "provider": error.provider or self.provider},
                },
                "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
            }
        )


async def _book(
    ctx: StreamContext, started: StartedStream | None, cancelled: bool, error: str | None
) -> None:
    record = ctx.record
    record.attempts = [a.as_dict() for a in ctx.log.attempts]
    record.latency_ms = (time.monotonic() - ctx.started_at) * 1000
    record.cancelled = cancelled
    record.error = error
    record.finish_reason = "error" if error else ("cancelled" if cancelled else ctx.finish_reason)
    if started is not None:
        record.deployment = started.deployment.id
        record.provider = started.deployment.provider
        record.ttft_ms = (started.first_token_at - ctx.started_at) * 1000
        usage = ctx.usage or await estimate_usage(started.deployment.model, ctx.messages, "".join(ctx.text))
        record.prompt_tokens = usage.prompt_tokens
        record.completion_tokens = usage.completion_tokens
        record.usage_estimated = usage.estimated
        record.cost_usd = started.deployment.cost_usd(usage.prompt_tokens, usage.completion_tokens)
    ctx.finish(record)


async def relay(ctx: StreamContext, opening: asyncio.Future[StartedStream]) -> AsyncIterator[bytes]:
    """The SSE body: wait for the stream to start (pings flow meanwhile), then relay it."""
    started: StartedStream | None = None
    cancelled = True
    error: str | None = None
    try:
        try:
            started = await opening
        except AllAttemptsFailed as failure:
            gateway_error = from_all_failed(failure, ctx.model)
            last = failure.last_error or ProviderError(gateway_error.message)
            error = last.error_type
            cancelled = False
            yield ctx.error_chunk(last)
            yield DONE
            return
        except ProviderError as failure:
            error = failure.error_type
            cancelled = False
            yield ctx.error_chunk(failure)
            yield DONE
            return
        ctx.provider = started.deployment.provider
        try:
            for chunk in started.preamble:
                out = ctx.rewrite(chunk)
                if out is not None:
                    yield out
            async for chunk in started.rest:
                out = ctx.rewrite(chunk)
                if out is not None:
                    yield out
        except ProviderError as failure:
            error = failure.error_type
            cancelled = False
            yield ctx.error_chunk(failure)
            yield DONE
            return
        if ctx.client_wants_usage:
            if ctx.usage is None:
                ctx.usage = await estimate_usage(started.deployment.model, ctx.messages, "".join(ctx.text))
            yield ctx.usage_chunk(ctx.usage, started)
        cancelled = False
        yield DONE
    finally:
        with anyio.CancelScope(shield=True):  # a disconnect must still close the upstream
            if started is not None:
                await started.aclose()
            elif not opening.done():
                opening.cancel()
        # Booking may need token counting (a thread); never hold the closing path for it.
        task = asyncio.get_running_loop().create_task(_book(ctx, started, cancelled, error))
        _bookings.add(task)
        task.add_done_callback(_bookings.discard)
