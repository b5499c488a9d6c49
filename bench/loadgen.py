"""The load generator: one pooled aiohttp client, direct and via-gateway requests interleaved.

Requests go out from `concurrency` workers that pull from one shared sequence of
targets. The sequence is made of rounds, one block of `block` requests per target
in each round, the order of the blocks within a round drawn from a seeded RNG. So
slow drift (CPU frequency, caches, other tenants) hits direct and proxied requests
alike, while within a block the target under test really has `concurrency`
requests in flight (with requests mixed at random, each target would see only a
share of them, and the other targets' processes would compete for the CPU).
Concurrency stays constant across block boundaries: a worker that finishes takes
the next request whatever its target.

What counts as success is strict, so a gateway that breaks under load shows up as
failures rather than as fast answers: HTTP 200, a JSON body with message content
(non-streaming); HTTP 200, content before the end, no error chunk, `data: [DONE]`,
and a cleanly ended body (streaming). Streams are always read to the end of the
body, so the client's connections are reused rather than closed after `[DONE]`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import orjson

from bench.stats import Samples
from bench.upstream import LOADGEN_USER_AGENT

Kind = Literal["nonstream", "stream"]
PROMPT = "Say something short about latency."

_JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}
_SSE_HEADERS = {"content-type": "application/json", "accept": "text/event-stream"}


@dataclass(frozen=True, slots=True)
class Target:
    """Where to send a chat completion, and the exact bodies to send."""

    name: str  # "direct" or "gateway"
    url: str
    body_nonstream: bytes
    body_stream: bytes
    json_headers: Mapping[str, str] = field(default_factory=lambda: _JSON_HEADERS)
    sse_headers: Mapping[str, str] = field(default_factory=lambda: _SSE_HEADERS)

    @classmethod
    def for_model(cls, name: str, url: str, model: str, api_key: str | None = None) -> Target:
        base: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
        stream = {**base, "stream": True, "stream_options": {"include_usage": True}}
        auth = {"authorization": f"Bearer {api_key}"} if api_key else {}
        return cls(
            name,
            url,
            orjson.dumps(base),
            orjson.dumps(stream),
            {**_JSON_HEADERS, **auth},
            {**_SSE_HEADERS, **auth},
        )


class RequestFailed(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def new_session() -> aiohttp.ClientSession:
    """The one pooled client for every request of a run (no connection limit: workers bound it)."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        headers={"user-agent": LOADGEN_USER_AGENT},
    )


def _text(data: bytes) -> str:
    return data[:300].decode("utf-8", errors="replace")


def _has_message_content(body: Any) -> bool:
    choices = body.get("choices") if isinstance(body, dict) else None
    if not choices or not isinstance(choices[0], dict):
        return False
    message = choices[0].get("message")
    return isinstance(message, dict) and isinstance(message.get("content"), str) and bool(message["content"])


def _has_delta_content(chunk: Any) -> bool:
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    if not choices or not isinstance(choices[0], dict):
        return False
    delta = choices[0].get("delta")
    return isinstance(delta, dict) and isinstance(delta.get("content"), str) and bool(delta["content"])


async def call_nonstream(session: aiohttp.ClientSession, target: Target) -> tuple[float, float | None]:
    """Total latency (ms) of one non-streaming completion, request sent to body read."""
    start = time.perf_counter()
    async with session.post(target.url, data=target.body_nonstream, headers=target.json_headers) as response:
        data = await response.read()
    total_ms = (time.perf_counter() - start) * 1000
    if response.status != 200:
        raise RequestFailed(f"http_{response.status}", _text(data))
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise RequestFailed("bad_json", _text(data)) from None
    if not _has_message_content(body):
        raise RequestFailed("no_content", _text(data))
    return total_ms, None


async def call_stream(
    session: aiohttp.ClientSession,
    target: Target,
    *,
    chunk_times: list[float] | None = None,
    disconnect_after: int | None = None,
) -> tuple[float, float | None]:
    """(total ms, ms to the first `data:` line carrying content) of one streamed completion.

    `chunk_times`, if given, receives the arrival time (`time.perf_counter()`) of
    every content chunk, so every chunk is parsed, not only up to the first one.
    `disconnect_after=n` plays a client that goes away mid-stream: once n content
    chunks have arrived the connection is closed and the call returns, total being
    the time to that point (the stream is then neither checked for [DONE] nor counted
    as failed).
    """
    start = time.perf_counter()
    ttft_ms: float | None = None
    done = False
    contents = 0
    parse_all = chunk_times is not None or disconnect_after is not None
    async with session.post(target.url, data=target.body_stream, headers=target.sse_headers) as response:
        if response.status != 200:
            raise RequestFailed(f"http_{response.status}", _text(await response.read()))
        async for line in response.content:  # read to the end of the body, even after [DONE]
            if not line.startswith(b"data:"):
                continue
            arrived = time.perf_counter()
            payload = line[5:].strip()
            if payload == b"[DONE]":
                done = True
                continue
            if done:
                raise RequestFailed("data_after_done", _text(payload))
            if ttft_ms is not None and not parse_all and b'"error"' not in payload:
                continue  # only the first content and possible error chunks need parsing
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise RequestFailed("bad_json_chunk", _text(payload)) from None
            if isinstance(chunk, dict) and "error" in chunk:
                raise RequestFailed("error_chunk", _text(payload))
            if not _has_delta_content(chunk):
                continue
            if ttft_ms is None:
                ttft_ms = (arrived - start) * 1000
            contents += 1
            if chunk_times is not None:
                chunk_times.append(arrived)
            if contents == disconnect_after:
                response.close()  # drop the connection, not return it to the pool
                return (arrived - start) * 1000, ttft_ms
    total_ms = (time.perf_counter() - start) * 1000
    if ttft_ms is None:
        raise RequestFailed("no_content", "the stream carried no content")
    if not done:
        raise RequestFailed("no_done", "the stream ended without data: [DONE]")
    return total_ms, ttft_ms


def _failure_kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "broken_body"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect_error"
    return type(exc).__name__


async def attempt(
    result: Samples, call: Awaitable[tuple[float, float | None]], request_timeout_s: float
) -> bool:
    """Await one request within the timeout and book it in `result`: latencies, or failure by kind.

    True on success. Every outcome is counted; nothing is dropped.
    """
    result.attempted += 1
    try:
        async with asyncio.timeout(request_timeout_s):
            total_ms, ttft_ms = await call
    except RequestFailed as failure:
        result.fail(failure.kind, failure.detail)
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        result.fail(_failure_kind(exc), f"{type(exc).__name__}: {exc}")
    else:
        result.add(total_ms, ttft_ms)
        return True
    return False


def interleaved(targets: Sequence[Target], per_target: int, block: int, rng: random.Random) -> list[Target]:
    """`per_target` requests for each target, in rounds of one block per target, order seeded."""
    remaining = dict.fromkeys((t.name for t in targets), per_target)
    sequence: list[Target] = []
    while any(remaining.values()):
        round_ = list(targets)
        rng.shuffle(round_)
        for target in round_:
            n = min(block, remaining[target.name])
            sequence.extend([target] * n)
            remaining[target.name] -= n
    return sequence


@dataclass(slots=True)
class PhaseResult:
    samples: dict[str, Samples]
    duration_s: float
    truncated: bool  # the time budget ran out before the sequence did


async def run_phase(
    session: aiohttp.ClientSession,
    targets: Sequence[Target],
    sequence: Sequence[Target],
    kind: Kind,
    concurrency: int,
    deadline: float,
    request_timeout_s: float,
) -> PhaseResult:
    """Send `sequence` with `concurrency` requests in flight; stop issuing at `deadline` (monotonic)."""
    call = call_stream if kind == "stream" else call_nonstream
    samples = {t.name: Samples() for t in targets}
    iterator = iter(sequence)
    truncated = False

    async def worker() -> None:
        nonlocal truncated
        for target in iterator:
            if time.monotonic() >= deadline:
                truncated = True
                return
            await attempt(samples[target.name], call(session, target), request_timeout_s)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return PhaseResult(samples, time.perf_counter() - started, truncated)
