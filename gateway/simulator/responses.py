"""The simulated provider's Responses API: `POST /v1/responses`, as OpenAI serves it.

Providers that have the Responses API (OpenAI, recent vLLM) are reached through it
natively by the gateway, so the simulator speaks it too: the same `Reply` a chat
completion would carry (text, tool calls, usage), shaped as a `response` object, or
streamed as typed events (`response.created` … `response.output_text.delta` …
`response.completed`), with the same faults as a chat stream (`streaming.py`): die,
hang and garbage after N content events, and an error event, which here is
`response.failed`. Item ids start `msg_sim`/`fc_sim` and usage carries OpenAI's
`input_tokens_details`/`output_tokens_details`, so a test can tell a native answer
from a translated one.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from gateway.simulator import wire
from gateway.simulator.asgi import ClientWatch, Send
from gateway.simulator.behaviour import Behaviour
from gateway.simulator.flavours import Flavour
from gateway.simulator.records import StreamRecord
from gateway.simulator.streaming import DEFAULT_ERROR_EVENT, SSE_HEADERS, SimulatedStream, fault_due
from gateway.simulator.wire import JSON, Reply


def input_messages(body: JSON) -> list[JSON] | None:
    """`instructions` and `input` as role/content messages (for the prompt and token count), or None if malformed."""
    raw = body.get("input")
    messages: list[JSON] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    if isinstance(raw, str):
        return [*messages, {"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        return None
    for item in raw:
        if not isinstance(item, dict):
            return None
        content = item.get("content", item.get("output", item.get("arguments", "")))
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        messages.append({"role": str(item.get("role", "tool")), "content": str(content)})
    return messages


def chat_format(body: JSON) -> JSON | None:
    """`text.format` as the chat `response_format` the simulated answer is shaped by."""
    fmt = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return fmt if isinstance(fmt, dict) else None
    return {"type": "json_schema", "json_schema": {k: v for k, v in fmt.items() if k != "type"}}


def _usage(reply: Reply) -> JSON | None:
    if reply.usage is None:
        return None
    prompt, completion = int(reply.usage["prompt_tokens"]), int(reply.usage["completion_tokens"])
    cached = int((reply.usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def _message(item_id: str, text: str, status: str = "completed") -> JSON:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": [part]}


def _call(item_id: str, call: JSON, arguments: str, status: str = "completed") -> JSON:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call["id"],
        "name": call["function"]["name"],
        "arguments": arguments,
        "status": status,
    }


class ResponseShape:
    """The `response` object of one reply, and its item ids, fixed before the first byte."""

    def __init__(self, reply: Reply, body: JSON) -> None:
        self.reply = reply
        self.id = "resp_sim" + secrets.token_hex(8)
        self.message_id = "msg_sim" + secrets.token_hex(8)
        self.call_ids = ["fc_sim" + secrets.token_hex(8) for _ in reply.tool_calls or []]
        self.body = body

    def response(self, status: str, output: list[JSON]) -> JSON:
        payload: JSON = {
            "id": self.id,
            "object": "response",
            "created_at": self.reply.created,
            "status": status,
            "error": None,
            "incomplete_details": None,
            "instructions": self.body.get("instructions"),
            "max_output_tokens": self.body.get("max_output_tokens"),
            "model": self.reply.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": self.body.get("reasoning"),
            "store": self.body.get("store", True) is not False,
            "temperature": self.body.get("temperature"),
            "text": self.body.get("text") or {"format": {"type": "text"}},
            "tool_choice": self.body.get("tool_choice", "auto"),
            "tools": self.body.get("tools") or [],
            "top_p": self.body.get("top_p"),
            "truncation": self.body.get("truncation", "disabled"),
            "metadata": self.body.get("metadata") or {},
        }
        if status == "completed" and (usage := _usage(self.reply)) is not None:
            payload["usage"] = usage
        return payload

    def output(self) -> list[JSON]:
        items = [_message(self.message_id, self.reply.text)] if self.reply.chunks else []
        for item_id, call in zip(self.call_ids, self.reply.tool_calls or [], strict=True):
            items.append(_call(item_id, call, call["function"]["arguments"]))
        return items


def response_body(reply: Reply, body: JSON) -> JSON:
    """A non-streamed answer."""
    shape = ResponseShape(reply, body)
    return shape.response("completed", shape.output())


class _ResponsesStream(SimulatedStream):
    """A streamed answer as typed events; faults as in `streaming.SimulatedStream`."""

    def __init__(self, shape: ResponseShape, *args: Any) -> None:
        super().__init__(*args)
        self.shape = shape
        self.seq = 0

    async def typed(self, kind: str, **fields: Any) -> None:
        payload = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        await self.event(b"event: " + kind.encode() + b"\n" + wire.sse(payload))

    def _events(self) -> list[tuple[str, JSON]]:
        """Every content event after the opening ones, in order: text deltas, then tool calls."""
        shape, reply = self.shape, self.reply
        events: list[tuple[str, JSON]] = []
        if reply.chunks:
            text = {"item_id": shape.message_id, "output_index": 0, "content_index": 0}
            opened = _message(shape.message_id, "", "in_progress")
            events.append(("response.output_item.added", {"output_index": 0, "item": opened}))
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append(("response.content_part.added", {**text, "part": part}))
            events += [
                ("response.output_text.delta", {**text, "delta": c, "logprobs": []}) for c in reply.chunks
            ]
            done = _message(shape.message_id, reply.text)
            events.append(("response.output_text.done", {**text, "text": reply.text, "logprobs": []}))
            events.append(("response.content_part.done", {**text, "part": done["content"][0]}))
            events.append(("response.output_item.done", {"output_index": 0, "item": done}))
        first = 1 if reply.chunks else 0
        for n, (item_id, call) in enumerate(zip(shape.call_ids, reply.tool_calls or [], strict=True)):
            index, arguments = first + n, call["function"]["arguments"]
            events.append(
                (
                    "response.output_item.added",
                    {"output_index": index, "item": _call(item_id, call, "", "in_progress")},
                )
            )
            where = {"item_id": item_id, "output_index": index}
            half = len(arguments) // 2
            for fragment in (arguments[:half], arguments[half:]):
                events.append(("response.function_call_arguments.delta", {**where, "delta": fragment}))
            events.append(
                (
                    "response.function_call_arguments.done",
                    {**where, "name": call["function"]["name"], "arguments": arguments},
                )
            )
            events.append(
                (
                    "response.output_item.done",
                    {"output_index": index, "item": _call(item_id, call, arguments)},
                )
            )
        return events  # fmt: skip

    async def run(self) -> None:
        b = self.behaviour
        if not await self.watch.pause(b.first_byte_ms / 1000):
            self.left()
            return
        self.record.started_at = time.monotonic()
        await self.send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + self.headers})
        await self.typed("response.created", response=self.shape.response("in_progress", []))
        await self.typed("response.in_progress", response=self.shape.response("in_progress", []))
        events = self._events()
        content = [kind for kind, _ in events if kind.endswith(".delta")]
        gap_s = b.chunk_gap_ms / 1000
        sent = 0
        for kind, fields in events:
            if kind.endswith(".delta"):
                if await self.fault(sent, len(content)):
                    return
                if sent > 0 and gap_s and not await self.watch.pause(gap_s):
                    self.left()
                    return
                sent += 1
                self.record.chunks_sent += 1
            await self.typed(kind, **fields)
        if await self.fault(sent, len(content)):
            return
        await self.typed("response.completed", response=self.shape.response("completed", self.shape.output()))
        await self.end(b"", "done")

    async def fault(self, sent: int, total: int) -> bool:
        """As a chat stream's, except that an error event is OpenAI's `response.failed`."""
        b = self.behaviour
        if not fault_due(b.error_event_after_chunks, sent, total):
            return await super().fault(sent, total)
        failed = self.shape.response("failed", [])
        failed["error"] = {"code": "server_error", "message": b.error_message or DEFAULT_ERROR_EVENT}
        await self.typed("response.failed", response=failed)
        await self.end(b"", "error_event")
        return True


async def stream_response(
    send: Send,
    watch: ClientWatch,
    reply: Reply,
    body: JSON,
    flavour: Flavour,
    behaviour: Behaviour,
    headers: list[tuple[bytes, bytes]],
    record: StreamRecord,
) -> None:
    """Run one Responses stream to its end (the caller registers `watch`, as for `stream_reply`)."""
    stream = _ResponsesStream(
        ResponseShape(reply, body), send, watch, reply, flavour, behaviour, headers, record
    )
    try:
        await stream.run()
    finally:
        watch.close()
