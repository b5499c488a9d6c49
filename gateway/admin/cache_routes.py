"""`/admin/api/cache`: purge the response cache, and its statistics (admin key only).

`DELETE /admin/api/cache?key=<key id>` forgets one virtual key's namespace,
`?group=<name>` a shared namespace, `?model=<name>` one model's entries in every
namespace (or, with `key`/`group`, in that one), `?all=true` everything. Semantic
entries go with the exact ones. `GET /admin/api/cache/stats` shows the stores and the
lookups counted by this process.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.common import admin_accounts, json_response
from gateway.cache.exact import CacheUnavailable
from gateway.cache.service import CacheService
from gateway.errors import GatewayError


def _service(request: Request) -> CacheService:
    admin_accounts(request)  # the admin key, or a dashboard session with its CSRF token
    service: CacheService = request.app.state.runtime.cache
    return service


def _unavailable(exc: CacheUnavailable) -> GatewayError:
    return GatewayError(503, f"the cache store is unavailable: {exc}", code="cache_unavailable")


async def purge_cache(request: Request) -> Response:
    service = _service(request)
    params = request.query_params
    key, group, model = params.get("key"), params.get("group"), params.get("model")
    everything = params.get("all") == "true"
    if key and group:
        raise GatewayError(400, "give key or group, not both", param="key")
    if not (key or group or model or everything):
        raise GatewayError(400, "say what to purge: key, group, model or all=true", param="all")
    namespace = f"key:{key}" if key else (f"shared:{group}" if group else None)
    try:
        removed = await service.purge(namespace, model or None)
    except CacheUnavailable as exc:
        raise _unavailable(exc) from None
    scope = {"key": key, "group": group, "model": model, "all": everything and not (key or group or model)}
    return json_response({"purged": {k: v for k, v in scope.items() if v}, **removed})


async def cache_stats(request: Request) -> Response:
    return json_response(await _service(request).stats())  # a store that is down reports its error


def cache_admin_routes() -> list[Route]:
    return [
        Route("/admin/api/cache", purge_cache, methods=["DELETE"]),
        Route("/admin/api/cache/stats", cache_stats, methods=["GET"]),
    ]
