"""Anthropic's Messages API onto Chat Completions, and back: small pure functions.

So that the Anthropic SDK, and tools built on it, can use any routed model:
`system` becomes a system message; content blocks become chat content (`text`,
`image` from base64 or a URL), an assistant's `tool_use` blocks become its
`tool_calls`, and a user's `tool_result` blocks become `tool` messages (placed before
the rest of that user turn, which is the order chat expects). Tools, `tool_choice`,
`stop_sequences` and `max_tokens` map across. The answer becomes a `message` with
`text` and `tool_use` blocks and Anthropic's `stop_reason`. Errors leave in
Anthropic's shape (`error_body`). Streams are in `anthropic_stream.py`.
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from gateway.errors import GatewayError

JSON = dict[str, Any]

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def error_body(status: int, message: str) -> JSON:
    """Anthropic's error envelope for an HTTP status."""
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _bad(param: str, message: str) -> GatewayError:
    return GatewayError(400, f"invalid request: {param}: {message}", param=param)


def _image(block: JSON, param: str) -> JSON:
    raw = block.get("source")
    source: JSON = raw if isinstance(raw, dict) else {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise _bad(f"{param}.source", "an image source must be base64 or url")
    return {"type": "image_url", "image_url": {"url": url}}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(b.get("text", "")) for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def _parts(parts: list[JSON]) -> str | list[JSON]:
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _message(message: Any, param: str) -> list[JSON]:
    """One Anthropic message as one or more chat messages."""
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise _bad(f"{param}.role", "must be user or assistant")
    role, content = message["role"], message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _bad(f"{param}.content", "must be a string or a list of content blocks")
    parts: list[JSON] = []
    calls: list[JSON] = []
    results: list[JSON] = []
    for i, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        where = f"{param}.content[{i}]"
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image" and role == "user":
            parts.append(_image(block, where))
        elif kind == "tool_use" and role == "assistant":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            function = {"name": str(block.get("name", "")), "arguments": arguments}
            calls.append({"id": str(block.get("id", "")), "type": "function", "function": function})
        elif kind == "tool_result" and role == "user":
            results.append(
                {
                    "role": "tool",
                    "tool_call_id": str(block.get("tool_use_id", "")),
                    "content": _text_of(block.get("content")),
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue  # the model's own reasoning from an earlier turn: not input for another model
        else:
            raise _bad(f"{where}.type", f"unsupported content block {kind!r} in a {role} message")
    out: list[JSON] = list(results)
    if role == "assistant":
        reply: JSON = {"role": "assistant", "content": _parts(parts) if parts else None}
        if calls:
            reply["tool_calls"] = calls
        out.append(reply)
    elif parts:
        out.append({"role": "user", "content": _parts(parts)})
    return out


def _tool_choice(raw: Any, chat: JSON) -> None:
    if not isinstance(raw, dict):
        return
    kind = raw.get("type")
    if kind == "tool":
        chat["tool_choice"] = {"type": "function", "function": {"name": raw.get("name")}}
    elif kind in ("auto", "any", "none"):
        chat["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if raw.get("disable_parallel_tool_use") is True:
        chat["parallel_tool_calls"] = False


def to_chat(body: JSON) -> JSON:
    """The chat body for a Messages request."""
    chat: JSON = {
        k: body[k] for k in ("model", "max_tokens", "stream", "temperature", "top_p", "top_k") if k in body
    }
    for field in ("provider", "models", "rag"):
        if field in body:
            chat[field] = body[field]
    messages: list[JSON] = []
    system = _text_of(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for i, message in enumerate(body.get("messages") or []):
        messages += _message(message, f"messages[{i}]")
    chat["messages"] = messages
    if body.get("stop_sequences"):
        chat["stop"] = body["stop_sequences"]
    if body.get("tools"):
        chat["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.get("name"),
                    "description": tool.get("description", ""),
                    "parameters": tool.get("input_schema") or {"type": "object"},
                },
            }
            for tool in body["tools"]
            if isinstance(tool, dict)
        ]
    _tool_choice(body.get("tool_choice"), chat)
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        chat["user"] = metadata["user_id"]
    return chat


def parse_arguments(arguments: str) -> Any:
    """A tool call's arguments as the `input` object; unparseable text is kept under `_raw`."""
    try:
        value = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"_raw": arguments}


def usage(chat_usage: Any) -> JSON:
    usage_in = chat_usage if isinstance(chat_usage, dict) else {}
    out: JSON = {
        "input_tokens": int(usage_in.get("prompt_tokens") or 0),
        "output_tokens": int(usage_in.get("completion_tokens") or 0),
    }
    if "cost" in usage_in:
        out["cost"] = usage_in["cost"]
    return out


def from_chat(answer: JSON, message_id: str) -> JSON:
    """A finished chat completion as an Anthropic `message`."""
    choices = answer.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    reply = choice.get("message") or {}
    content: list[JSON] = []
    if isinstance(reply.get("content"), str) and reply["content"]:
        content.append({"type": "text", "text": reply["content"]})
    for call in reply.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": str(call.get("id", "")),
                "name": str(function.get("name", "")),
                "input": parse_arguments(str(function.get("arguments") or "")),
            }
        )
    out = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": answer.get("model"),
        "content": content,
        "stop_reason": STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": usage(answer.get("usage")),
    }
    if "provider" in answer:
        out["provider"] = answer["provider"]
    return out
