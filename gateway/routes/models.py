"""`GET /v1/models`: every model with its deployments and prices.

OpenAI's list shape, with each entry extended by its deployments so a client can see
what it may be routed to and what it costs; simulated (demo) upstreams say so.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import authenticate
from gateway.runtime import Runtime
from router_policies.deployment import Deployment


def _deployment(d: Deployment) -> dict[str, object]:
    return {
        "id": d.id,
        "provider": d.provider,
        "model": d.model,
        "pricing": {
            "input_per_mtok_usd": d.input_price_per_mtok,
            "output_per_mtok_usd": d.output_price_per_mtok,
            "source": d.price_source,
        },
        "context_window_tokens": d.context_window_tokens,
        "self_hosted": d.self_hosted,
        "data_collection": d.data_collection,
        "simulated": d.simulated,
    }


def models_payload(runtime: Runtime) -> bytes:
    data = [
        {
            "id": group.name,
            "object": "model",
            "created": 0,
            "owned_by": "gateway",
            "simulated": any(d.simulated for d in group.deployments),
            "deployments": [_deployment(d) for d in group.deployments],
        }
        for group in runtime.models.values()
    ]
    return orjson.dumps({"object": "list", "data": data})


async def list_models(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    authenticate(request, runtime.settings)
    return Response(runtime.models_json, media_type="application/json")
