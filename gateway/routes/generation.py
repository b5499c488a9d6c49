"""`GET /v1/generation?id=…`: the stored record of a finished request (OpenRouter has the same).

A virtual key sees only its own requests; the admin key (and, on an open gateway,
a caller with no key) sees all. Someone else's record answers 404, exactly like a
missing one, so ids cannot be probed for existence.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import authenticate
from gateway.errors import GatewayError
from gateway.runtime import Runtime


async def generation(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    principal = authenticate(request, runtime.settings)
    request_id = request.query_params.get("id")
    if not request_id:
        raise GatewayError(400, "the query parameter 'id' is required", param="id")
    found = runtime.recent.get(request_id)
    sees_all = principal.is_admin or (not runtime.settings.auth_enabled and principal.key_id is None)
    if found is None or not (sees_all or found[0] == principal.key_id):
        raise GatewayError(
            404, f"no finished request with id {request_id!r}", code="generation_not_found", param="id"
        )
    return Response(b'{"data":' + found[1] + b"}", media_type="application/json")


async def health(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")
