"""`POST /v1/chat/completions`: non-streaming and streaming."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response

from gateway.accounting import answer_text, estimate_usage, usage_payload
from gateway.auth import authenticate
from gateway.errors import GatewayError
from gateway.records import RequestRecord
from gateway.request_body import ChatCompletionRequest, read_json_object, validate
from gateway.retrieval import Grounding, ground, rag_request
from gateway.routes.failures import admit_or_book, book_failure
from gateway.routing import fill_model, wants_metadata
from gateway.runtime import Runtime
from gateway.streaming import StreamContext, relay
from gateway.telemetry.prompts import keep_prompt
from providers.errors import ProviderError
from router_policies.attempts import AllAttemptsFailed, AttemptLog
from router_policies.deployment import ModelGroup
from router_policies.executor import complete, start_stream
from router_policies.router import Plan

# Fields that steer the gateway itself and must not reach an upstream.
_GATEWAY_FIELDS = ("provider", "models", "rag")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def resolve_model(runtime: Runtime, name: Any) -> ModelGroup:
    group = runtime.models.get(name) if isinstance(name, str) else None
    if group is None:
        raise GatewayError(
            404,
            f"the model {name!r} does not exist on this gateway; GET /v1/models lists the available ones",
            code="model_not_found",
            param="model",
        )
    return group


def upstream_body(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in _GATEWAY_FIELDS}


async def chat_completions(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    principal = authenticate(request, runtime.settings)
    body = await read_json_object(request, runtime.settings.max_body_bytes)
    fill_model(body)
    validate(ChatCompletionRequest, body)
    plan = runtime.routing.plan(runtime.models, body, principal.name)
    group = plan.groups[0]
    asked = rag_request(runtime, body, group.name)
    request_id: str = request.state.request_id
    record = RequestRecord(
        request_id=request_id, model=group.name, key_id=principal.key_id, key_name=principal.name
    )
    record.policy = plan.policy
    record.streamed = bool(body.get("stream"))
    record.prompt = keep_prompt(runtime, request, principal, plan, body)
    await admit_or_book(request, runtime, principal, group, body, record)
    grounding = None
    if asked is not None:  # the RAG step: between admission and the upstream
        grounding = await ground(runtime, asked, body, record, plan.prefs.data_collection == "deny")
    meta = _metadata(plan, grounding) if wants_metadata(request.headers) else None
    if body.get("stream"):
        return await _stream(runtime, group.name, plan, body, record, meta, grounding)
    return await _complete(runtime, group.name, plan, body, record, meta, grounding)


def _metadata(plan: Plan, grounding: Grounding | None) -> Callable[[AttemptLog], dict[str, Any]]:
    """The `gateway` object of `X-Gateway-Metadata`: routing, and retrieval when there was some."""

    def build(log: AttemptLog) -> dict[str, Any]:
        data = plan.metadata(log)
        if grounding is not None:
            data["rag"] = grounding.metadata()
        return data

    return build


async def _complete(
    runtime: Runtime,
    model: str,
    plan: Plan,
    body: dict[str, Any],
    record: RequestRecord,
    meta: Callable[[AttemptLog], dict[str, Any]] | None,
    grounding: Grounding | None,
) -> Response:
    started_at = time.monotonic()
    log = AttemptLog()
    router = runtime.routing.router
    try:
        result, deployment = await complete(
            plan.deployments, upstream_body(body), log, router, plan.hedge, plan.retry
        )
    except (AllAttemptsFailed, ProviderError) as failure:
        raise book_failure(runtime, record, log, started_at, failure, model) from None
    answer = result.body
    usage = result.usage
    if usage is None:
        usage = await estimate_usage(body.get("messages", []), answer_text(answer))
    answer["id"] = record.request_id
    answer["model"] = plan.model_of.get(deployment, model)
    answer["provider"] = deployment.provider
    answer["usage"] = usage_payload(usage, deployment, answer.get("usage"))
    choices = answer.get("choices") or [{}]
    record.deployment, record.provider = deployment.id, deployment.provider
    record.prompt_tokens, record.completion_tokens = usage.prompt_tokens, usage.completion_tokens
    record.usage_estimated = usage.estimated
    record.cost_usd = answer["usage"]["cost"]
    record.finish_reason = choices[0].get("finish_reason") if isinstance(choices[0], dict) else None
    record.latency_ms = record.ttft_ms = (time.monotonic() - started_at) * 1000
    record.attempts = [a.as_dict() for a in log.attempts]
    if record.prompt is not None:
        record.prompt["answer"] = answer_text(answer)
    runtime.finish(record)
    if grounding is not None:
        grounding.cite_answer(answer)
    if meta is not None:
        answer["gateway"] = meta(log)
    return Response(
        orjson.dumps(answer), media_type="application/json", headers={"x-gateway-route": log.route_header()}
    )


async def _stream(
    runtime: Runtime,
    model: str,
    plan: Plan,
    body: dict[str, Any],
    record: RequestRecord,
    meta: Callable[[AttemptLog], dict[str, Any]] | None,
    grounding: Grounding | None,
) -> Response:
    """Wait up to one keep-alive interval for the stream to start before committing to 200.

    If every deployment fails quickly the client gets a real HTTP error status; if the
    first token is slow, the 200 and keep-alive comments go out, and a later total
    failure arrives as an error chunk.
    """
    started_at = time.monotonic()
    client_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    forwarded = upstream_body(body)
    forwarded["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    log = AttemptLog()
    opening = asyncio.ensure_future(
        start_stream(plan.deployments, forwarded, log, runtime.routing.router, plan.hedge, plan.retry)
    )
    keepalive_s = runtime.settings.keepalive_interval_s
    try:
        await asyncio.wait_for(asyncio.shield(opening), timeout=keepalive_s)
    except TimeoutError:
        pass
    except (AllAttemptsFailed, ProviderError) as failure:
        raise book_failure(runtime, record, log, started_at, failure, model) from None
    except BaseException:
        opening.cancel()
        raise
    ctx = StreamContext(
        request_id=record.request_id,
        model=model,
        created=int(time.time()),
        body=forwarded,
        plan=plan.deployments,
        client_wants_usage=client_usage,
        resume=model in runtime.resumable_models,
        record=record,
        log=log,
        started_at=started_at,
        finish=runtime.finish,
        keepalive_s=keepalive_s,
        model_of=plan.model_of,
        observer=runtime.routing.router,
        gateway_meta=(lambda: meta(log)) if meta is not None else None,
        on_finish=grounding.cite_chunk if grounding is not None and grounding.hits else None,
    )
    # Before the stream has started this names the attempt under way ("…;pending").
    headers = {**SSE_HEADERS, "x-gateway-route": log.route_header()}
    return EventSourceResponse(
        relay(ctx, opening),
        headers=headers,
        ping=0,  # keep-alives come from `relay`, only while the first token is awaited
        client_close_handler_callable=ctx.on_client_close,
        sep="\n",
    )
