"""One streamed chat completion, including every way a real stream goes wrong.

Order on the wire: (first_byte_ms) → headers + role chunk + first word → one word
per `chunk_gap_ms` → final chunk with `finish_reason` → usage chunk if
`stream_options.include_usage` → `data: [DONE]`. Each event is its own ASGI body
message, so uvicorn writes it to the socket at once (no buffering to defeat).

An answer with tool calls sends them after its text: per call, a delta naming it,
then its arguments in fragments; these count as content chunks for the faults
below, so a test can break a stream inside a tool call. Its finish reason is
`tool_calls`.

Faults fire "after N content chunks" (N larger than the answer means just before
the final chunk):
- die: leave the chunked body unfinished and let uvicorn close the socket — the
  client sees an incomplete chunked read, not a clean end;
- hang: send nothing more but keep the connection until the client leaves (or 10 minutes);
- garbage / error_event: send a bad event, then end the body cleanly without [DONE].

The `StreamRecord` is updated as it happens; a client disconnect is stamped by the
`ClientWatch` the moment uvicorn reports it.
"""

from __future__ import annotations

import asyncio
import time

from gateway.simulator import wire
from gateway.simulator.asgi import ClientWatch, Send
from gateway.simulator.behaviour import Behaviour
from gateway.simulator.flavours import Flavour
from gateway.simulator.logs import mark_deliberate_abort
from gateway.simulator.records import StreamOutcome, StreamRecord
from gateway.simulator.structured import tool_call_deltas
from gateway.simulator.wire import Reply

HANG_LIMIT_S = 600.0
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_YIELD_EVERY = 32
DEFAULT_ERROR_EVENT = "The engine encountered an internal error while generating the response."


def fault_due(after: int | None, sent: int, total: int) -> bool:
    return after is not None and (after == sent or (sent == total and after > total))


class SimulatedStream:
    """State for one stream; `run()` is the whole lifecycle."""

    def __init__(
        self,
        send: Send,
        watch: ClientWatch,
        reply: Reply,
        flavour: Flavour,
        behaviour: Behaviour,
        headers: list[tuple[bytes, bytes]],
        record: StreamRecord,
    ) -> None:
        self.send = send
        self.watch = watch
        self.reply = reply
        self.flavour = flavour
        self.behaviour = behaviour
        self.headers = headers
        self.record = record

    async def event(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self, data: bytes, outcome: StreamOutcome) -> None:
        """Finish the body cleanly (terminating chunk sent)."""
        self.watch.close()
        self.record.finished_at = time.monotonic()
        self.record.outcome = outcome
        await self.send({"type": "http.response.body", "body": data, "more_body": False})

    def abort(self, outcome: StreamOutcome) -> None:
        """Leave the body unfinished; uvicorn then closes the connection mid-transfer."""
        mark_deliberate_abort()
        self.record.aborted_at = time.monotonic()
        self.record.outcome = outcome

    def left(self) -> None:
        """Stop because the client left or the server is shutting down."""
        if self.watch.gone:
            self.record.outcome = "client_closed"
        else:
            self.abort("released")

    async def run(self) -> None:
        b, reply, flavour = self.behaviour, self.reply, self.flavour
        if not await self.watch.pause(b.first_byte_ms / 1000):
            self.left()
            return
        self.record.started_at = time.monotonic()
        await self.send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + self.headers})
        await self.event(wire.sse(flavour.chunk(reply, {"role": "assistant", "content": ""}, None, "first")))
        deltas = [{"content": text} for text in reply.chunks] + tool_call_deltas(reply.tool_calls or [])
        total = len(deltas)
        gap_s = b.chunk_gap_ms / 1000
        for sent in range(total + 1):
            if await self.fault(sent, total):
                return
            if sent == total:
                break
            if (sent > 0 and not await self.watch.pause(gap_s)) or self.watch.stopped:
                self.left()
                return
            if not gap_s and sent % _YIELD_EVERY == 0:
                # With no gap and sends to a gone client returning at once, nothing here
                # would suspend, and the disconnect watcher would never get to run.
                await asyncio.sleep(0)
            await self.event(wire.sse(flavour.chunk(reply, deltas[sent], None, "content")))
            self.record.chunks_sent += 1
        await self.event(wire.sse(flavour.chunk(reply, {}, reply.finish_reason, "final")))
        if reply.include_usage and reply.usage is not None:
            await self.event(wire.sse(flavour.usage_chunk(reply)))
        await self.end(wire.DONE, "done")

    async def fault(self, sent: int, total: int) -> bool:
        """Inject the fault due after `sent` content chunks, if any; True means the stream is over."""
        b = self.behaviour
        if fault_due(b.die_after_chunks, sent, total):
            self.abort("died")
        elif fault_due(b.hang_after_chunks, sent, total):
            if await self.watch.pause(HANG_LIMIT_S):
                self.abort("hung")
            else:
                self.left()
        elif fault_due(b.garbage_after_chunks, sent, total):
            await self.event(wire.GARBAGE_EVENT)
            await self.end(b"", "garbage")
        elif fault_due(b.error_event_after_chunks, sent, total):
            await self.event(wire.vllm_error_event(b.error_message or DEFAULT_ERROR_EVENT))
            await self.end(b"", "error_event")
        else:
            return False
        return True


async def stream_reply(
    send: Send,
    watch: ClientWatch,
    reply: Reply,
    flavour: Flavour,
    behaviour: Behaviour,
    headers: list[tuple[bytes, bytes]],
    record: StreamRecord,
) -> None:
    """Run one stream to its end; the caller owns `watch` only for registration."""
    stream = SimulatedStream(send, watch, reply, flavour, behaviour, headers, record)
    try:
        await stream.run()
    except asyncio.CancelledError:
        if record.closed_by_client_at is None and not record.ended:
            record.closed_by_client_at = time.monotonic()
            record.outcome = "client_closed"
        raise
    finally:
        watch.close()
