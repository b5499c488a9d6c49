"""The application factory: `create_app(settings, config)`.

The app holds no import-time state: everything live (pooled upstream clients,
simulated upstreams, the model index) is built in the lifespan from the settings and
config it is given, which is what lets tests start many gateways in one process.

It is a FastAPI app whose routes are plain Starlette routes on the raw request: the
hot path parses and validates its own bodies (`gateway.request_body`), so no request
pays for FastAPI's validation or dependency solving. The API is described for
`/openapi.json` and `/docs` by `gateway.api_schema`, from typed stubs of the same routes.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from gateway.accounts import AccountsMiddleware
from gateway.admin.cache_routes import cache_admin_routes
from gateway.admin.rag_routes import rag_admin_routes
from gateway.admin.reports import report_routes
from gateway.admin.routes import admin_routes
from gateway.api_schema.docs import TITLE, docs_routes
from gateway.browser_guard import BrowserGuard, split_list
from gateway.config import GatewayConfig
from gateway.dashboard.pages import dashboard_routes
from gateway.errors import GatewayError, error_response
from gateway.hot_routes import HotRoutes
from gateway.middleware import RequestIdMiddleware
from gateway.readiness import ready
from gateway.routes.chat import chat_completions
from gateway.routes.completions import completions
from gateway.routes.embeddings import embeddings
from gateway.routes.generation import generation, health
from gateway.routes.messages import create_message
from gateway.routes.models import list_models
from gateway.routes.responses import create_response, delete_response, get_response
from gateway.runtime import build_runtime
from gateway.settings import Settings
from gateway.telemetry.endpoint import metrics
from gateway.telemetry.tracing import TracingMiddleware
from gateway.translate.anthropic import error_body as anthropic_error

log = logging.getLogger("gateway")

_NO_FASTAPI_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "no such endpoint" if exc.status_code == 404 else str(exc.detail)
    message = f"{message}: {request.method} {request.url.path}"
    headers = dict(exc.headers or {})  # a 405's `Allow` (RFC 9110) among them
    if request.url.path == "/v1/messages":  # every error of the Messages API is in Anthropic's shape
        body = orjson.dumps(anthropic_error(exc.status_code, message))
        return Response(body, exc.status_code, headers, media_type="application/json")
    return error_response(GatewayError(exc.status_code, message), headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(GatewayError(500, "internal error in the gateway", code="internal_error"))


def _one_route_per_path(routes: list[BaseRoute]) -> list[BaseRoute]:
    """Routes of one path that differ by method, merged into one route dispatching on the method.

    Starlette answers a wrong method with the `Allow` of the first route whose path
    matches, which would hide the others' methods (`GET /admin/api/keys` hiding `POST`).
    """
    by_path: dict[str, list[Route]] = {}
    for route in routes:
        if type(route) is Route:
            by_path.setdefault(route.path, []).append(route)
    merged: list[BaseRoute] = []
    for route in routes:
        if type(route) is not Route or len(by_path[route.path]) == 1:
            merged.append(route)
        elif by_path[route.path][0] is route:
            endpoints = {m: r.endpoint for r in by_path[route.path] for m in r.methods or ()}
            merged.append(Route(route.path, _by_method(endpoints), methods=list(endpoints)))
    return merged


def _by_method(endpoints: dict[str, Callable[[Request], Awaitable[Response]]]) -> Callable[..., Any]:
    async def endpoint(request: Request) -> Response:
        return await endpoints[request.method](request)

    return endpoint


# The proxied endpoints: routed by FastAPI too (405s, /openapi.json), but served by `HotRoutes`.
_PROXIED = (
    ("/v1/chat/completions", chat_completions),
    ("/v1/embeddings", embeddings),
    ("/v1/responses", create_response),
    ("/v1/messages", create_message),
    ("/v1/completions", completions),
)


def create_app(
    settings: Settings, config: GatewayConfig, *, on_started: Callable[[], None] | None = None
) -> ASGIApp:
    """The ASGI app; the request-id middleware wraps everything so even a 500 carries the id.

    `on_started` runs once the lifespan has built everything, before the first request.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await build_runtime(settings, config)
        app.state.runtime = runtime
        runtime.lifecycle.install()
        for group in runtime.models.values():
            for d in group.deployments:
                log.info(
                    "model %s -> %s%s ($%.4g/$%.4g per Mtok, %s)",
                    group.name,
                    d.id,
                    " [SIMULATED]" if d.simulated else "",
                    d.input_price_per_mtok,
                    d.output_price_per_mtok,
                    d.price_source,
                )
        if on_started is not None:
            on_started()
        try:
            yield
        finally:
            runtime.lifecycle.uninstall()
            await runtime.aclose()

    routes: list[BaseRoute] = [
        *(Route(path, endpoint, methods=["POST"]) for path, endpoint in _PROXIED),
        Route("/v1/responses/{response_id}", get_response, methods=["GET"]),
        Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/generation", generation, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        *admin_routes(),
        *rag_admin_routes(),
        *cache_admin_routes(),
        *report_routes(),
        *dashboard_routes(),
        *docs_routes(),
    ]
    routes = _one_route_per_path(routes)
    handlers: dict[Any, Any] = {
        GatewayError: _gateway_error,
        HTTPException: _http_error,
        Exception: _unexpected,
    }
    app = FastAPI(
        title=TITLE,
        routes=routes,
        exception_handlers=handlers,
        lifespan=lifespan,
        openapi_url=None,  # served by gateway.api_schema.docs, from the stubs, not from these routes
        docs_url=None,
        redoc_url=None,
        # The gateway traces and counts requests itself (gateway.telemetry): FastAPI's own spans
        # and metrics would double them and cost every request; bodies are capped by request_body.
        telemetry=_NO_FASTAPI_TELEMETRY,
    )
    hot = HotRoutes(app, {("POST", path): endpoint for path, endpoint in _PROXIED}, handlers)
    inner: ASGIApp = TracingMiddleware(AccountsMiddleware(hot, settings))
    origins = split_list(settings.cors_origins)
    if origins:  # no CORS headers at all unless origins are configured
        inner = CORSMiddleware(inner, allow_origins=list(origins), allow_methods=["*"], allow_headers=["*"])
    admin_posts = [
        r
        for r in routes
        if isinstance(r, Route) and r.path.startswith("/admin/api/") and "POST" in (r.methods or ())
    ]
    return RequestIdMiddleware(BrowserGuard(inner, settings, admin_posts))
