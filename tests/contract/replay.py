"""A tiny replay server: real HTTP on 127.0.0.1, serving recorded provider answers byte for byte.

Each registered `Reply` gets its own URL prefix (`/<token>`), so a test's base URL
is `server.url_for(reply) + "/openai/v1"` and leftovers from other tests can never
answer it. The body can go out in one write or cut into small pieces, one write
each with a short pause between, so the client's incremental decoder sees splits in
odd places: inside a JSON string, inside every multi-byte UTF-8 character,
between CR and LF. Every request is recorded (method, path below the token, headers, body),
and so is whether the client hung up before the body was fully sent.

The server is uvicorn with a raw ASGI app in a daemon thread with its own event
loop; `server` and `date` headers are off, so only the recorded headers are sent.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn

STARTUP_TIMEOUT_S = 10.0
ODD_PIECES = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89)


def crlf(body: bytes) -> bytes:
    """The same event stream with CRLF line endings (sse-starlette's default separator)."""
    return body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def cut(body: bytes, sizes: Sequence[int], *, after_cr: bool = False) -> list[bytes]:
    """`body` in pieces of the given sizes, cycled.

    A piece also ends after the first byte of every multi-byte UTF-8 character, and
    with `after_cr` after every CR, so those splits happen for certain.
    """
    pieces: list[bytes] = []
    start = 0
    for size in itertools.cycle(sizes):
        if start >= len(body):
            break
        end = min(start + size, len(body))
        for i in range(start, end):
            if body[i] >= 0xC0 or (after_cr and body[i] == 0x0D):  # a UTF-8 lead byte, or CR
                end = i + 1
                break
        pieces.append(body[start:end])
        start = end
    return pieces


@dataclass(frozen=True)
class Reply:
    """One recorded answer: status, headers in order, body bytes, and how to write them."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    pieces: tuple[int, ...] = ()
    piece_delay_s: float = 0.0
    after_cr: bool = False
    # Builds the body from the request's headers instead (for echo tests).
    body_from_request: Callable[[dict[str, str]], bytes] | None = None

    def with_writes(
        self, pieces: Sequence[int] = ODD_PIECES, delay_s: float = 0.0005, *, after_cr: bool = False
    ) -> Reply:
        return Reply(
            self.status,
            self.headers,
            self.body,
            tuple(pieces),
            delay_s,
            after_cr,
            self.body_from_request,
        )

    def first_event_then_slowly(self, size: int = 48, delay_s: float = 0.1) -> Reply:
        """The first SSE event in one write, then `size` bytes every `delay_s`: an upstream still
        sending for seconds after the client has its first chunk, without making it wait for one."""
        first = self.body.index(b"\n\n") + 2
        rest = -(-(len(self.body) - first) // size)
        return self.with_writes(pieces=(first, *([size] * rest)), delay_s=delay_s)

    def with_body(self, body: bytes) -> Reply:
        return Reply(
            self.status,
            self.headers,
            body,
            self.pieces,
            self.piece_delay_s,
            self.after_cr,
            self.body_from_request,
        )


@dataclass
class Served:
    """What the replay server saw of one request."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    writes: int = 0
    completed: bool = False  # every piece of the body was written
    disconnected: threading.Event = field(default_factory=threading.Event)


class ReplayServer:
    def __init__(self) -> None:
        self._replies: dict[str, Reply] = {}
        self._served: dict[str, list[Served]] = {}
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(
            self._app,
            interface="asgi3",
            lifespan="off",
            proxy_headers=False,
            log_level="warning",
            access_log=False,
            loop="asyncio",
            http="httptools",
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True, name="contract-replay")

    # ------------------------------------------------------------------ control

    def url_for(self, reply: Reply) -> str:
        token = secrets.token_hex(6)
        self._replies[token] = reply
        self._served[token] = []
        return f"{self.url}/{token}"

    def served(self, url: str) -> list[Served]:
        return self._served[url.rsplit("/", 1)[-1] if url.startswith(self.url) else url]

    def start(self) -> ReplayServer:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the replay server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._sock.close()

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    # ------------------------------------------------------------------ ASGI

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        _, token, rest = (scope["path"] + "/").split("/", 2)
        reply = self._replies.get(token)
        body = await _read_body(receive)
        if reply is None:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"no such replay"})
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        served = Served(scope["method"], "/" + rest.rstrip("/"), headers, body)
        self._served[token].append(served)
        payload = reply.body_from_request(headers) if reply.body_from_request else reply.body
        await self._respond(reply, payload, served, receive, send)

    async def _respond(self, reply: Reply, payload: bytes, served: Served, receive: Any, send: Any) -> None:
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
        is_sse = any(k == b"content-type" and v.startswith(b"text/event-stream") for k, v in headers)
        if not is_sse and not any(k == b"content-length" for k, _ in headers):
            headers.append((b"content-length", str(len(payload)).encode()))
        watcher = asyncio.ensure_future(_watch_disconnect(receive, served))
        try:
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            pieces = cut(payload, reply.pieces, after_cr=reply.after_cr) if reply.pieces else [payload]
            for piece in pieces:
                if served.disconnected.is_set():
                    return
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                served.writes += 1
                if reply.piece_delay_s:
                    await asyncio.sleep(reply.piece_delay_s)
            served.completed = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()


async def _read_body(receive: Any) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(parts)


async def _watch_disconnect(receive: Any, served: Served) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not served.completed:  # after the last write uvicorn reports the cycle as over
                served.disconnected.set()
            return


async def assert_aclose_hangs_up(adapter: Any, call: Any, url: str, replay: ReplayServer) -> None:
    """Part of every adapter's contract: `aclose()` on a stream really hangs up on the upstream."""
    stream = await adapter.chat_stream(call)
    iterator = aiter(stream)
    async with asyncio.timeout(5):
        first = await anext(iterator)
    assert first["object"] == "chat.completion.chunk"

    await stream.aclose()
    [served] = replay.served(url)
    hung_up = await asyncio.to_thread(served.disconnected.wait, 3.0)

    assert hung_up, "the upstream connection is still open after aclose()"
    assert not served.completed
    await iterator.aclose()  # type: ignore[attr-defined]
