"""`POST /v1/embeddings`, forwarded like chat: same routing, failover and costing."""

from __future__ import annotations

import time

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.accounting import usage_payload
from gateway.auth import authenticate
from gateway.pipeline import upstream_body
from gateway.records import RequestRecord
from gateway.request_body import EmbeddingsRequest, read_json_object, validate
from gateway.routes.failures import admit_or_book, book_failure
from gateway.runtime import Runtime
from providers.errors import ProviderError
from providers.types import Usage
from router_policies.attempts import AllAttemptsFailed, AttemptLog
from router_policies.executor import embed


async def embeddings(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    principal = authenticate(request, runtime.settings)
    body = await read_json_object(request, runtime.settings.max_body_bytes)
    validate(EmbeddingsRequest, body)
    plan = runtime.routing.plan(runtime.models, body, principal.name)
    group = plan.groups[0]
    record = RequestRecord(
        request_id=request.state.request_id,
        model=group.name,
        key_id=principal.key_id,
        key_name=principal.name,
        kind="embeddings",
    )
    await admit_or_book(request, runtime, principal, plan, body, record)
    started_at = time.monotonic()
    log = AttemptLog()
    try:
        result, deployment = await embed(
            plan.deployments, upstream_body(body), log, runtime.routing.router, plan.retry
        )
    except (AllAttemptsFailed, ProviderError) as failure:
        raise book_failure(runtime, record, log, started_at, failure, group.name) from None
    usage = result.usage or Usage(estimated=True)
    answer = result.body
    answer["model"] = group.name
    answer["provider"] = deployment.provider
    answer["usage"] = usage_payload(usage, deployment, answer.get("usage"))
    record.deployment, record.provider = deployment.id, deployment.provider
    record.prompt_tokens, record.cost_usd = usage.prompt_tokens, answer["usage"]["cost"]
    record.latency_ms = (time.monotonic() - started_at) * 1000
    record.attempts = [a.as_dict() for a in log.attempts]
    runtime.finish(record)
    return Response(
        orjson.dumps(answer), media_type="application/json", headers={"x-gateway-route": log.route_header()}
    )
