"""`POST /v1/completions`: legacy text completions, for the tools that still send them.

Translated to a one-message chat (`gateway.translate.completions`) and run through
the same pipeline as chat (booked with `kind: completions`); streams keep OpenAI's
`data:` chunks, the mid-stream error chunk and `[DONE]`, with `text` in place of
`delta`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.pipeline import admit_translated, complete_chat, open_stream
from gateway.request_body import CompletionsRequest
from gateway.routes.chat import event_stream
from gateway.streaming import DONE, KEEP_ALIVE, StreamContext, encode, events
from gateway.translate.completions import from_chat, from_chunk, to_chat
from router_policies.executor import StartedStream


async def completions(request: Request) -> Response:
    body, chat, adm = await admit_translated(request, CompletionsRequest, to_chat, "completions")
    if body.get("stream"):
        ctx, opening, headers = await open_stream(adm, chat)
        return event_stream(_relay(ctx, opening), headers, ctx.on_client_close)
    answer, headers = await complete_chat(adm, chat)
    return Response(orjson.dumps(from_chat(answer)), media_type="application/json", headers=headers)


async def _relay(ctx: StreamContext, opening: asyncio.Future[StartedStream]) -> AsyncIterator[bytes]:
    async with aclosing(events(ctx, opening)) as chunks:
        async for chunk in chunks:
            yield KEEP_ALIVE if chunk is None else encode(from_chunk(chunk))
    yield DONE
