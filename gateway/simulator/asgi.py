"""Raw-ASGI plumbing: read a body, send a whole response, notice a client leave.

Why raw ASGI rather than Starlette responses: the simulator must do things a
framework deliberately hides — leave a chunked body unfinished so the client sees
a broken transfer, notice a disconnect while it sleeps between chunks or hangs,
and stay cheap per request so a benchmark measures the gateway, not the fake
upstream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_TYPE = b"application/json"


class ClientGone(Exception):
    """The client disconnected before the request body was read."""


async def read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


def encode_headers(pairs: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs]


async def send_whole(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = JSON_TYPE,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """One complete response with a Content-Length."""
    start = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        start.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class ClientWatch:
    """Notices, the moment it happens, that the client went away — even mid-sleep.

    A background task waits on `receive()` for `http.disconnect`; `pause()` sleeps
    on a future that either the timer or the disconnect resolves, so a test that
    measures how fast the gateway closed its upstream connection measures the
    gateway, not the simulator's polling interval. `release()` wakes the same
    sleeps when the server shuts down, so a hanging stream never blocks shutdown.
    Create only after the request body has been read.
    """

    __slots__ = ("_on_gone", "_task", "_waiter", "gone", "gone_at", "released")

    def __init__(self, receive: Receive, on_gone: Callable[[float], None] | None = None) -> None:
        self.gone = False
        self.gone_at: float | None = None
        self.released = False
        self._on_gone = on_gone
        self._waiter: asyncio.Future[None] | None = None
        self._task = asyncio.get_running_loop().create_task(self._watch(receive))

    @property
    def stopped(self) -> bool:
        """True once the client left or the server asked open responses to end."""
        return self.gone or self.released

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone_at = time.monotonic()
        self.gone = True
        if self._on_gone is not None:
            self._on_gone(self.gone_at)
        self._wake()

    def release(self) -> None:
        self.released = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None:
            _resolve(self._waiter)

    async def pause(self, seconds: float) -> bool:
        """Sleep up to `seconds`; return False (early) if the client left or the server is stopping."""
        if seconds > 0 and not self.stopped:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            timer = loop.call_later(seconds, _resolve, waiter)
            self._waiter = waiter
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return not self.stopped

    def close(self) -> None:
        """Stop watching; call before completing the response, whose end uvicorn reports as a disconnect."""
        self._on_gone = None
        self._task.cancel()


async def serve_lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge lifespan events, for hosts that run the simulator with lifespan on."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
