"""What makes two requests "the same": normalisation, the parameters that change an answer,
and the namespace an entry lives in.

A key is a SHA-256 over the model, the normalised messages and every body field that
can change the answer. Fields are excluded by a short deny-list of those known not to
(streaming, the caller's id, gateway routing hints), so a parameter this module has
never heard of still separates entries: a missed hit is cheap, a wrong hit is not.
Normalising keeps role, content, names and tool data, trims the surrounding whitespace
of text, and drops nothing else.

Namespaces keep tenants apart: every virtual key has its own (`key:<id>`); the admin
may put a group of keys in a shared one (`shared:<name>`). Entries of one namespace
are never looked up from another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

# Body fields that do not change what the model answers.
NOT_IN_KEY = frozenset(
    {"stream", "stream_options", "user", "cache", "provider", "models", "metadata", "store", "service_tier"}
)


def _text(content: Any) -> Any:
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, list):
        return [
            {**part, "text": part["text"].strip()}
            if isinstance(part, dict) and isinstance(part.get("text"), str)
            else part
            for part in content
        ]
    return content


def normalise(messages: Sequence[Any]) -> list[Any]:
    """Messages with their text trimmed; anything that is not a message object kept as it is."""
    out: list[Any] = []
    for message in messages:
        if isinstance(message, dict):
            out.append({k: (_text(v) if k == "content" else v) for k, v in message.items()})
        else:
            out.append(message)
    return out


def params(body: Mapping[str, Any], rag: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every field that can change the answer, besides the messages (and retrieval, if asked)."""
    out = {k: v for k, v in body.items() if k not in NOT_IN_KEY and k != "messages"}
    if rag is not None:
        out["rag"] = dict(rag)
    return out


def digest(*parts: Any) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


def short(value: str) -> str:
    """A fixed-length, charset-safe stand-in for a namespace or model name in store keys."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def exact_key(body: Mapping[str, Any], rag: Mapping[str, Any] | None) -> str:
    return digest(normalise(body.get("messages") or ()), params(body, rag))


def last_user_text(messages: Sequence[Any]) -> str | None:
    """The last message's text when it is a user turn made of text only; else None (no semantic lookup)."""
    if not messages or not isinstance(messages[-1], dict) or messages[-1].get("role") != "user":
        return None
    content = messages[-1].get("content")
    if isinstance(content, str):
        return content.strip() or None
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        text = "\n".join(str(p.get("text", "")).strip() for p in content)
        return text.strip() or None
    return None


def context_key(body: Mapping[str, Any], rag: Mapping[str, Any] | None) -> str:
    """The semantic filter: everything but the last user turn must match exactly."""
    messages = normalise(body.get("messages") or ())
    return digest("semantic", messages[:-1], params(body, rag))


def namespace(key_id: str | None, key_name: str, shared: Mapping[str, str]) -> str:
    """`shared:<group>` when the admin put this key in a group, else `key:<id>` (`key:-` without one)."""
    group = shared.get(key_id or "") or (shared.get(key_name) if key_id is not None else None)
    if group is not None:
        return f"shared:{group}"
    return f"key:{key_id or '-'}"
