"""OpenAI's Responses API onto Chat Completions, and back: small pure functions.

No library does this cheaply enough for the hot path (litellm's translation costs
its 3 s import), and the mapping is small: `instructions` become a system message,
`input` (a string or a list of items: messages, `function_call`,
`function_call_output`) becomes chat messages, function tools and `text.format`
become `tools` and `response_format`, `max_output_tokens` becomes `max_tokens`. The
answer becomes a `response` object whose `output` holds one `message` item for the
text and one `function_call` item per tool call. Streams are in
`responses_stream.py`.

Bad input raises `GatewayError` (400) naming the field in Responses terms.
"""

from __future__ import annotations

import secrets
from typing import Any

from gateway.errors import GatewayError
from providers.responses_wire import NATIVE_FIELD

JSON = dict[str, Any]

# Request fields copied to the chat body unchanged (the gateway's own included).
_SAME = (
    "model",
    "stream",
    "temperature",
    "top_p",
    "user",
    "parallel_tool_calls",
    "provider",
    "models",
    "rag",
)
_PART_TYPES = {"input_text": "text", "output_text": "text", "text": "text"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def _bad(param: str, message: str) -> GatewayError:
    return GatewayError(400, f"invalid request: {param}: {message}", param=param)


def _content(content: Any, param: str) -> str | list[JSON]:
    """A Responses message `content` (string or parts) as chat content."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(param, "must be a string or a list of content parts")
    parts: list[JSON] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _PART_TYPES:
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise _bad(f"{param}[{i}].image_url", "an image needs image_url (a URL or a data: URI)")
            image: JSON = {"url": url}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "refusal":
            parts.append({"type": "text", "text": str(part.get("refusal", ""))})
        else:
            raise _bad(f"{param}[{i}].type", f"unsupported content part type {kind!r}")
    if all(p["type"] == "text" for p in parts):  # plain text reaches every provider
        return "".join(p["text"] for p in parts)
    return parts


def input_messages(raw: Any) -> list[JSON]:
    """`input` as chat messages; consecutive function calls join one assistant message."""
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list):
        raise _bad("input", "must be a string or a list of input items")
    messages: list[JSON] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise _bad(f"input[{i}]", "must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _bad(f"input[{i}].role", "must be user, assistant, system or developer")
            messages.append({"role": role, "content": _content(item.get("content"), f"input[{i}].content")})
        elif kind == "function_call":
            call = {
                "id": str(item.get("call_id") or item.get("id") or ""),
                "type": "function",
                "function": {"name": str(item.get("name", "")), "arguments": str(item.get("arguments", ""))},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _content(output, f"input[{i}].output")
            messages.append({"role": "tool", "tool_call_id": str(item.get("call_id", "")), "content": text})
        else:
            raise _bad(f"input[{i}].type", f"unsupported input item type {kind!r}")
    return messages


def _tools(raw: Any) -> list[JSON]:
    if not isinstance(raw, list):
        raise _bad("tools", "must be a list")
    tools: list[JSON] = []
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise _bad(f"tools[{i}].type", f"only function tools are supported here, not {kind!r}")
        function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
        tools.append({"type": "function", "function": function})
    return tools


def _tool_choice(raw: Any) -> Any:
    if isinstance(raw, dict) and raw.get("type") == "function":
        return {"type": "function", "function": {"name": raw.get("name")}}
    return raw


def _response_format(text: Any) -> JSON | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        spec = {k: fmt[k] for k in ("name", "description", "schema", "strict") if k in fmt}
        return {"type": "json_schema", "json_schema": spec}
    raise _bad("text.format.type", f"unsupported format {fmt['type']!r}")


# What `to_chat` consumes, and the gateway's own fields: everything else in a Responses request
# is sent as it came to a deployment that has the Responses API (`native_fields`).
_CONSUMED = frozenset(
    {*_SAME, "input", "instructions", "previous_response_id", "store", "max_output_tokens", "tool_choice",
     "cache", "stream_options"}
)  # fmt: skip
# A native answer's fields that stay the gateway's: its identity, what it stored, what it billed.
_OURS = frozenset(
    {"id", "object", "created_at", "model", "store", "previous_response_id", "instructions", "tools",
     "usage", "provider", "gateway"}
)  # fmt: skip


def native_fields(body: JSON) -> JSON:
    """The request's fields for a natively served deployment, beyond what the chat body says.

    `tools` and `text` go as the client wrote them (the chat body has their translation),
    and any Responses-only parameter (`reasoning`, `include`, `truncation`, …) goes along;
    a deployment reached through Chat Completions never sees these.
    """
    return {k: v for k, v in body.items() if k not in _CONSUMED}


def adopt_native(response: JSON, native: JSON) -> None:
    """Take the upstream's own output and settings into the gateway's `response` object."""
    for key, value in native.items():
        if key not in _OURS:
            response[key] = value


def to_chat(body: JSON, conversation: list[JSON]) -> JSON:
    """The chat body for a Responses request.

    `conversation` is the stored history it continues plus `input_messages` of its
    input; `instructions` go first, and are not carried into later turns (OpenAI's rule).
    """
    chat: JSON = {k: body[k] for k in _SAME if k in body}
    messages: list[JSON] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    chat["messages"] = messages + conversation
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    return chat


def _detail(chat_usage: JSON, details: str, name: str) -> int:
    inner = chat_usage.get(details)
    value = inner.get(name) if isinstance(inner, dict) else None
    return value if isinstance(value, int) and value >= 0 else 0


def usage(chat_usage: Any) -> JSON | None:
    """Chat usage as the Responses usage object; `cost` (and `estimated`) kept alongside."""
    if not isinstance(chat_usage, dict):
        return None
    prompt = int(chat_usage.get("prompt_tokens") or 0)
    completion = int(chat_usage.get("completion_tokens") or 0)
    cached = _detail(chat_usage, "prompt_tokens_details", "cached_tokens")
    reasoning = _detail(chat_usage, "completion_tokens_details", "reasoning_tokens")
    out: JSON = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }
    for extra in ("cost", "estimated"):
        if extra in chat_usage:
            out[extra] = chat_usage[extra]
    return out


def message_item(item_id: str, text: str, status: str = "completed") -> JSON:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": [part]}


def call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> JSON:
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def skeleton(body: JSON, response_id: str, created_at: int, model: str) -> JSON:
    """A `response` object echoing the request's settings, with no output yet (in progress)."""
    tools = [_echoed_tool(tool) for tool in body.get("tools") or []]
    response: JSON = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": None,
        "store": body.get("store", True) is not False,
        "temperature": body.get("temperature"),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": tools,
        "top_p": body.get("top_p"),
        "truncation": "disabled",
        "metadata": body.get("metadata") or {},
    }
    if isinstance(body.get("user"), str):  # optional in the spec, and a string when present: never null
        response["user"] = body["user"]
    return response


def _echoed_tool(tool: Any) -> Any:
    """A function tool as OpenAI echoes it: `description` and `strict` present, null when not given."""
    if isinstance(tool, dict) and tool.get("type") == "function":
        return {**tool, "description": tool.get("description"), "strict": tool.get("strict")}
    return tool


def finish(response: JSON, finish_reason: str | None) -> None:
    """Set the final status: `incomplete` when the output was cut by `max_output_tokens`."""
    if finish_reason == "length":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    elif finish_reason == "content_filter":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "content_filter"}
    else:
        response["status"] = "completed"


def from_chat(answer: JSON, body: JSON, response_id: str, created_at: int) -> JSON:
    """A finished chat completion as a `response` object (the upstream's own, when it answered natively)."""
    response = skeleton(body, response_id, created_at, str(answer.get("model", body.get("model"))))
    native = answer.pop(NATIVE_FIELD, None)
    if isinstance(native, dict):
        adopt_native(response, native)
        return _with_accounting(response, answer)
    choices = answer.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    text = message.get("content")
    if isinstance(text, str) and text:
        response["output"].append(message_item(new_id("msg"), text))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        response["output"].append(
            call_item(
                new_id("fc"),
                str(call.get("id", "")),
                str(function.get("name", "")),
                str(function.get("arguments", "")),
            )
        )
    finish(response, choice.get("finish_reason"))
    return _with_accounting(response, answer)


def cite(response: JSON, chat_annotations: Any) -> None:
    """RAG's citations (chat's `url_citation` annotations) on the answer's first text part.

    Chat nests the fields under `url_citation`; the Responses API has them flat.
    """
    flat = [
        {"type": "url_citation", **a["url_citation"]}
        for a in chat_annotations or ()
        if isinstance(a, dict) and a.get("type") == "url_citation" and isinstance(a.get("url_citation"), dict)
    ]
    for item in response.get("output") or ():
        if isinstance(item, dict) and item.get("type") == "message":
            for part in item.get("content") or ():
                if isinstance(part, dict) and part.get("type") == "output_text":
                    known = part.setdefault("annotations", [])
                    known.extend(a for a in flat if a not in known)
                    return


def _with_accounting(response: JSON, answer: JSON) -> JSON:
    """The gateway's usage (with cost), provider and routing metadata, and RAG's citations, from the chat answer."""
    choices = answer.get("choices") or [{}]
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    if isinstance(message, dict) and message.get("annotations"):
        cite(response, message["annotations"])
    if (reported := usage(answer.get("usage"))) is not None:  # optional in the spec, never null
        response["usage"] = reported
    if "provider" in answer:
        response["provider"] = answer["provider"]
    if "gateway" in answer:
        response["gateway"] = answer["gateway"]
    return response


def output_messages(response: JSON) -> list[JSON]:
    """A response's output as chat messages, to continue the conversation from it."""
    text = ""
    calls: list[JSON] = []
    for item in response.get("output", []):
        if item.get("type") == "message":
            text += "".join(
                p.get("text", "") for p in item.get("content", []) if p.get("type") == "output_text"
            )
        elif item.get("type") == "function_call":
            function = {"name": item["name"], "arguments": item["arguments"]}
            calls.append({"id": item["call_id"], "type": "function", "function": function})
    message: JSON = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return [message]
