"""Relaying a chat stream in another API's event shape (Responses, Anthropic Messages).

The relay (`gateway.streaming.events`) does the routing, failover, keep-alives,
mid-stream error chunk and booking; a `Translator` turns its chat chunks into the
other API's named events, and this module writes them as SSE (`event:` + `data:`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, Protocol

import orjson

from gateway.streaming import KEEP_ALIVE, StreamContext, events
from router_policies.executor import StartedStream

Event = tuple[str, dict[str, Any]]


class Translator(Protocol):
    @property
    def failed(self) -> bool: ...

    def start(self) -> list[Event]: ...

    def chunk(self, chunk: dict[str, Any]) -> list[Event]: ...

    def end(self) -> list[Event]: ...


def encode_event(event: Event) -> bytes:
    kind, payload = event
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


async def translated(
    ctx: StreamContext,
    opening: asyncio.Future[StartedStream],
    translator: Translator,
    on_end: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[bytes]:
    """The SSE body: the translator's events for every relayed chunk.

    After a clean end `on_end` runs before the closing events are sent, so whatever
    it keeps (a stored response) exists by the time the client sees completion.
    """
    for event in translator.start():
        yield encode_event(event)
    async with aclosing(events(ctx, opening)) as chunks:
        async for chunk in chunks:
            if chunk is None:
                yield KEEP_ALIVE
                continue
            for event in translator.chunk(chunk):
                yield encode_event(event)
    if translator.failed:
        return
    closing = translator.end()
    if on_end is not None:
        await on_end()
    for event in closing:
        yield encode_event(event)
