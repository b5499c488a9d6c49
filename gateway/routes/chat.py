"""`POST /v1/chat/completions`: non-streaming and streaming.

Tools, `tool_choice`, `parallel_tool_calls`, `response_format` and image content
parts are forwarded as they are; `require_parameters` routing decides which
deployments may receive them (see `router_policies.candidates`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import authenticate
from gateway.cache import replay
from gateway.pipeline import Admitted, admit_chat, complete_chat, open_stream
from gateway.request_body import ChatCompletionRequest, read_json_object, validate
from gateway.routing import fill_model
from gateway.runtime import Runtime
from gateway.sse_response import SSEResponse
from gateway.streaming import relay


def event_stream(
    body: AsyncIterator[bytes],
    headers: dict[str, str],
    on_close: Callable[[Any], Awaitable[None]],
) -> SSEResponse:
    """An SSE response whose keep-alives come from the relay (only while the first token is awaited)."""
    return SSEResponse(body, headers, on_close)


async def chat_completions(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    principal = authenticate(request, runtime.settings)
    body = await read_json_object(request, runtime.settings.max_body_bytes)
    fill_model(body)
    validate(ChatCompletionRequest, body)
    adm = await admit_chat(request, runtime, principal, body)
    if adm.cached is not None:
        return cached_response(adm, body)
    if body.get("stream"):
        ctx, opening, headers = await open_stream(adm, body)
        return event_stream(relay(ctx, opening), headers, ctx.on_client_close)
    answer, headers = await complete_chat(adm, body)
    return Response(orjson.dumps(answer), media_type="application/json", headers=headers)


async def _nothing(message: Any) -> None:
    return None


def cached_response(adm: Admitted, body: dict[str, Any]) -> Response:
    """A cache hit, in the shape the client asked for (see `gateway.cache.replay`)."""
    assert adm.cached is not None and adm.cache is not None
    headers = {"x-gateway-cache": adm.cache.header()}
    request_id, model = adm.record.request_id, adm.model
    if body.get("stream"):
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = replay.chunks(adm.cached, request_id, model, wants_usage)
        return event_stream(replay.sse(chunks), headers, _nothing)
    answer = replay.answer(adm.cached, request_id, model)
    return Response(orjson.dumps(answer), media_type="application/json", headers=headers)
