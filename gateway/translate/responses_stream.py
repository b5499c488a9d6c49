"""A chat completion stream as the Responses API's typed events.

`ResponsesStream` is fed the relay's chat chunks one at a time and returns the
events each one becomes, numbered by `sequence_number`:

    response.created, response.in_progress
    per text:      output_item.added (message), content_part.added,
                   output_text.delta …, output_text.done, content_part.done, output_item.done
    per tool call: output_item.added (function_call), function_call_arguments.delta …,
                   function_call_arguments.done, output_item.done
    response.completed (or response.incomplete when cut by max_output_tokens)

A chunk carrying the gateway's mid-stream `error` ends it with an `error` event and
`response.failed` (the response with `status: "failed"` and the output so far
marked incomplete). Pure: no I/O, so it is tested on chunk lists.

When the deployment answered through its own Responses API, each chunk carries the
upstream's events (`providers.responses_wire`): those are relayed as they came,
renumbered, instead of being made up from the chat deltas; only `response.created`
and `response.in_progress` (already sent, with the gateway's id) are dropped, and
the upstream's final event is held until the end, so that it carries the gateway's
usage with cost, like a translated stream's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.translate.responses import adopt_native, call_item, cite, finish, message_item, new_id, usage
from providers.responses_wire import NATIVE_FIELD

JSON = dict[str, Any]
Event = tuple[str, JSON]


def _dict(value: Any) -> JSON:
    return value if isinstance(value, dict) else {}


@dataclass(slots=True)
class _Call:
    item: JSON
    output_index: int
    arguments: list[str] = field(default_factory=list)


class ResponsesStream:
    """State of one translated stream; see the module docstring."""

    def __init__(self, response: JSON) -> None:
        self.response = response
        self.items: list[JSON] = []
        self._seq = 0
        self._text: JSON | None = None  # the open message item
        self._text_parts: list[str] = []
        self._calls: dict[int, _Call] = {}
        self._open_call: int | None = None
        self._finish_reason: str | None = None
        self._native_items: dict[int, JSON] = {}  # output index → item, when relaying native events
        self._native_final: JSON | None = None  # the upstream's final response, held for `end`
        self._annotations: list[Any] = []  # RAG's citations, from the final chunk (chat's shape)

    @property
    def failed(self) -> bool:
        return bool(self.response["status"] == "failed")

    def _event(self, kind: str, **fields: Any) -> Event:
        payload = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return kind, payload

    def start(self) -> list[Event]:
        return [
            self._event("response.created", response=self.response),
            self._event("response.in_progress", response=self.response),
        ]

    def chunk(self, chunk: JSON) -> list[Event]:
        """The events one relayed chat chunk becomes."""
        if isinstance(chunk.get("provider"), str):
            self.response["provider"] = chunk["provider"]
        if isinstance(chunk.get("error"), dict):
            return self.fail(str(chunk["error"].get("message") or "the upstream stream broke"))
        if isinstance(chunk.get("usage"), dict):
            self.response["usage"] = usage(chunk["usage"])
        if isinstance(chunk.get("gateway"), dict):
            self.response["gateway"] = chunk["gateway"]
        choices = chunk.get("choices") or []
        first = _dict(choices[0]) if choices else {}
        delta = _dict(first.get("delta"))
        if isinstance(delta.get("annotations"), list):
            self._annotations += delta["annotations"]
        native = chunk.get(NATIVE_FIELD)
        if isinstance(native, list):
            return self._relay_native(native)
        out: list[Event] = []
        if isinstance(delta.get("content"), str) and delta["content"]:
            out += self._text_delta(delta["content"])
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                out += self._call_delta(call)
        if first.get("finish_reason") is not None:
            self._finish_reason = first["finish_reason"]
        return out

    def _relay_native(self, events: list[Any]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            kind = event.get("type") if isinstance(event, dict) else None
            if not isinstance(kind, str) or kind in ("response.created", "response.in_progress"):
                continue
            if kind in ("response.completed", "response.incomplete"):
                self._native_final = _dict(event.get("response"))
                continue
            item, index = event.get("item"), event.get("output_index")
            if isinstance(item, dict) and isinstance(index, int):
                self._native_items[index] = item
                self.items = [self._native_items[i] for i in sorted(self._native_items)]
            fields = {k: v for k, v in event.items() if k not in ("type", "sequence_number")}
            out.append(self._event(kind, **fields))
        return out

    def _text_delta(self, text: str) -> list[Event]:
        out: list[Event] = []
        if self._text is None:
            out += self._close_call()
            self._text = message_item(new_id("msg"), "", status="in_progress")
            self._text["content"] = []
            self._text_parts = []
            self.items.append(self._text)
            out.append(self._event("response.output_item.added", output_index=self._index, item=self._text))
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out.append(self._event("response.content_part.added", **self._text_position, part=part))
        self._text_parts.append(text)
        out.append(self._event("response.output_text.delta", **self._text_position, delta=text, logprobs=[]))
        return out

    @property
    def _index(self) -> int:
        return len(self.items) - 1

    @property
    def _text_position(self) -> JSON:
        assert self._text is not None
        return {"item_id": self._text["id"], "output_index": self.items.index(self._text), "content_index": 0}

    def _close_text(self, status: str = "completed") -> list[Event]:
        if self._text is None:
            return []
        item, self._text = self._text, None
        index = self.items.index(item)
        text = "".join(self._text_parts)
        item.update(message_item(item["id"], text, status))
        common = {"item_id": item["id"], "output_index": index, "content_index": 0}
        return [
            self._event("response.output_text.done", **common, text=text, logprobs=[]),
            self._event("response.content_part.done", **common, part=item["content"][0]),
            self._event("response.output_item.done", output_index=index, item=item),
        ]

    def _call_delta(self, call: JSON) -> list[Event]:
        index = call.get("index", 0)
        function = _dict(call.get("function"))
        out: list[Event] = []
        state = self._calls.get(index)
        if state is None:
            out += self._close_text() + self._close_call()
            item = call_item(new_id("fc"), str(call.get("id") or ""), str(function.get("name") or ""), "")
            item["status"] = "in_progress"
            self.items.append(item)
            state = self._calls[index] = _Call(item, self._index)
            self._open_call = index
            out.append(self._event("response.output_item.added", output_index=state.output_index, item=item))
        fragment = function.get("arguments")
        if isinstance(fragment, str) and fragment:
            state.arguments.append(fragment)
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=state.item["id"],
                    output_index=state.output_index,
                    delta=fragment,
                )
            )
        return out

    def _close_call(self, status: str = "completed") -> list[Event]:
        if self._open_call is None:
            return []
        state = self._calls[self._open_call]
        self._open_call = None
        item = state.item
        item["arguments"] = "".join(state.arguments)
        item["status"] = status
        return [
            self._event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=state.output_index,
                name=item["name"],
                arguments=item["arguments"],
            ),
            self._event("response.output_item.done", output_index=state.output_index, item=item),
        ]

    def end(self) -> list[Event]:
        """The stream ended normally: close what is open, then the final response."""
        out = self._close_text() + self._close_call()
        self.response["output"] = self.items
        finish(self.response, self._finish_reason)
        if self._native_final is not None:
            adopt_native(self.response, self._native_final)
        cite(self.response, self._annotations)
        kind = "response.completed" if self.response["status"] == "completed" else "response.incomplete"
        return [*out, self._event(kind, response=self.response)]

    def fail(self, message: str) -> list[Event]:
        """The stream broke: an `error` event, then `response.failed` with the output so far."""
        self._close_text("incomplete")
        self._close_call("incomplete")
        self.response["output"] = self.items
        self.response["status"] = "failed"
        self.response["error"] = {"code": "server_error", "message": message}
        return [
            self._event("error", code="server_error", message=message, param=None),
            self._event("response.failed", response=self.response),
        ]
