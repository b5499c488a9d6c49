"""Entries and their replay: what is stored from an answer, and what a hit sends back.

An entry keeps the first choice's message (content, tool calls, annotations), its
finish reason, the usage and what the answer cost, plus any top-level citations. A hit
is answered in the shape the client asked for:

- JSON: a normal `chat.completion` with this request's id;
- a stream: a normal SSE stream — the role chunk, the content in word-sized chunks, tool
  calls (whole, in one delta), the chunk with `finish_reason`, the usage chunk when the
  client asked for usage, then `[DONE]`.

Either way `usage.cost` is 0 and `usage.cost_saved` is what the stored answer cost.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.streaming import DONE, encode

_WORDS = re.compile(r"\s*\S+")
_WORDS_PER_CHUNK = 4
_TOP_LEVEL = ("citations",)


def entry_from_answer(answer: dict[str, Any], cost_usd: float) -> bytes | None:
    """The entry for a JSON answer; None when it has nothing worth replaying."""
    choices: list[Any] = answer.get("choices") or []
    if (
        len(choices) != 1
        or not isinstance(choices[0], dict)
        or not isinstance(choices[0].get("message"), dict)
    ):
        return None
    choice = choices[0]
    if choice.get("finish_reason") in (None, "error"):
        return None
    usage = answer.get("usage") or {}
    entry = {
        "model": answer.get("model"),
        "message": choice["message"],
        "finish_reason": choice["finish_reason"],
        "usage": {k: usage.get(k, 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
        "cost_usd": cost_usd,
        "created": int(time.time()),
        **{k: answer[k] for k in _TOP_LEVEL if k in answer},
    }
    return orjson.dumps(entry)


def entry_from_stream(
    model: str, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int, cost_usd: float
) -> bytes:
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    entry = {
        "model": model,
        "message": {"role": "assistant", "content": text},
        "finish_reason": finish_reason,
        "usage": usage,
        "cost_usd": cost_usd,
        "created": int(time.time()),
    }
    return orjson.dumps(entry)


def _words(text: str) -> list[str]:
    """`text` cut before each run of whitespace; joined again, exactly `text`."""
    words = _WORDS.findall(text)
    rest = text[sum(map(len, words)) :]
    if rest:
        words.append(rest)
    return words


def _usage(entry: dict[str, Any]) -> dict[str, Any]:
    return {**entry["usage"], "cost": 0.0, "cost_saved": entry.get("cost_usd", 0.0), "cached": True}


def answer(entry: dict[str, Any], request_id: str, model: str) -> dict[str, Any]:
    message = {"content": None, "refusal": None, **entry["message"]}
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": entry.get("model") or model,
        "provider": "cache",
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": entry["finish_reason"]}
        ],
        "usage": _usage(entry),
        **{k: entry[k] for k in _TOP_LEVEL if k in entry},
    }


def chunks(entry: dict[str, Any], request_id: str, model: str, with_usage: bool) -> list[dict[str, Any]]:
    """The stream's chunks, in order (without `[DONE]`)."""
    head = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": entry.get("model") or model,
        "provider": "cache",
    }

    def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}]}

    message = entry["message"]
    out = [delta({"role": "assistant", "content": ""})]
    words = _words(message.get("content") or "")
    for i in range(0, len(words), _WORDS_PER_CHUNK):
        out.append(delta({"content": "".join(words[i : i + _WORDS_PER_CHUNK])}))
    calls = message.get("tool_calls")
    if calls:
        out.append(delta({"tool_calls": [{"index": i, **call} for i, call in enumerate(calls)]}))
    last = delta({}, entry["finish_reason"])
    if message.get("annotations"):
        last["choices"][0]["delta"]["annotations"] = message["annotations"]
    for key in _TOP_LEVEL:
        if key in entry:
            last[key] = entry[key]
    out.append(last)
    if with_usage:
        out.append({**head, "choices": [], "usage": _usage(entry)})
    return out


async def sse(events: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    for event in events:
        yield encode(event)
    yield DONE
