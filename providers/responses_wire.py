"""Talking to an upstream's Responses API while the gateway keeps chat as its neutral shape.

A client's `POST /v1/responses` is admitted, routed, limited, grounded and booked as a
chat body (`gateway.translate.responses`). When the chosen deployment has the
Responses API natively (OpenAI, recent vLLM), its adapter sends the request there
instead of to Chat Completions, so Responses-only parameters (`reasoning`,
`include`, `truncation`, …, carried in the body's `RESPONSES_FIELD`) reach the
upstream and the client gets the upstream's own output items and events. Failover
and accounting still see chat: the answer is also given in chat shape, with the
upstream's object (non-stream) or events (stream) riding along under `NATIVE_FIELD`
for the gateway's Responses endpoint to relay as they came.

- `request`: a chat body (its messages already holding history, RAG context,
  instructions) as a Responses request, `store: false` (the gateway keeps the
  conversation, so any deployment can continue it);
- `completion`: a `response` object as a chat completion;
- `EventsToChunks`: streamed events as chat chunks; every event rides on the next
  chunk that carries content or the finish, so none is lost and the chat layer sees
  only chunks it understands. `response.failed` and `error` events raise.

Pure: no I/O; the adapter (`openai_compat.py`) does the HTTP.
"""

from __future__ import annotations

from typing import Any

from providers.errors import UpstreamProtocolError, UpstreamStreamError
from providers.types import JSON

RESPONSES_FIELD = "_responses"  # on a chat body: the Responses-only fields to send natively
NATIVE_FIELD = "_native"  # on an answer or a chunk: the upstream's response object, or events

# Chat fields with the same meaning and name in a Responses request.
_SAME = ("model", "stream", "temperature", "top_p", "user", "parallel_tool_calls", "metadata")


def _part(part: Any, role: str) -> Any:
    if not isinstance(part, dict):
        return part
    kind = part.get("type")
    if kind == "text":
        return {"type": "output_text" if role == "assistant" else "input_text", "text": part.get("text", "")}
    if kind == "image_url":
        image = part.get("image_url") or {}
        out: JSON = {"type": "input_image", "image_url": image.get("url")}
        if image.get("detail"):
            out["detail"] = image["detail"]
        return out
    return part


def _content(content: Any, role: str) -> Any:
    return [_part(p, role) for p in content] if isinstance(content, list) else content


def input_items(messages: list[Any]) -> list[JSON]:
    """Chat messages as Responses input items: messages, function calls and their outputs."""
    items: list[JSON] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "tool":
            output = message.get("content")
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": str(message.get("tool_call_id", "")),
                    "output": output if isinstance(output, str) else _content(output, "user"),
                }
            )
            continue
        content = message.get("content")
        if content not in (None, "", []):
            items.append({"type": "message", "role": role, "content": _content(content, str(role))})
        for call in message.get("tool_calls") or []:
            if not isinstance(call, dict):
                continue
            function = call.get("function") or {}
            items.append(
                {
                    "type": "function_call",
                    "call_id": str(call.get("id", "")),
                    "name": str(function.get("name", "")),
                    "arguments": str(function.get("arguments", "")),
                }
            )
    return items


def _tools(tools: list[Any]) -> list[Any]:
    out: list[Any] = []
    for tool in tools:
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        out.append({"type": "function", **function} if isinstance(function, dict) else tool)
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "name": (choice.get("function") or {}).get("name")}
    return choice


def _text_format(response_format: Any) -> JSON | None:
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        return {"format": {"type": "json_schema", **(response_format.get("json_schema") or {})}}
    return {"format": {"type": response_format.get("type", "text")}}


def request(chat: JSON) -> JSON:
    """The Responses request for a chat body (with the upstream's model name already set)."""
    body: JSON = {k: chat[k] for k in _SAME if k in chat}
    body["input"] = input_items(chat.get("messages") or [])
    if chat.get("tools"):
        body["tools"] = _tools(chat["tools"])
    if chat.get("tool_choice") is not None:
        body["tool_choice"] = _tool_choice(chat["tool_choice"])
    limit = chat.get("max_completion_tokens", chat.get("max_tokens"))
    if limit is not None:
        body["max_output_tokens"] = limit
    text = _text_format(chat.get("response_format"))
    if text is not None:
        body["text"] = text
    body.update(chat.get(RESPONSES_FIELD) or {})
    body["store"] = False
    return body


def usage(response_usage: Any) -> JSON | None:
    """A Responses `usage` as chat usage (with cached and reasoning token details)."""
    if not isinstance(response_usage, dict):
        return None
    cached = (response_usage.get("input_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (response_usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0
    return {
        "prompt_tokens": response_usage.get("input_tokens"),
        "completion_tokens": response_usage.get("output_tokens"),
        "total_tokens": response_usage.get("total_tokens"),
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def finish_reason(response: JSON, called: bool) -> str:
    """Why a response ended, in chat's words."""
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if called else "stop"


def _message_text(item: JSON) -> str:
    return "".join(
        str(p.get("text", ""))
        for p in item.get("content") or []
        if isinstance(p, dict) and p.get("type") == "output_text"
    )


def completion(response: JSON, provider: str) -> JSON:
    """A `response` object as a chat completion; the object itself under `NATIVE_FIELD`."""
    output = response.get("output")
    if not isinstance(output, list):
        raise UpstreamProtocolError("the upstream response has no output", provider=provider)
    text, calls = "", []
    for item in output:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            text += _message_text(item)
        elif item.get("type") == "function_call":
            function = {"name": item.get("name", ""), "arguments": item.get("arguments", "")}
            calls.append({"id": item.get("call_id", ""), "type": "function", "function": function})
    message: JSON = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    answer: JSON = {
        "id": response.get("id"),
        "object": "chat.completion",
        "created": response.get("created_at"),
        "model": response.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(response, bool(calls))}],
        NATIVE_FIELD: response,
    }
    if (converted := usage(response.get("usage"))) is not None:
        answer["usage"] = converted
    return answer


def _failure_message(event: JSON) -> str:
    error = event.get("error")
    if not isinstance(error, dict):
        error = (
            (event.get("response") or {}).get("error") if isinstance(event.get("response"), dict) else None
        )
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code") or "the upstream response failed")
    return str(event.get("message") or "the upstream response failed")


class EventsToChunks:
    """Turns one upstream's Responses events into chat chunks (see the module docstring)."""

    __slots__ = ("_calls", "_held", "_provider", "_redact", "finished")

    def __init__(self, provider: str, redact: Any) -> None:
        self._provider = provider
        self._redact = redact
        self._held: list[JSON] = []  # events not yet carried by a chunk
        self._calls: dict[str, int] = {}  # function call item id → its chat tool-call index
        self.finished = False

    def _chunk(self, delta: JSON, finish: str | None = None) -> JSON:
        held, self._held = self._held, []
        return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], NATIVE_FIELD: held}

    def _object(self, event: JSON, field: str) -> JSON:
        """An event's nested object; anything else there is not the Responses API."""
        value = event.get(field)
        if not isinstance(value, dict):
            raise UpstreamProtocolError(
                f"the upstream's {event.get('type')} event has no {field} object", provider=self._provider
            )
        return value

    def feed(self, event: JSON) -> JSON | None:
        """The chunk this event completes, if any (most events only wait for the next one)."""
        kind = event.get("type")
        if kind in ("response.failed", "error"):
            raise UpstreamStreamError(self._redact(_failure_message(event)), provider=self._provider)
        self._held.append(event)
        if kind == "response.output_text.delta":
            return self._chunk({"content": str(event.get("delta", ""))})
        if kind == "response.refusal.delta":
            return self._chunk({"refusal": str(event.get("delta", ""))})
        if (
            kind == "response.output_item.added"
            and (item := self._object(event, "item")).get("type") == "function_call"
        ):
            index = self._calls[str(item.get("id"))] = len(self._calls)
            call = {"index": index, "id": item.get("call_id", ""), "type": "function"}
            call["function"] = {"name": item.get("name", ""), "arguments": ""}
            return self._chunk({"tool_calls": [call]})
        if kind == "response.function_call_arguments.delta":
            index = self._calls.get(str(event.get("item_id")), 0)
            fragment = {"index": index, "function": {"arguments": str(event.get("delta", ""))}}
            return self._chunk({"tool_calls": [fragment]})
        if kind in ("response.completed", "response.incomplete"):
            response = self._object(event, "response")
            self.finished = True
            chunk = self._chunk({}, finish_reason(response, bool(self._calls)))
            if (converted := usage(response.get("usage"))) is not None:
                chunk["usage"] = converted
            return chunk
        return None
