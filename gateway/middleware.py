"""Raw ASGI middleware: a request id and the gateway's overhead on every response.

Written against ASGI directly rather than Starlette's BaseHTTPMiddleware, which
would wrap every streamed response in extra tasks and queues on the hot path.

Being outermost, it is where a request's clock starts (`providers.clock`): the
`x-gateway-overhead-ms` header is the time from here to the response head not spent
waiting on an upstream — for a stream, the work done before its first byte is
relayed. Time spent waiting for a slow client to take the body is the client's,
and is not counted either.
"""

from __future__ import annotations

import os
from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from providers.clock import RequestClock, request_clock

OVERHEAD_HEADER = b"x-gateway-overhead-ms"


def new_request_id() -> str:
    return "gen-" + os.urandom(12).hex()


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        clock = RequestClock()
        token = request_clock.set(clock)
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                overhead = b"%.3f" % clock.overhead_ms()
                message["headers"] = [*message.get("headers", ()), id_header, (OVERHEAD_HEADER, overhead)]
                await send(message)
                return
            began = perf_counter()
            try:
                await send(message)
            finally:
                clock.client_s += perf_counter() - began

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_clock.reset(token)
