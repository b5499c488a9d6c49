"""One chat completion through the gateway: route, admit, run, book.

Every endpoint that produces text — Chat Completions, and the Responses, Anthropic
Messages and legacy Completions shapes translated onto it — goes through these
steps, so routing, failover, key limits, the ledger and the mid-stream error
handling are the same whatever the client speaks. An endpoint only translates its
request into a chat body before `admit_chat`, and the answer (or the stream's chunk
dicts, `gateway.streaming.events`) back afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request

from gateway.accounting import answer_text, estimate_usage, usage_payload
from gateway.auth import Principal, authenticate
from gateway.cache.policy import Ticket
from gateway.records import RequestRecord
from gateway.request_body import ChatCompletionRequest, read_json_object, validate
from gateway.retrieval import Grounding, ground, rag_request
from gateway.routes.failures import admit_or_book, book_failure
from gateway.routing import wants_metadata
from gateway.runtime import Runtime
from gateway.streaming import StreamContext
from gateway.telemetry.prompts import keep_prompt
from providers.errors import ProviderError
from router_policies.attempts import AllAttemptsFailed, AttemptLog
from router_policies.executor import StartedStream, complete, start_stream
from router_policies.router import Plan

# Fields that steer the gateway itself and must not reach an upstream.
_GATEWAY_FIELDS = ("provider", "models", "rag", "cache")


def upstream_body(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in _GATEWAY_FIELDS}


@dataclass(slots=True)
class Admitted:
    """A request that has a plan and passed its key's limits; booked exactly once from here."""

    runtime: Runtime
    plan: Plan
    record: RequestRecord
    # With `X-Gateway-Metadata: enabled`: builds the `gateway` object (routing, retrieval).
    meta: Callable[[AttemptLog], dict[str, Any]] | None
    grounding: Grounding | None  # what RAG retrieved for this request, if it asked
    cache: Ticket | None = None  # how the response cache treats this request, if it does
    cached: dict[str, Any] | None = None  # the stored answer, on a hit (nothing else has run)

    @property
    def model(self) -> str:
        return self.plan.groups[0].name


async def admit_translated(
    request: Request,
    schema: type[BaseModel],
    translate: Callable[[dict[str, Any]], dict[str, Any]],
    kind: str,
) -> tuple[dict[str, Any], dict[str, Any], Admitted]:
    """Read and validate a body of another API shape, translate it, and admit its chat body."""
    runtime: Runtime = request.app.state.runtime
    principal = authenticate(request, runtime.settings)
    body = await read_json_object(request, runtime.settings.max_body_bytes)
    validate(schema, body)
    chat = translate(body)
    validate(ChatCompletionRequest, chat)
    return body, chat, await admit_chat(request, runtime, principal, chat, kind)


async def admit_chat(
    request: Request, runtime: Runtime, principal: Principal, body: dict[str, Any], kind: str = "chat"
) -> Admitted:
    """Plan the route for a validated chat body, apply the key's limits (a refusal is booked),
    then the response cache (a hit returns at once, with `cached` set), then the RAG step
    if the request asked for it (it augments `body`'s messages)."""
    started_at = time.monotonic()
    plan = runtime.routing.plan(runtime.models, body, principal.name)
    group = plan.groups[0]
    asked = rag_request(runtime, body, group.name)
    deny = plan.prefs.data_collection == "deny"
    cache = runtime.cache
    who = (principal.key_id, principal.name)
    ticket = cache.decide(body, request.headers, who, group.name, deny, asked) if kind == "chat" else None
    record = RequestRecord(
        request_id=request.state.request_id,
        model=group.name,
        key_id=principal.key_id,
        key_name=principal.name,
        kind=kind,
    )
    record.policy = plan.policy
    record.streamed = bool(body.get("stream"))
    record.prompt = keep_prompt(runtime, request, principal, plan, body)
    await admit_or_book(request, runtime, principal, plan, body, record)
    if ticket is not None and (cached := await cache.lookup(ticket, record)) is not None:
        cache.book_hit(ticket, record, cached, started_at)
        runtime.finish(record)
        return Admitted(runtime, plan, record, None, None, ticket, cached)
    grounding = None
    if asked is not None:
        grounding = await ground(runtime, asked, body, record, deny)
    meta = _metadata(plan, grounding) if wants_metadata(request.headers) else None
    return Admitted(runtime, plan, record, meta, grounding, ticket)


def _metadata(plan: Plan, grounding: Grounding | None) -> Callable[[AttemptLog], dict[str, Any]]:
    """The `gateway` object of `X-Gateway-Metadata`: routing, and retrieval when there was some."""

    def build(log: AttemptLog) -> dict[str, Any]:
        data = plan.metadata(log)
        if grounding is not None:
            data["rag"] = grounding.metadata()
        return data

    return build


def _tool_arguments(answer: dict[str, Any]) -> str:
    """The arguments of every tool call in a non-streamed answer: output tokens too."""
    parts: list[str] = []
    for choice in answer.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        for call in (message.get("tool_calls") if isinstance(message, dict) else None) or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                parts.append(str(function.get("arguments") or ""))
    return "".join(parts)


def _fill_required(answer: dict[str, Any]) -> None:
    """Add the keys OpenAI's schema requires even when null, which some providers leave out."""
    answer.setdefault("object", "chat.completion")
    for choice in answer.get("choices") or ():
        if isinstance(choice, dict):
            choice.setdefault("logprobs", None)
            message = choice.get("message")
            if isinstance(message, dict):
                message.setdefault("content", None)
                message.setdefault("refusal", None)


async def complete_chat(adm: Admitted, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Run a non-streaming completion; the answer in OpenAI's shape (with cost) and its headers."""
    runtime, plan, record = adm.runtime, adm.plan, adm.record
    started_at = time.monotonic()
    log = AttemptLog()
    try:
        result, deployment = await complete(
            plan.deployments, upstream_body(body), log, plan.observer, plan.hedge, plan.retry
        )
    except (AllAttemptsFailed, ProviderError) as failure:
        raise book_failure(runtime, record, log, started_at, failure, adm.model) from None
    answer = result.body
    _fill_required(answer)
    usage = result.usage
    if usage is None:
        usage = await estimate_usage(body.get("messages", []), answer_text(answer) + _tool_arguments(answer))
    answer["id"] = record.request_id
    answer["model"] = plan.model_of.get(deployment, adm.model)
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
    if adm.grounding is not None:
        adm.grounding.cite_answer(answer)
    headers = {"x-gateway-route": log.route_header()}
    if adm.cache is not None:
        runtime.cache.store_answer(adm.cache, answer, record.cost_usd)
        headers["x-gateway-cache"] = adm.cache.header()
    if adm.meta is not None:
        answer["gateway"] = adm.meta(log)
    return answer, headers


async def open_stream(
    adm: Admitted, body: dict[str, Any], *, always_usage: bool = False
) -> tuple[StreamContext, asyncio.Future[StartedStream], dict[str, str]]:
    """Start a stream, waiting up to one keep-alive interval before committing to 200.

    If every deployment fails quickly the client gets a real HTTP error status; if the
    first token is slow, the 200 and keep-alives go out (see `streaming.events`), and a
    later total failure arrives as an error chunk. `always_usage` makes the final usage
    chunk part of the events whatever the client asked (translated shapes need it).
    """
    runtime, plan, record = adm.runtime, adm.plan, adm.record
    started_at = time.monotonic()
    client_usage = always_usage or bool((body.get("stream_options") or {}).get("include_usage"))
    forwarded = upstream_body(body)
    forwarded["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    log = AttemptLog()
    opening = asyncio.ensure_future(
        start_stream(plan.deployments, forwarded, log, plan.observer, plan.hedge, plan.retry)
    )
    keepalive_s = runtime.settings.keepalive_interval_s
    try:
        await asyncio.wait_for(asyncio.shield(opening), timeout=keepalive_s)
    except TimeoutError:
        pass
    except (AllAttemptsFailed, ProviderError) as failure:
        raise book_failure(runtime, record, log, started_at, failure, adm.model) from None
    except BaseException:
        opening.cancel()
        raise
    ctx = StreamContext(
        request_id=record.request_id,
        model=adm.model,
        created=int(time.time()),
        body=forwarded,
        plan=plan.deployments,
        client_wants_usage=client_usage,
        resume=adm.model in runtime.resumable_models,
        record=record,
        log=log,
        started_at=started_at,
        finish=runtime.finish,
        keepalive_s=keepalive_s,
        model_of=plan.model_of,
        observer=runtime.routing.router,
        gateway_meta=(lambda: meta(log)) if (meta := adm.meta) is not None else None,
        on_finish=adm.grounding.cite_chunk if adm.grounding is not None and adm.grounding.hits else None,
        lifecycle=runtime.lifecycle,
    )
    # Before the stream has started this names the attempt under way ("…;pending").
    headers = {"x-gateway-route": log.route_header()}
    if adm.cache is not None:
        ctx.finish = runtime.cache.stream_finisher(adm.cache, ctx, runtime.finish)
        headers["x-gateway-cache"] = adm.cache.header()
    return ctx, opening, headers
