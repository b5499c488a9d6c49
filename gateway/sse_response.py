"""`SSEResponse`: a Server-Sent Events response that sends from the request's own task.

It replaces sse-starlette's `EventSourceResponse` on the streaming path. That one
spawns an anyio task group per stream (sender, disconnect listener, shutdown
watcher) and wraps every send in a cancel scope for its send timeout: about a
third of the gateway's CPU per stream was spent there (py-spy, bench.added_latency).
What the gateway needs of it is small and is kept here:

- the body (already-encoded SSE bytes, `gateway.streaming.relay`) is sent chunk by
  chunk and each send is awaited, so a slow client slows our reads of the upstream;
- a client that disconnects is noticed at once, even while the relay is waiting on
  the upstream: one listener task waits for `http.disconnect`, calls `on_disconnect`
  (the relay's flag) and cancels the sending task, whose body generator then closes
  the upstream in its `finally`; a send to a client that is gone (ASGI 2.4 servers
  raise `OSError`) ends the stream the same way;
- the body generator is always closed, whatever ends the response.

Shutdown needs nothing here: `gateway.lifecycle` ends open streams itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

SSE_HEADERS = {"Cache-Control": "no-cache", "Connection": "keep-alive", "X-Accel-Buffering": "no"}
_END = {"type": "http.response.body", "body": b"", "more_body": False}


class SSEResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        body: AsyncIterator[bytes],
        headers: Mapping[str, str],
        on_disconnect: Callable[[Any], Awaitable[None]],
    ) -> None:
        self.status_code = 200
        self.background = None
        self.body_iterator = body
        self.init_headers({**SSE_HEADERS, **headers})
        self._on_disconnect = on_disconnect
        self._streaming = True
        self._disconnected = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        listener = asyncio.get_running_loop().create_task(self._listen(receive, task))
        try:
            try:
                await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                async for data in self.body_iterator:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                self._streaming = False
            finally:  # suspended at a yield when a send fails: its cleanup closes the upstream
                aclose = getattr(self.body_iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
            await send(_END)
        except OSError:  # the client is gone (ASGI 2.4 servers raise it from send)
            await self._gone({"type": "http.disconnect"})
        except asyncio.CancelledError:
            if not self._disconnected:
                raise
            task.uncancel()  # our own listener cancelled the stream: the response simply ends
        finally:
            self._streaming = False
            listener.cancel()

    async def _listen(self, receive: Receive, streaming: asyncio.Task[Any]) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if self._streaming:
                    await self._gone(message)
                    streaming.cancel()
                return

    async def _gone(self, message: Any) -> None:
        if not self._disconnected:
            self._disconnected = True
            await self._on_disconnect(message)
