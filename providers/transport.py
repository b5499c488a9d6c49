"""All upstream HTTP I/O, behind one small interface.

Everything the adapters send goes through a `Transport`: one pooled client per
upstream origin, opened once in the app's lifespan and never per request. Two
implementations exist so the client library can be chosen by measurement
(`bench/added_latency.py`): aiohttp (the default: about 1 ms less added latency per
call on this class of machine) and httpx. This module is also the one place where
those libraries' exceptions are translated into `providers.errors`.

Deadlines are enforced here with asyncio timeouts rather than each library's own
knobs, so both transports mean the same thing by connect, first-byte, idle and total.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx
from opentelemetry import propagate, trace

from providers.clock import upstream_wait
from providers.errors import (
    ProviderError,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from providers.types import Timeouts

# After a stream's logical end ([DONE]) the HTTP body may still hold its terminator;
# reading it (briefly, boundedly) lets the connection go back to the pool instead of
# being dropped and re-opened for the next request.
_DRAIN_S = 0.05
_DRAIN_BYTES = 64 * 1024


@dataclass(slots=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class RawStream(Protocol):
    """An upstream response whose body is still to be read, chunk by chunk."""

    status: int
    headers: dict[str, str]

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def read_all(self) -> bytes: ...

    async def finish(self) -> None:
        """The caller has all it wants: drain what is left (bounded) and release the connection."""

    async def aclose(self) -> None:
        """Release the connection if the body was read to the end, else drop it at once."""


class Transport(Protocol):
    async def post(
        self, url: str, body: bytes, headers: dict[str, str], timeouts: Timeouts, provider: str
    ) -> RawResponse: ...

    async def open_stream(
        self, url: str, body: bytes, headers: dict[str, str], timeouts: Timeouts, provider: str
    ) -> RawStream: ...

    async def get(
        self, url: str, headers: dict[str, str], timeouts: Timeouts, provider: str
    ) -> RawResponse: ...

    async def aclose(self) -> None: ...


class _Deadline:
    """Tracks the total deadline of one call and hands out per-read timeouts."""

    __slots__ = ("_end", "idle_s", "provider")

    def __init__(self, timeouts: Timeouts, provider: str) -> None:
        self._end = time.monotonic() + timeouts.total_timeout_ms / 1000
        self.idle_s = timeouts.idle_timeout_ms / 1000
        self.provider = provider

    def next_read(self) -> tuple[float, str]:
        remaining = self._end - time.monotonic()
        if remaining <= 0:
            raise UpstreamTimeout("total timeout exceeded", provider=self.provider, phase="total")
        return (remaining, "total") if remaining < self.idle_s else (self.idle_s, "idle")

    def first_byte(self, first_byte_s: float) -> tuple[float, str]:
        remaining = self._end - time.monotonic()
        return (remaining, "total") if remaining < first_byte_s else (first_byte_s, "first_byte")


def _timeout_error(phase: str, provider: str) -> UpstreamTimeout:
    return UpstreamTimeout(f"no answer within the {phase} timeout", provider=provider, phase=phase)


# --------------------------------------------------------------------------- shared


class _Stream:
    """Reading one response body under its deadlines; a subclass supplies one library's calls.

    `_next_bytes` returns the next piece of the body, b"" at its end; `_library_errors`
    are the exceptions that library raises while reading; `_translate` maps them.
    """

    __slots__ = ("_closed", "_deadline", "headers", "status")
    _library_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, status: int, headers: dict[str, str], deadline: _Deadline) -> None:
        self._deadline = deadline
        self._closed = False
        self.status = status
        self.headers = headers

    async def _next_bytes(self) -> bytes:
        raise NotImplementedError

    def _translate(self, exc: BaseException) -> ProviderError:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def chunks(self) -> AsyncIterator[bytes]:
        provider = self._deadline.provider
        while True:
            wait_s, phase = self._deadline.next_read()
            try:
                with upstream_wait():
                    async with asyncio.timeout(wait_s):
                        data = await self._next_bytes()
            except TimeoutError:
                raise _timeout_error(phase, provider) from None
            except self._library_errors as exc:
                raise self._translate(exc) from None
            if not data:
                return
            yield data

    async def read_all(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def finish(self) -> None:
        drained = 0
        ignored: tuple[type[BaseException], ...] = (TimeoutError, *self._library_errors)
        try:
            with upstream_wait():
                async with asyncio.timeout(_DRAIN_S):
                    while not self._closed and drained <= _DRAIN_BYTES:
                        data = await self._next_bytes()
                        if not data:
                            break
                        drained += len(data)
        except ignored:
            pass  # draining is best effort: an unfinished body means the connection is dropped
        await self.aclose()


class _PooledTransport:
    """post/get/open_stream in terms of one library-specific `_send`."""

    async def _send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        deadline: _Deadline,
        connect_s: float,
    ) -> _Stream:
        raise NotImplementedError

    async def _open(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        timeouts: Timeouts,
        provider: str,
    ) -> _Stream:
        if trace.get_current_span().is_recording():
            headers = {**headers}
            propagate.inject(headers)  # the attempt's `traceparent`: the upstream joins our trace
        deadline = _Deadline(timeouts, provider)
        wait_s, phase = deadline.first_byte(timeouts.first_byte_timeout_ms / 1000)
        try:
            with upstream_wait():
                async with asyncio.timeout(wait_s):
                    return await self._send(
                        method, url, body, headers, deadline, timeouts.connect_timeout_ms / 1000
                    )
        except TimeoutError:
            raise _timeout_error(phase, provider) from None

    async def open_stream(
        self, url: str, body: bytes, headers: dict[str, str], timeouts: Timeouts, provider: str
    ) -> RawStream:
        return await self._open("POST", url, body, headers, timeouts, provider)

    async def _whole(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        timeouts: Timeouts,
        provider: str,
    ) -> RawResponse:
        stream = await self._open(method, url, body, headers, timeouts, provider)
        try:
            data = await stream.read_all()
        finally:
            await stream.aclose()
        return RawResponse(stream.status, stream.headers, data)

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], timeouts: Timeouts, provider: str
    ) -> RawResponse:
        return await self._whole("POST", url, body, headers, timeouts, provider)

    async def get(self, url: str, headers: dict[str, str], timeouts: Timeouts, provider: str) -> RawResponse:
        return await self._whole("GET", url, None, headers, timeouts, provider)


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


# --------------------------------------------------------------------------- aiohttp


def _translate_aiohttp(exc: BaseException, provider: str) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, aiohttp.ServerTimeoutError | aiohttp.ConnectionTimeoutError):
        return UpstreamTimeout("connect timeout", provider=provider, phase="connect")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamConnectError("could not connect to the upstream", provider=provider)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return UpstreamProtocolError("the upstream closed the connection mid-response", provider=provider)
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamProtocolError("the upstream sent an invalid HTTP response", provider=provider)
    if isinstance(exc, aiohttp.ClientOSError | ConnectionError):
        return UpstreamConnectError("the connection to the upstream failed", provider=provider)
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamProtocolError("upstream HTTP error", provider=provider)
    return UpstreamProtocolError(f"upstream transport failure ({type(exc).__name__})", provider=provider)


class _AiohttpStream(_Stream):
    __slots__ = ("_response",)
    # aiohttp's reader raises a bare RuntimeError("Connection closed.") when its session
    # is closed under a read (gateway shutdown with streams in flight).
    _library_errors = (aiohttp.ClientError, OSError, RuntimeError)

    def __init__(self, response: aiohttp.ClientResponse, deadline: _Deadline) -> None:
        super().__init__(response.status, _lower(response.headers), deadline)
        self._response = response

    async def _next_bytes(self) -> bytes:
        return await self._response.content.readany()

    def _translate(self, exc: BaseException) -> ProviderError:
        return _translate_aiohttp(exc, self._deadline.provider)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._response.content.at_eof():
            self._response.release()
        else:
            # Unread body: drop the connection so the upstream sees the close at once.
            self._response.close()


class AiohttpTransport(_PooledTransport):
    """One `aiohttp.ClientSession` (and its connection pool) for one upstream origin."""

    def __init__(self, max_connections: int = 1000) -> None:
        self._connector_limit = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._connector_limit, ttl_dns_cache=300, keepalive_timeout=30
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None), auto_decompress=True
            )
        return self._session

    async def _send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        deadline: _Deadline,
        connect_s: float,
    ) -> _Stream:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_s)
        try:
            response = await self._client().request(method, url, data=body, headers=headers, timeout=timeout)
        except (aiohttp.ClientError, OSError) as exc:
            raise _translate_aiohttp(exc, deadline.provider) from None
        return _AiohttpStream(response, deadline)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# --------------------------------------------------------------------------- httpx


def _translate_httpx(exc: BaseException, provider: str) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, httpx.ConnectTimeout):
        return UpstreamTimeout("connect timeout", provider=provider, phase="connect")
    if isinstance(exc, httpx.ConnectError):
        return UpstreamConnectError("could not connect to the upstream", provider=provider)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return UpstreamProtocolError("the upstream closed the connection mid-response", provider=provider)
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout("upstream timeout", provider=provider, phase="total")
    if isinstance(exc, httpx.HTTPError):
        return UpstreamProtocolError("upstream HTTP error", provider=provider)
    return UpstreamProtocolError(f"upstream transport failure ({type(exc).__name__})", provider=provider)


class _HttpxStream(_Stream):
    __slots__ = ("_iterator", "_response")
    _library_errors = (httpx.HTTPError, OSError)

    def __init__(self, response: httpx.Response, deadline: _Deadline) -> None:
        super().__init__(response.status_code, _lower(response.headers), deadline)
        self._response = response
        # One iterator for the response's life, so `finish` can carry on where reading stopped.
        self._iterator = response.aiter_bytes().__aiter__()

    async def _next_bytes(self) -> bytes:
        try:
            return await self._iterator.__anext__()
        except StopAsyncIteration:
            return b""

    def _translate(self, exc: BaseException) -> ProviderError:
        return _translate_httpx(exc, self._deadline.provider)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._response.aclose()


class HttpxTransport(_PooledTransport):
    """One `httpx.AsyncClient` (and its connection pool) for one upstream origin."""

    def __init__(self, max_connections: int = 1000) -> None:
        self._client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=100),
            timeout=httpx.Timeout(None),
        )

    async def _send(
        self,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        deadline: _Deadline,
        connect_s: float,
    ) -> _Stream:
        request = self._client.build_request(
            method, url, content=body, headers=headers, timeout=httpx.Timeout(None, connect=connect_s)
        )
        try:
            response = await self._client.send(request, stream=True)
        except (httpx.HTTPError, OSError) as exc:
            raise _translate_httpx(exc, deadline.provider) from None
        return _HttpxStream(response, deadline)

    async def aclose(self) -> None:
        await self._client.aclose()


TRANSPORTS: dict[str, Callable[[int], Transport]] = {"aiohttp": AiohttpTransport, "httpx": HttpxTransport}


class TransportPool:
    """Hands out one transport per upstream origin, created on first use, closed together.

    Creation happens while the app starts (adapters ask for theirs in the lifespan), so
    no client is ever built on a request's path.
    """

    def __init__(self, kind: str = "aiohttp", max_connections: int = 1000) -> None:
        if kind not in TRANSPORTS:
            raise ValueError(f"unknown HTTP client {kind!r}; choose one of {sorted(TRANSPORTS)}")
        self.kind = kind
        self._max_connections = max_connections
        self._by_origin: dict[str, Transport] = {}

    def for_url(self, url: str) -> Transport:
        origin = str(httpx.URL(url).copy_with(path="/", query=None, fragment=None))
        transport = self._by_origin.get(origin)
        if transport is None:
            transport = TRANSPORTS[self.kind](self._max_connections)
            self._by_origin[origin] = transport
        return transport

    async def aclose(self) -> None:
        transports, self._by_origin = list(self._by_origin.values()), {}
        await asyncio.gather(*(t.aclose() for t in transports), return_exceptions=True)
