"""A chat completion stream as Anthropic's Messages stream events.

    message_start
    per text:      content_block_start (text), content_block_delta (text_delta) …, content_block_stop
    per tool call: content_block_start (tool_use), content_block_delta (input_json_delta) …,
                   content_block_stop
    message_delta (stop_reason, usage), message_stop

A chunk carrying the gateway's mid-stream `error` becomes Anthropic's in-stream
`error` event (`{"type": "error", "error": {"type": "api_error", …}}`), which the
Anthropic SDK raises; the stream then ends. Pure: fed chunk dicts, returns events.
"""

from __future__ import annotations

from typing import Any

from gateway.translate.anthropic import STOP_REASONS, usage

JSON = dict[str, Any]
Event = tuple[str, JSON]


def _dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


class AnthropicStream:
    """State of one translated stream; see the module docstring."""

    def __init__(self, message_id: str, model: str) -> None:
        self.message_id = message_id
        self.model = model
        self._blocks = 0  # content blocks started so far
        self._open: str | None = None  # "text" or "tool:<chat index>"
        self._finish_reason: str | None = None
        self._usage: JSON = {"input_tokens": 0, "output_tokens": 0}
        self.failed = False

    def start(self) -> list[Event]:
        message: JSON = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def chunk(self, chunk: JSON) -> list[Event]:
        if isinstance(chunk.get("error"), dict):
            self.failed = True
            message = str(chunk["error"].get("message") or "the upstream stream broke")
            return [("error", {"type": "error", "error": {"type": "api_error", "message": message}})]
        if isinstance(chunk.get("usage"), dict):
            self._usage = usage(chunk["usage"])
        choices = chunk.get("choices") or []
        first = _dict(choices[0]) if choices else {}
        delta = _dict(first.get("delta"))
        out: list[Event] = []
        if isinstance(delta.get("content"), str) and delta["content"]:
            if self._open != "text":
                out += self._close()
                out.append(self._start_block({"type": "text", "text": ""}, "text"))
            out.append(self._delta({"type": "text_delta", "text": delta["content"]}))
        for call in delta.get("tool_calls") or []:
            out += self._tool_delta(_dict(call))
        if first.get("finish_reason") is not None:
            self._finish_reason = first["finish_reason"]
        return out

    def _tool_delta(self, call: JSON) -> list[Event]:
        out: list[Event] = []
        key = f"tool:{call.get('index', 0)}"
        function = _dict(call.get("function"))
        if self._open != key:
            out += self._close()
            block = {
                "type": "tool_use",
                "id": str(call.get("id") or ""),
                "name": str(function.get("name") or ""),
                "input": {},
            }
            out.append(self._start_block(block, key))
        fragment = function.get("arguments")
        if isinstance(fragment, str) and fragment:
            out.append(self._delta({"type": "input_json_delta", "partial_json": fragment}))
        return out

    def _start_block(self, block: JSON, key: str) -> Event:
        self._open = key
        self._blocks += 1
        return "content_block_start", {
            "type": "content_block_start",
            "index": self._blocks - 1,
            "content_block": block,
        }

    def _delta(self, delta: JSON) -> Event:
        return "content_block_delta", {
            "type": "content_block_delta",
            "index": self._blocks - 1,
            "delta": delta,
        }

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        self._open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self._blocks - 1})]

    def end(self) -> list[Event]:
        stop_reason = STOP_REASONS.get(self._finish_reason or "stop", "end_turn")
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": self._usage,
        }
        return [*self._close(), ("message_delta", delta), ("message_stop", {"type": "message_stop"})]
