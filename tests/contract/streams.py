"""Reading adapter streams in the contract tests: write-splitting modes, the decoder's feed log, and
accumulation of chunks into a completion the way the openai SDK does it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from providers import openai_compat
from providers.sse import SSEDecoder, SSEEvent
from providers.types import JSON, ChunkStream, Usage
from tests.contract.replay import Reply, crlf

SPLIT_TRIES = 5
WRITES: dict[str, Callable[[Reply], Reply]] = {
    "one write": lambda reply: reply,
    "odd pieces": lambda reply: reply.with_writes(),
    "CRLF, split between CR and LF": lambda reply: reply.with_body(crlf(reply.body)).with_writes(
        after_cr=True
    ),
}


async def collect(stream: ChunkStream) -> list[JSON]:
    async with asyncio.timeout(10):
        return [chunk async for chunk in stream]


class FeedLog(SSEDecoder):
    """The real decoder, keeping what it was fed: proof the splits reached it."""

    feeds: ClassVar[list[bytes]] = []

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        FeedLog.feeds.append(chunk)
        return super().feed(chunk)


async def read_split(
    open_stream: Callable[[], Awaitable[ChunkStream]], writes: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[JSON], list[bytes]]:
    """Every chunk of a stream opened by `open_stream`, and the reads the decoder was fed.

    How reads split the body depends on scheduling (a loaded machine coalesces writes);
    the splits a test is about must happen at least once, so it tries a few times (bounded).
    """
    monkeypatch.setattr(FeedLog, "feeds", [])
    monkeypatch.setattr(openai_compat, "SSEDecoder", FeedLog)
    for _ in range(SPLIT_TRIES if writes != "one write" else 1):
        FeedLog.feeds.clear()
        chunks = await collect(await open_stream())
        if any(f[-1] >= 0xC0 for f in FeedLog.feeds):
            break
    return chunks, list(FeedLog.feeds)


def assert_split_as_asked(writes: str, feeds: list[bytes], served_writes: int, events: int) -> None:
    if writes != "one write":
        assert served_writes > events, "the body should have gone out in many pieces"
        assert any(f[-1] >= 0xC0 for f in feeds), "no read ended inside a UTF-8 character"
    if writes.startswith("CRLF"):
        assert any(f.endswith(b"\r") for f in feeds), "no read ended between CR and LF"


def delta_text(chunks: list[JSON]) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for chunk in chunks
        for choice in chunk.get("choices") or []
        if isinstance(choice.get("delta"), dict)
    )


def without_annotations(choices: list[JSON]) -> list[JSON]:
    """Choices as the provider sent them: without the annotations the Perplexity quirk adds."""
    return [
        {**c, "delta": {k: v for k, v in c["delta"].items() if k != "annotations"}} if "delta" in c else c
        for c in choices
    ]


def last_usage(chunks: list[JSON]) -> Usage | None:
    usages = [Usage.from_openai(c["usage"]) for c in chunks if isinstance(c.get("usage"), dict)]
    return usages[-1] if usages else None


def accumulate(chunks: list[JSON]) -> tuple[ChatCompletion, list[Any]]:
    """The completion the openai SDK assembles from these chunks, and the events it emits on the way.

    Chunks are built as the SDK builds them from the wire (loosely, extra fields kept) and fed
    to its `ChatCompletionStreamState`, the accumulator behind `client.chat.completions.stream()`.
    """
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    events: list[Any] = []
    for chunk in chunks:
        events.extend(state.handle_chunk(ChatCompletionChunk.construct(**chunk)))
    return state.get_final_completion(), events


def calls_of(tool_calls: list[Any]) -> list[JSON]:
    """SDK tool calls as the manifests state them: id, function name, arguments string."""
    return [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments} for c in tool_calls]
