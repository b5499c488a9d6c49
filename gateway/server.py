"""The HTTP server's configuration and its limits, the same for `gateway serve` and tests.

uvicorn's httptools protocol (the fast one, which the gateway runs) enforces none of
the limits a server facing the internet needs: it buffers a header block of any size,
waits forever for a head or a body that never completes, and accepts any number of
connections (`limit_concurrency` only answers 503 after reading a whole head, and
`h11_max_incomplete_event_size` applies to the slower h11 protocol only). So the
protocol is subclassed here, adding at the connection level, before any ASGI code:

- a cap on the request head (request line plus headers): over it → 431, closed;
- a deadline for the head, counted from the connection's first byte (or its opening):
  missed → 408, closed — this is what stops slow-loris clients;
- a deadline for the whole body once the head is in: missed → 408, closed;
- a cap on open connections: one more is answered 503 at once and closed.

Each refusal is a complete HTTP response carrying OpenAI's error envelope, then the
connection is closed. The only work on the hot path is a counter and a timer per request.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, fields
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.settings import Settings

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})  # same names as Settings


def refusal(status: int, message: str, code: str) -> bytes:
    """A whole HTTP/1.1 response with OpenAI's error envelope, announcing the close."""
    body = orjson.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "code": code, "param": None}}
    )
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        % (status, _REASONS[status], len(body))
    )
    return head + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above; `limits` is set per server."""

    limits: HttpLimits

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0  # bytes received of a head not yet complete
        self._head_size = 0  # request line and headers parsed so far
        self._heads = 0  # heads completed on this connection
        self._reading_head = True
        self._refused = False
        self._deadline: asyncio.TimerHandle | None = None
        if len(self.connections) > self.limits.max_connections:
            self._refuse(
                503, "the gateway has too many open connections; retry shortly", "too_many_connections"
            )
            return
        self._arm(self.limits.header_timeout_s)  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._reading_head and self._deadline is None:
            self._arm(self.limits.header_timeout_s)  # the next request on a kept-alive connection
        heads, was_reading_head = self._heads, self._reading_head
        super().data_received(data)
        if was_reading_head and self._reading_head and heads == self._heads and not self._refused:
            # A head was being read before and after this chunk and none completed in it, so
            # all of it belongs to that head: this bounds what the parser buffers for a head
            # that never ends. (A chunk that ends a body is not the next head's, even though
            # reading the next head begins inside it.)
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._too_large()

    def on_message_begin(self) -> None:
        self._head_bytes = self._head_size = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._heads += 1
        if self._head_size > self.limits.max_header_bytes:  # a whole head that came in one read
            self._too_large()
            return
        self._arm(self.limits.body_timeout_s)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        self._reading_head = True
        super().on_message_complete()

    def _too_large(self) -> None:
        limit = self.limits.max_header_bytes
        self._refuse(
            431, f"the request's headers are larger than the limit of {limit} bytes", "headers_too_large"
        )

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self._refused or self.transport.is_closing():
            return
        what = "headers" if self._reading_head else "body"
        if self.cycle is not None and not self._reading_head and self.cycle.response_started:
            self.transport.close()  # the app already answered; only the connection is left to end
            return
        self._refuse(408, f"the request's {what} did not arrive in time", "request_timeout")

    def _refuse(self, status: int, message: str, code: str) -> None:
        self._refused = True
        self._disarm()
        self.transport.write(refusal(status, message, code))
        self.transport.close()


def protocol_class(limits: HttpLimits) -> type[GuardedHttpToolsProtocol]:
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


class EnvironmentGuardedProtocol(GuardedHttpToolsProtocol):
    """The guarded protocol of `gateway serve --workers N`, which uvicorn imports by name in each
    worker (a class made at run time cannot be sent to a spawned process); each worker reads the
    limits from its own settings, which come from the environment the parent shares."""

    @property
    def limits(self) -> HttpLimits:  # type: ignore[override]
        return _environment_limits()


@functools.cache
def _environment_limits() -> HttpLimits:
    return HttpLimits.from_settings(Settings())


def worker_options(settings: Settings) -> dict[str, Any]:
    """`server_config`'s protocol settings as `uvicorn.run` keywords, for worker processes."""
    return {
        "loop": "uvloop",
        "http": f"{__name__}:EnvironmentGuardedProtocol",
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.idle_connection_timeout_s,
    }


def server_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """The one uvicorn.Config the gateway runs with; `options` adds host, port, logging."""
    limits = HttpLimits.from_settings(settings)
    return uvicorn.Config(
        app,
        loop="uvloop",
        http=protocol_class(limits),
        h11_max_incomplete_event_size=limits.max_header_bytes,  # the same cap, should h11 ever be used
        timeout_keep_alive=settings.idle_connection_timeout_s,
        **options,
    )
