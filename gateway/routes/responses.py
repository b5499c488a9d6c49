"""`POST /v1/responses` (and `GET`/`DELETE /v1/responses/{id}`): the Responses API.

Translated to Chat Completions (`gateway.translate.responses`) and run through the
same pipeline as chat — routing, failover, key limits, the ledger (`kind:
responses`). Every upstream is reached through Chat Completions, including those
that have the Responses API natively. A response's id is `resp_` plus the request id
(`x-request-id` and `/v1/generation` know it as `gen-…`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import Principal, authenticate
from gateway.errors import GatewayError
from gateway.pipeline import admit_chat, complete_chat, open_stream
from gateway.request_body import ChatCompletionRequest, ResponsesRequest, read_json_object, validate
from gateway.routes.chat import event_stream
from gateway.runtime import Runtime
from gateway.streaming import KEEP_ALIVE, StreamContext, events
from gateway.translate.responses import from_chat, input_messages, output_messages, skeleton, to_chat
from gateway.translate.responses_stream import Event, ResponsesStream

JSON = dict[str, Any]


def _owner(principal: Principal) -> str:
    return principal.key_id or principal.name


def encode_event(event: Event) -> bytes:
    kind, payload = event
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


async def create_response(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    principal = authenticate(request, runtime.settings)
    body = await read_json_object(request, runtime.settings.max_body_bytes)
    validate(ResponsesRequest, body)
    history: list[JSON] = []
    if body.get("previous_response_id") is not None:
        history = runtime.responses.require(_owner(principal), body["previous_response_id"]).conversation
    conversation = history + input_messages(body.get("input", []))
    chat = to_chat(body, conversation)
    if not chat["messages"]:
        raise GatewayError(400, "invalid request: input: give some input", param="input")
    validate(ChatCompletionRequest, chat)
    adm = await admit_chat(request, runtime, principal, chat, kind="responses")
    response_id = "resp_" + adm.record.request_id.removeprefix("gen-")
    created = int(time.time())

    def keep(response: JSON) -> None:
        if body.get("store") is not False and response["status"] in ("completed", "incomplete"):
            runtime.responses.put(_owner(principal), conversation + output_messages(response), response)

    if body.get("stream"):
        ctx, opening, headers = await open_stream(adm, chat, always_usage=True)
        stream = ResponsesStream(skeleton(body, response_id, created, adm.model))
        return event_stream(_relay(ctx, opening, stream, keep), headers, ctx.on_client_close)
    answer, headers = await complete_chat(adm, chat)
    response = from_chat(answer, body, response_id, created)
    keep(response)
    return Response(orjson.dumps(response), media_type="application/json", headers=headers)


async def _relay(
    ctx: StreamContext, opening: Any, stream: ResponsesStream, keep: Callable[[JSON], None]
) -> AsyncIterator[bytes]:
    """The relay's chat chunks as Responses events; the finished response is stored."""
    for event in stream.start():
        yield encode_event(event)
    async with aclosing(events(ctx, opening)) as chunks:
        async for chunk in chunks:
            if chunk is None:
                yield KEEP_ALIVE
                continue
            for event in stream.chunk(chunk):
                yield encode_event(event)
    if stream.response["status"] == "failed":
        return
    for event in stream.end():
        yield encode_event(event)
    keep(stream.response)


async def get_response(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    principal = authenticate(request, runtime.settings)
    entry = runtime.responses.require(_owner(principal), request.path_params["response_id"], "response_id")
    return Response(orjson.dumps(entry.response), media_type="application/json")


async def delete_response(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    principal = authenticate(request, runtime.settings)
    response_id = request.path_params["response_id"]
    runtime.responses.require(_owner(principal), response_id, "response_id")
    runtime.responses.delete(_owner(principal), response_id)
    payload = {"id": response_id, "object": "response.deleted", "deleted": True}
    return Response(orjson.dumps(payload), media_type="application/json")
