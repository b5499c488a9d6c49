"""Tool calls and JSON answers: what agents and structured-output clients get from a fake upstream.

A behaviour may name tool calls; the answer then ends with them, and a stream sends
each as OpenAI does: one delta with its index, id, type and name and empty
arguments, then the arguments in small fragments, so a client that accumulates
deltas is exercised as a real one is. A request with `response_format` (and no
scripted content) is answered with JSON: for `json_schema`, an instance built from
the schema, so `parse()` with a pydantic model succeeds against the simulator.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

JSON = dict[str, Any]

ARGUMENT_FRAGMENT_CHARS = 7
_MAX_DEPTH = 8


def tool_calls(calls: list[JSON], seed: str) -> list[JSON]:
    """Complete tool calls (OpenAI's message shape) from a behaviour's `[{name, arguments}]`.

    Arguments may be given as an object or as the JSON string itself; ids are derived
    from the seed and the position, so every chunk of one answer agrees.
    """
    out: list[JSON] = []
    for index, call in enumerate(calls):
        arguments = call.get("arguments", {})
        text = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
        digest = hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:24]
        out.append(
            {
                "id": str(call.get("id") or f"call_{digest}"),
                "type": "function",
                "function": {"name": str(call["name"]), "arguments": text},
            }
        )
    return out


def tool_call_deltas(calls: list[JSON]) -> list[JSON]:
    """The stream deltas for complete tool calls: a header per call, then argument fragments."""
    deltas: list[JSON] = []
    for index, call in enumerate(calls):
        function = call["function"]
        header = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": function["name"], "arguments": ""},
        }
        deltas.append({"tool_calls": [header]})
        text: str = function["arguments"]
        for start in range(0, len(text), ARGUMENT_FRAGMENT_CHARS):
            fragment = text[start : start + ARGUMENT_FRAGMENT_CHARS]
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
    return deltas


def json_answer(response_format: Any, words: str) -> str | None:
    """A JSON answer for `response_format`, or None when it asks for plain text."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return orjson.dumps({"answer": words}).decode()
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        root = schema if isinstance(schema, dict) else {}
        return orjson.dumps(instance(root, root, words)).decode()
    return None


def instance(schema: JSON, root: JSON, words: str, depth: int = 0) -> Any:
    """A value that satisfies a (strict-mode subset of) JSON Schema: refs, anyOf, enums, types."""
    if depth > _MAX_DEPTH:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return instance(target, root, words, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return instance(options[0], root, words, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    return _typed(kind, schema, root, words, depth)


def _typed(kind: str, schema: JSON, root: JSON, words: str, depth: int) -> Any:
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: instance(sub, root, words, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        items = schema.get("items")
        return [instance(items, root, words, depth + 1)] if isinstance(items, dict) else []
    if kind == "string":
        return words
    if kind == "integer":
        return 42
    if kind == "number":
        return 4.2
    if kind == "boolean":
        return True
    return None
