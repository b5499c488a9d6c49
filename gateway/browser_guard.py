"""Raw ASGI middleware that keeps web pages of other sites away from the gateway.

A browser will send requests to a gateway on loopback for any page it has open:
a cross-site form or `fetch` (CSRF), or a page on a hostile name that resolves to
127.0.0.1 (DNS rebinding). On an open gateway — no admin key — either could mint keys
and spend. So, before any route runs:

- Host: with auth off, only loopback names and `GATEWAY_ALLOWED_HOSTS` are served
  (with auth on, only the latter when set): a rebinding page has a foreign Host.
- Origin: a state-changing request (any method but GET/HEAD/OPTIONS) that carries
  an `Origin` must come from the gateway's own origin or one of
  `GATEWAY_CORS_ORIGINS`. SDKs and curl send no Origin; browsers always do.
- Admin API writes must be JSON (`content-type: application/json`), a type no
  cross-site form can send and no cross-site `fetch` can send without a CORS
  preflight — which the gateway answers only for configured origins. A POST to an
  admin path that takes no POST is left to the router, which answers 405 with `Allow`.

Refusals are OpenAI-shaped errors. The cost per request is one pass over the
request's headers and a dict lookup (each Host value is judged once).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import GatewayError, error_response
from gateway.settings import Settings

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address (a listen address, or a Host header's name)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(host: str) -> str:
    """`Host` header value → its name, lower-cased, without port or IPv6 brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def split_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip().lower().rstrip("/") for item in value.split(",") if item.strip())


class BrowserGuard:
    def __init__(self, app: ASGIApp, settings: Settings, admin_posts: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self._admin_posts = tuple(admin_posts)  # the admin routes that take a POST (all, if none given)
        self._allowed_hosts = frozenset(split_list(settings.allowed_hosts))
        self._loopback_ok = not settings.auth_enabled
        self._check_host = not settings.auth_enabled or bool(self._allowed_hosts)
        self._origins = frozenset(split_list(settings.cors_origins))
        self._host_verdicts: dict[str, bool] = {}  # a server sees few Host values: decide each once

    def _host_allowed(self, host: str) -> bool:
        verdict = self._host_verdicts.get(host)
        if verdict is None:
            name = host_name(host)
            verdict = name in self._allowed_hosts or (self._loopback_ok and is_loopback(name))
            if len(self._host_verdicts) < 1024:
                self._host_verdicts[host] = verdict
        return verdict

    def _refusal(self, scope: Scope, host: str, origin: str, content_type: str) -> GatewayError | None:
        if self._check_host and host and not self._host_allowed(host):
            return GatewayError(
                403,
                f"requests for host {host_name(host)!r} are not served here; add it to GATEWAY_ALLOWED_HOSTS",
                code="host_not_allowed",
            )
        if scope["method"] in _SAFE_METHODS:
            return None
        if origin and origin.rstrip("/") not in self._origins and urlsplit(origin).netloc != host:
            return GatewayError(
                403,
                f"cross-origin request from {origin!r} refused; allow it with GATEWAY_CORS_ORIGINS",
                code="origin_not_allowed",
            )
        is_json = content_type.split(";", 1)[0].strip() == "application/json"
        if (
            scope["path"].startswith("/admin/api/")
            and scope["method"] == "POST"
            and not is_json
            and self._takes_post(scope)
        ):
            return GatewayError(
                415, "admin API requests must be sent as content-type: application/json", code="not_json"
            )
        return None

    def _takes_post(self, scope: Scope) -> bool:
        if not self._admin_posts:
            return True
        return any(route.matches(scope)[0] == Match.FULL for route in self._admin_posts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = origin = content_type = b""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"origin":
                origin = value
            elif name == b"content-type":
                content_type = value
        refusal = self._refusal(
            scope,
            host.decode("latin-1").lower(),
            origin.decode("latin-1").lower(),
            content_type.decode("latin-1").lower(),
        )
        if refusal is not None:
            await error_response(refusal)(scope, receive, send)
            return
        await self.app(scope, receive, send)
