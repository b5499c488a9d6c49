"""`GET /metrics`: the Prometheus text exposition of this process's registry.

Guarded like the admin API: when `GATEWAY_ADMIN_KEY` or `GATEWAY_METRICS_TOKEN` is
set, the scraper must send one of them as a bearer token (a virtual key is not
enough). With neither set the gateway only listens on loopback, and so does this.
"""

from __future__ import annotations

import hmac

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import bearer_token
from gateway.errors import GatewayError
from gateway.settings import Settings


def authorized(request: Request, settings: Settings) -> bool:
    secrets = [s.get_secret_value() for s in (settings.metrics_token, settings.admin_key) if s is not None]
    secrets = [s for s in secrets if s]
    if not secrets:
        return True
    token = bearer_token(request)
    if token is None:
        return False
    return any(hmac.compare_digest(token.encode(), secret.encode()) for secret in secrets)


async def metrics(request: Request) -> Response:
    runtime = request.app.state.runtime
    if not authorized(request, runtime.settings):
        raise GatewayError(
            401,
            "metrics need the admin key or the metrics token as a bearer token",
            code="invalid_api_key",
            headers={"www-authenticate": "Bearer"},
        )
    return Response(generate_latest(runtime.telemetry.registry), media_type=CONTENT_TYPE_LATEST)
