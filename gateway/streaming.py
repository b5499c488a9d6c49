"""Relaying an upstream stream to the client as Server-Sent Events.

Each upstream chunk is rewritten (our request id, the model name the client asked
for, the provider that answered) and sent as soon as it arrives; the response
(`gateway.sse_response`) awaits every send, so a slow client slows our reads of the
upstream instead of filling memory. Usage is always requested upstream; the client sees one usage chunk (with
`cost`) at the end, and only if it asked for it.

Once content has gone out the status is 200 and cannot change, so a failure after
that point becomes one final chunk with a top-level `error` and
`finish_reason: "error"` (OpenRouter's shape, which the OpenAI SDK raises as
`APIError`), then `[DONE]` — unless the model allows resuming, in which case the
answer so far is sent to the next deployment as an assistant prefix and the client
sees one uninterrupted answer. Each upstream that produced content is a `Segment`,
booked separately and summed. A stream that breaks once a tool call has begun is
never resumed: another deployment cannot be trusted to finish the same call's
arguments, so the client gets the partial call, then the error chunk.

`events` yields the chunks as dicts (None for a keep-alive) so that other API
shapes (Responses, Anthropic Messages) translate the same relay; `relay` encodes
them as OpenAI's SSE.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson

from gateway.accounting import estimate_usage, usage_payload
from gateway.lifecycle import Lifecycle
from gateway.records import RequestRecord
from gateway.telemetry.tracing import end_stream_span, start_stream_span
from providers.errors import ProviderError, UpstreamTimeout
from providers.types import Usage
from router_policies.attempts import AllAttemptsFailed, AttemptLog
from router_policies.deployment import Deployment
from router_policies.executor import NULL_OBSERVER, StartedStream, start_stream

DONE = b"data: [DONE]\n\n"
KEEP_ALIVE = b": keep-alive\n\n"
_bookings: set[asyncio.Task[None]] = set()


def encode(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


@dataclass(slots=True)
class Segment:
    """The part of the answer one upstream produced."""

    started: StartedStream
    model: str  # the model name the client sees: a `models[]` fallback may answer
    prefix: str = ""  # what earlier segments had already said
    text: list[str] = field(default_factory=list)
    tool_arguments: list[str] = field(default_factory=list)  # counted for usage, never a prefix
    usage: Usage | None = None
    upstream_usage: dict[str, Any] | None = None

    async def settled_usage(self, messages: list[Any]) -> Usage:
        if self.usage is not None:
            return self.usage
        prompt = [*messages, {"role": "assistant", "content": self.prefix}] if self.prefix else messages
        return await estimate_usage(prompt, "".join(self.text) + "".join(self.tool_arguments))


@dataclass(slots=True)
class StreamContext:
    """Per-request state of one relayed stream."""

    request_id: str
    model: str
    created: int
    body: dict[str, Any]
    plan: Sequence[Deployment]
    client_wants_usage: bool
    resume: bool
    record: RequestRecord
    log: AttemptLog
    started_at: float
    finish: Callable[[RequestRecord], None]
    keepalive_s: float = 5.0
    # Which requested model each deployment serves, and who hears how attempts went.
    model_of: Mapping[Deployment, str] = field(default_factory=dict)
    observer: Any = None
    client_gone: bool = False
    booked: bool = False
    # Set while the process shuts down: past its deadline, the stream ends with an error chunk.
    lifecycle: Lifecycle | None = None
    segments: list[Segment] = field(default_factory=list)
    finish_reason: str | None = None
    chunks: int = 0  # sent to the client, for the stream's span
    in_tool_call: bool = False  # a tool call has begun: a break is not resumed
    # With `X-Gateway-Metadata: enabled`: the routing explanation, sent in the last chunk.
    gateway_meta: Callable[[], dict[str, Any]] | None = None
    # Called on the chunk that carries `finish_reason`, with the answer so far (RAG citations).
    on_finish: Callable[[dict[str, Any], str], None] | None = None

    async def on_client_close(self, message: Any) -> None:
        """The response (`gateway.sse_response`) calls this when the client disconnects.

        The relay checks the flag on every chunk. It cannot rely on being cancelled:
        when the upstream floods and sends to a dead client return at once, the relay
        task may never suspend, and a cancellation is only delivered at a suspension
        (seen: a 200,000-chunk upstream read to its end after the client had left).
        """
        self.client_gone = True

    @property
    def answer_so_far(self) -> str:
        return "".join(piece for segment in self.segments for piece in segment.text)

    def segment_for(self, started: StartedStream, prefix: str = "") -> Segment:
        return Segment(started, self.model_of.get(started.deployment, self.model), prefix)

    def _envelope(self, provider: str) -> dict[str, Any]:
        return {
            "id": self.request_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.segments[-1].model if self.segments else self.model,
            "provider": provider,
        }

    def rewrite(self, chunk: dict[str, Any], segment: Segment) -> dict[str, Any] | None:
        chunk["id"] = self.request_id
        chunk["model"] = segment.model
        chunk["provider"] = segment.started.deployment.provider
        chunk.setdefault("object", "chat.completion.chunk")
        choices = chunk.get("choices")
        if choices and isinstance(choices[0], dict):
            first = choices[0]
            first.setdefault("finish_reason", None)  # required by OpenAI's schema, even when null
            delta = first.get("delta")
            if isinstance(delta, dict):
                if isinstance(delta.get("content"), str):
                    segment.text.append(delta["content"])
                if delta.get("tool_calls"):
                    self.in_tool_call = True
                    segment.tool_arguments += _argument_fragments(delta["tool_calls"])
                if segment.prefix:  # a resumed answer: the client already has its role chunk
                    delta.pop("role", None)
            if first.get("finish_reason") is not None:
                self.finish_reason = first["finish_reason"]
                if self.on_finish is not None:
                    self.on_finish(chunk, self.answer_so_far)
                if len(self.segments) > 1:
                    chunk["resumed"] = self.resumed_marker()
        upstream_usage = chunk.pop("usage", None)
        if isinstance(upstream_usage, dict):
            usage = Usage.from_openai(upstream_usage)
            if usage is not None:
                segment.usage, segment.upstream_usage = usage, upstream_usage
        if not choices:
            return None  # usage-only chunk: one is sent at the end, in `usage_chunk`
        return chunk

    def resumed_marker(self) -> dict[str, Any]:
        return {
            "deployments": [s.started.deployment.id for s in self.segments],
            "after_chars": [len(s.prefix) for s in self.segments[1:]],
        }

    async def usage_chunk(self) -> dict[str, Any]:
        """OpenAI's final usage chunk (empty `choices`): all segments summed, with `cost`."""
        usages = [await s.settled_usage(self.body.get("messages", [])) for s in self.segments]
        for segment, usage in zip(self.segments, usages, strict=True):
            segment.usage = usage
        total = Usage(
            prompt_tokens=sum(u.prompt_tokens for u in usages),
            completion_tokens=sum(u.completion_tokens for u in usages),
            estimated=any(u.estimated for u in usages),
            cached_tokens=sum(u.cached_tokens for u in usages),
            reasoning_tokens=sum(u.reasoning_tokens for u in usages),
        )
        last = self.segments[-1]
        payload = usage_payload(total, last.started.deployment, last.upstream_usage)
        payload["cost"] = round(
            sum(s.started.deployment.cost_of(u) for s, u in zip(self.segments, usages, strict=True)),
            10,
        )
        chunk = {**self._envelope(last.started.deployment.provider), "choices": [], "usage": payload}
        if self.gateway_meta is not None:
            chunk["gateway"] = self.gateway_meta()
        if len(self.segments) > 1:
            chunk["resumed"] = self.resumed_marker()
        return chunk

    @property
    def past_shutdown_deadline(self) -> bool:
        return self.lifecycle is not None and self.lifecycle.expired

    def error_chunk(self, error: ProviderError) -> dict[str, Any]:
        provider = error.provider or (self.segments[-1].started.deployment.provider if self.segments else "")
        if isinstance(error, GatewayShuttingDown):
            code, message = 503, str(error)
        else:
            code = 504 if isinstance(error, UpstreamTimeout) else 502
            message = f"the upstream stream broke: {error}"
        return {
            **self._envelope(provider),
            "error": {
                "code": code,
                "message": message,
                "metadata": {"error_type": error.error_type, "provider": provider},
            },
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
        }

    def meta_chunk(self) -> dict[str, Any] | None:
        """The routing explanation in a chunk of its own, when asked for and no usage chunk carries it."""
        if self.gateway_meta is None:
            return None
        provider = self.segments[-1].started.deployment.provider
        return {**self._envelope(provider), "choices": [], "gateway": self.gateway_meta()}

    def continuation(self) -> tuple[list[Deployment], dict[str, Any], str]:
        """The deployments not yet used, the body asking them to continue, and the answer so far."""
        used = {id(s.started.deployment) for s in self.segments}
        remaining = [d for d in self.plan if id(d) not in used]
        prefix = self.answer_so_far
        messages = [*self.body.get("messages", []), {"role": "assistant", "content": prefix}]
        return remaining, {**self.body, "messages": messages}, prefix


async def _book(ctx: StreamContext, cancelled: bool, error: str | None) -> None:
    record = ctx.record
    record.attempts = [a.as_dict() for a in ctx.log.attempts]
    record.latency_ms = (time.monotonic() - ctx.started_at) * 1000
    record.cancelled = cancelled
    record.error = error
    record.finish_reason = "error" if error else ("cancelled" if cancelled else ctx.finish_reason)
    if record.prompt is not None:
        record.prompt["answer"] = ctx.answer_so_far
    if ctx.segments:
        first, last = ctx.segments[0].started, ctx.segments[-1].started
        record.deployment, record.provider = last.deployment.id, last.deployment.provider
        record.ttft_ms = (first.first_token_at - ctx.started_at) * 1000
        messages = ctx.body.get("messages", [])
        for segment in ctx.segments:
            usage = await segment.settled_usage(messages)
            record.prompt_tokens += usage.prompt_tokens
            record.completion_tokens += usage.completion_tokens
            record.usage_estimated = record.usage_estimated or usage.estimated
            record.cost_usd += segment.started.deployment.cost_of(usage)
    ctx.finish(record)


class _ClientGone(Exception):
    """The client disconnected: stop reading the upstream now."""


class GatewayShuttingDown(ProviderError):
    """The process's shutdown deadline passed with this stream still open: end it with an error chunk."""

    error_type = "shutting_down"

    def __init__(self) -> None:
        super().__init__("the gateway is shutting down; retry the request")


def _argument_fragments(calls: Any) -> list[str]:
    out: list[str] = []
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            out.append(function["arguments"])
    return out


async def _relay_segment(ctx: StreamContext, segment: Segment) -> AsyncIterator[dict[str, Any]]:
    for chunk in segment.started.preamble:
        out = ctx.rewrite(chunk, segment)
        if out is not None:
            ctx.chunks += 1
            yield out
    async for chunk in segment.started.rest:
        if ctx.client_gone:
            raise _ClientGone
        if ctx.past_shutdown_deadline:
            raise GatewayShuttingDown
        out = ctx.rewrite(chunk, segment)
        if out is not None:
            ctx.chunks += 1
            yield out


async def relay(ctx: StreamContext, opening: asyncio.Future[StartedStream]) -> AsyncIterator[bytes]:
    """The SSE body in OpenAI's shape: every event encoded, then `[DONE]`."""
    async with aclosing(events(ctx, opening)) as chunks:
        async for chunk in chunks:
            yield KEEP_ALIVE if chunk is None else encode(chunk)
    if not ctx.client_gone:
        yield DONE


async def events(
    ctx: StreamContext, opening: asyncio.Future[StartedStream]
) -> AsyncGenerator[dict[str, Any] | None]:
    """Keep the client informed until the stream starts (None: a keep-alive), then relay it.

    Keep-alives are yielded only while waiting for the first token, so none can ever
    follow the end. The stream is over when this generator is; callers close it
    (`aclosing`) so a disconnect closes the upstream at once.
    """
    cancelled, error = True, None
    span = start_stream_span()
    if ctx.lifecycle is not None:
        ctx.lifecycle.open_streams += 1
    try:
        while not opening.done():
            if ctx.past_shutdown_deadline:
                cancelled, error = False, GatewayShuttingDown.error_type
                yield ctx.error_chunk(GatewayShuttingDown())
                return
            yield None
            await asyncio.wait({opening}, timeout=ctx.keepalive_s)
        try:
            ctx.segments.append(ctx.segment_for(opening.result()))
        except (AllAttemptsFailed, ProviderError) as failure:
            last = failure.last_error if isinstance(failure, AllAttemptsFailed) else failure
            last = last or ProviderError("no deployment could serve the request")
            cancelled, error = False, last.error_type
            yield ctx.error_chunk(last)
            return
        while True:
            try:
                async for out in _relay_segment(ctx, ctx.segments[-1]):
                    yield out
                break
            except _ClientGone:
                return  # `cancelled` is still True: the finally closes the upstream and books it
            except ProviderError as failure:
                resumable = (
                    ctx.resume and not ctx.in_tool_call and not isinstance(failure, GatewayShuttingDown)
                )
                resumed = await _resume(ctx) if resumable else None
                if resumed is None:
                    cancelled, error = False, failure.error_type
                    yield ctx.error_chunk(failure)
                    return
        final = await ctx.usage_chunk() if ctx.client_wants_usage else ctx.meta_chunk()
        if final is not None:
            yield final
        cancelled = False
        if all(segment.usage is not None for segment in ctx.segments):
            # Booked before `[DONE]` (nothing to count, so nothing to wait for): once the
            # client has the whole answer, its ledger row is journaled.
            await _book(ctx, cancelled=False, error=None)
            ctx.booked = True
    finally:
        if ctx.lifecycle is not None:
            ctx.lifecycle.open_streams -= 1
        with anyio.CancelScope(shield=True):  # a disconnect must still close the upstream
            for segment in ctx.segments:
                await segment.started.aclose()
            if not opening.done():
                opening.cancel()
        end_stream_span(span, ctx, cancelled, error)
        if not ctx.booked:
            # Booking may need token counting (a thread); never hold the closing path for it.
            task = asyncio.get_running_loop().create_task(_book(ctx, cancelled, error))
            _bookings.add(task)
            task.add_done_callback(_bookings.discard)


async def _resume(ctx: StreamContext) -> Segment | None:
    """Start the next deployment on the answer so far; None if there is none or it fails too."""
    remaining, body, prefix = ctx.continuation()
    if not remaining:
        return None
    try:
        started = await start_stream(remaining, body, ctx.log, ctx.observer or NULL_OBSERVER)
    except (AllAttemptsFailed, ProviderError):
        return None
    segment = ctx.segment_for(started, prefix=prefix)
    ctx.segments.append(segment)
    return segment
