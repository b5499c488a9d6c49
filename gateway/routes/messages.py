"""`POST /v1/messages`: Anthropic's Messages API, for the Anthropic SDK and tools built on it.

Translated to Chat Completions (`gateway.translate.anthropic`) and run through the
same pipeline as chat, so any routed model answers (booked with `kind: messages`).
The key may come as `x-api-key` (what the Anthropic SDK sends) or as a bearer token;
`anthropic-version` is accepted and not needed. Every error on this endpoint leaves
in Anthropic's shape, `{"type": "error", "error": {"type", "message"}}`.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import GatewayError
from gateway.pipeline import admit_translated, complete_chat, open_stream
from gateway.request_body import MessagesRequest
from gateway.routes.chat import event_stream
from gateway.translate.anthropic import error_body, from_chat, to_chat
from gateway.translate.anthropic_stream import AnthropicStream
from gateway.translated_stream import translated


async def create_message(request: Request) -> Response:
    try:
        return await _create_message(request)
    except GatewayError as error:
        return Response(
            orjson.dumps(error_body(error.status, error.message)),
            status_code=error.status,
            media_type="application/json",
            headers=error.headers,
        )


async def _create_message(request: Request) -> Response:
    body, chat, adm = await admit_translated(request, MessagesRequest, to_chat, "messages")
    message_id = "msg_" + adm.record.request_id.removeprefix("gen-")
    if body.get("stream"):
        ctx, opening, headers = await open_stream(adm, chat, always_usage=True)
        stream = AnthropicStream(message_id, adm.model)
        return event_stream(translated(ctx, opening, stream), headers, ctx.on_client_close)
    answer, headers = await complete_chat(adm, chat)
    return Response(
        orjson.dumps(from_chat(answer, message_id)), media_type="application/json", headers=headers
    )
