"""`POST /v1/responses` (and `GET`/`DELETE /v1/responses/{id}`): the Responses API.

Translated to Chat Completions (`gateway.translate.responses`) and run through the
same pipeline as chat — routing, failover, key limits, RAG, the ledger (`kind:
responses`). A deployment that has the Responses API natively (`responses_api` in
config; OpenAI's preset) is sent the request there instead, with every Responses-only
parameter, and its own output items and events are relayed
(`providers.responses_wire`); failover may cross between the two kinds before the
first token. The gateway keeps the conversations (`previous_response_id`) itself,
so any deployment can continue any of them: native upstreams get `store: false`
and the whole history as input. A native stream is never resumed on another
deployment mid-answer (it ends with `response.failed`, like any broken stream
without resume). A response's id is `resp_` plus the request id (`x-request-id` and
`/v1/generation` know it as `gen-…`).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import Principal, authenticate
from gateway.errors import GatewayError
from gateway.pipeline import admit_chat, complete_chat, open_stream
from gateway.request_body import ChatCompletionRequest, ResponsesRequest, read_json_object, validate
from gateway.responses_store import require
from gateway.routes.chat import event_stream
from gateway.runtime import Runtime
from gateway.translate.responses import (
    from_chat,
    input_messages,
    native_fields,
    output_messages,
    skeleton,
    to_chat,
)
from gateway.translate.responses_stream import ResponsesStream
from gateway.translated_stream import translated
from providers.responses_wire import RESPONSES_FIELD

JSON = dict[str, Any]


def _owner(principal: Principal) -> str:
    return principal.key_id or principal.name


async def create_response(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    principal = authenticate(request, runtime.settings)
    body = await read_json_object(request, runtime.settings.max_body_bytes)
    validate(ResponsesRequest, body)
    history: list[JSON] = []
    if body.get("previous_response_id") is not None:
        history = (
            await require(runtime.responses, _owner(principal), body["previous_response_id"])
        ).conversation
    conversation = history + input_messages(body.get("input", []))
    chat = to_chat(body, conversation)
    if not chat["messages"]:
        raise GatewayError(400, "invalid request: input: give some input", param="input")
    validate(ChatCompletionRequest, chat)
    chat[RESPONSES_FIELD] = native_fields(body)
    adm = await admit_chat(request, runtime, principal, chat, kind="responses")
    response_id = "resp_" + adm.record.request_id.removeprefix("gen-")
    created = int(time.time())

    async def keep(response: JSON) -> None:
        if body.get("store") is not False and response["status"] in ("completed", "incomplete"):
            await runtime.responses.put(_owner(principal), conversation + output_messages(response), response)

    if body.get("stream"):
        ctx, opening, headers = await open_stream(adm, chat, always_usage=True)
        ctx.resume = ctx.resume and not any(d.responses_api for d in adm.plan.deployments)
        stream = ResponsesStream(skeleton(body, response_id, created, adm.model))
        relay = translated(ctx, opening, stream, lambda: keep(stream.response))
        return event_stream(relay, headers, ctx.on_client_close)
    answer, headers = await complete_chat(adm, chat)
    response = from_chat(answer, body, response_id, created)
    await keep(response)
    return Response(orjson.dumps(response), media_type="application/json", headers=headers)


async def get_response(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    principal = authenticate(request, runtime.settings)
    entry = await require(
        runtime.responses, _owner(principal), request.path_params["response_id"], "response_id"
    )
    return Response(orjson.dumps(entry.response), media_type="application/json")


async def delete_response(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    principal = authenticate(request, runtime.settings)
    response_id = request.path_params["response_id"]
    if not await runtime.responses.delete(_owner(principal), response_id):
        await require(runtime.responses, _owner(principal), response_id, "response_id")  # the 404
    payload = {"id": response_id, "object": "response.deleted", "deleted": True}
    return Response(orjson.dumps(payload), media_type="application/json")
