"""`python -m bench.passthrough`: the floor — a bare raw-ASGI proxy in front of the fake upstream.

What any Python proxy on this stack pays for one extra HTTP hop, with none of the
gateway's work (no validation, routing, SSE decoding or re-encoding, accounting):
read the request body, POST it to the upstream with one pooled client (aiohttp or
httpx, like the gateway's `GATEWAY_HTTP_CLIENT`), and copy status, content type and
body back chunk by chunk as they arrive. Served by uvicorn on uvloop with httptools,
the same server stack as `gateway serve`. Measured next to the gateway, it splits
the gateway's added latency into "one proxy hop" and "the gateway's own code".

Requests to the upstream carry `PASSTHROUGH_USER_AGENT` so the fake upstream can
count them apart from the gateway's. `GET /health` answers 200.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import uvicorn

from bench.upstream import PASSTHROUGH_USER_AGENT
from gateway.simulator.asgi import Message, Receive, Scope, Send, read_body, send_whole

_FORWARDED = ("content-type", "accept")
_COPIED_BACK = ("content-type", "content-length")


class _AiohttpUpstream:
    def __init__(self) -> None:
        connector = aiohttp.TCPConnector(limit=1000, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))

    async def post(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, list[tuple[bytes, bytes]], AsyncIterator[bytes]]:
        response = await self._session.post(url, data=body, headers=headers)
        copied = [(k.encode(), response.headers[k].encode()) for k in _COPIED_BACK if k in response.headers]

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for data in response.content.iter_any():
                    yield data
            finally:
                response.release()

        return response.status, copied, chunks()

    async def aclose(self) -> None:
        await self._session.close()


class _HttpxUpstream:
    def __init__(self) -> None:
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
            timeout=httpx.Timeout(None),
        )

    async def post(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, list[tuple[bytes, bytes]], AsyncIterator[bytes]]:
        request = self._client.build_request("POST", url, content=body, headers=headers)
        response = await self._client.send(request, stream=True)
        copied = [(k.encode(), response.headers[k].encode()) for k in _COPIED_BACK if k in response.headers]

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for data in response.aiter_raw():
                    yield data
            finally:
                await response.aclose()

        return response.status_code, copied, chunks()

    async def aclose(self) -> None:
        await self._client.aclose()


class Passthrough:
    """The raw-ASGI proxy; its upstream client is opened in the lifespan."""

    def __init__(self, upstream_root: str, client: str) -> None:
        self.upstream_root = upstream_root.rstrip("/")
        self.client = client
        self._upstream: _AiohttpUpstream | _HttpxUpstream | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._proxy(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message: Message = await receive()
            if message["type"] == "lifespan.startup":
                self._upstream = _AiohttpUpstream() if self.client == "aiohttp" else _HttpxUpstream()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._upstream is not None:
                    await self._upstream.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        if scope["path"] == "/health":
            await send_whole(send, 200, b'{"status":"ok"}')
            return
        assert self._upstream is not None
        headers: dict[str, Any] = {"user-agent": PASSTHROUGH_USER_AGENT}
        for name, value in scope["headers"]:
            key = name.decode("latin-1")
            if key in _FORWARDED:
                headers[key] = value.decode("latin-1")
        status, copied, chunks = await self._upstream.post(self.upstream_root + scope["path"], body, headers)
        await send({"type": "http.response.start", "status": status, "headers": copied})
        async for data in chunks:
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.passthrough", description=__doc__)
    parser.add_argument("--upstream", required=True, help="the upstream's root URL (no /v1)")
    parser.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        Passthrough(args.upstream, args.client),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
