"""The proxied endpoints, dispatched straight to their handlers instead of through FastAPI.

FastAPI wraps every request in its own middleware stack (server errors, exception
handling, a body limit, an exit stack for dependencies), then the router's linear
match, then the route's request/response wrapper: seven layers, each with a `send`
wrapper every streamed chunk passes through — about 15 % of the gateway's samples
under load (py-spy, bench.added_latency). The proxied endpoints use none of it: they
read and cap their own bodies (`gateway.request_body`), take no dependencies and map
their errors through the same handlers. So an exact (method, path) match here calls
the handler directly with those handlers; everything else — the admin API, pages,
404s and 405s — goes to the FastAPI app as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]


class HotRoutes:
    """Calls `endpoints[(method, path)]` directly; passes any other request to `app`."""

    def __init__(
        self,
        app: Any,
        endpoints: Mapping[tuple[str, str], Endpoint],
        handlers: Mapping[type[Exception], ErrorHandler],
    ) -> None:
        self.app: ASGIApp = app
        self.state = app.state  # what the outer middleware reads the runtime from
        self._endpoints = dict(endpoints)
        self._handlers = dict(handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self._endpoints.get((scope.get("method", ""), scope.get("path", "")))
        if endpoint is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app  # `request.app.state.runtime`, as under the router
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except Exception as exc:  # before any byte went out: the error is the response
            response = await self._handler(exc)(request, exc)
            exc.__traceback__ = None
        # A failure from here on is the response's own (a stream ends itself with an error chunk).
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> ErrorHandler:
        for kind in type(exc).__mro__:
            handler = self._handlers.get(kind)
            if handler is not None:
                return handler
        raise exc
