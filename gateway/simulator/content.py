"""Deterministic answer text, token counts and embedding vectors.

Everything is a pure function of the request and the behaviour, so a test can
predict the exact bytes an upstream sends, two runs of a benchmark see the same
traffic, and a stream resumed on another simulated provider continues the same
text. "Tokens" are whitespace-separated words: cheap, obvious, and good enough for
asserting that usage is counted and booked, which is all the gateway needs.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import math
import re
import struct
from collections.abc import Sequence
from typing import Any

_CHUNK = re.compile(r"\s*\S+\s*")
_FILLER = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")
_PROMPT_WORDS_ECHOED = 8
TOKENS_PER_MESSAGE = 4
DEFAULT_DIMENSIONS = 16


def message_text(content: Any) -> str:
    """Text of a message's `content`: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def prompt_tokens(messages: Sequence[Any]) -> int:
    """Words across all message contents plus a fixed overhead per message."""
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        total += len(message_text(content).split()) + TOKENS_PER_MESSAGE
    return total


def last_user_text(messages: Sequence[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def assistant_prefix(messages: Sequence[Any]) -> str | None:
    """The content of a trailing assistant message (a continuation prefix), else None."""
    if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
        return message_text(messages[-1].get("content"))
    return None


def split_chunks(text: str) -> list[str]:
    """One word per chunk, each keeping its trailing whitespace, so `"".join(...) == text`."""
    return _CHUNK.findall(text)


def default_answer(name: str, prompt: str, words: int) -> str:
    """`Simulated <name> answer to: <first prompt words>` padded with filler to exactly `words` words."""
    base = ["Simulated", name, "answer", "to:", *prompt.split()[:_PROMPT_WORDS_ECHOED]]
    filler = itertools.cycle(_FILLER)
    out = base[:words] + [next(filler) for _ in range(max(words - len(base), 0))]
    return " ".join(out)


def answer_chunks(name: str, messages: Sequence[Any], content: str | None, words: int) -> list[str]:
    """The content chunks still to be sent for this request.

    With a trailing assistant message the answer continues it: if the full answer
    starts with that prefix only the rest is sent; otherwise as many leading words
    are skipped as the prefix has, so a resumed answer never exceeds the length the
    behaviour asked for.
    """
    full = content if content is not None else default_answer(name, last_user_text(messages), words)
    prefix = assistant_prefix(messages)
    if not prefix:
        return split_chunks(full)
    if full.startswith(prefix):
        return split_chunks(full[len(prefix) :])
    return split_chunks(full)[len(prefix.split()) :]


def embedding_inputs(raw: Any) -> list[str]:
    """The texts of an embeddings `input`: a string, strings, token ids, or lists of token ids."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw):
        return [" ".join(map(str, raw))]
    if isinstance(raw, list):
        return [item if isinstance(item, str) else " ".join(map(str, item)) for item in raw]
    raise ValueError("'input' must be a string, a list of strings or a list of token ids")


def embedding_vector(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """A unit vector derived from SHA-256 of the text: same text, same vector, anywhere."""
    values: list[float] = []
    for block in itertools.count():
        digest = hashlib.sha256(block.to_bytes(4, "big") + text.encode()).digest()
        values.extend(v / 32767.5 - 1.0 for (v,) in struct.iter_unpack(">H", digest))
        if len(values) >= dimensions:
            break
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def encode_base64(vector: list[float]) -> str:
    """OpenAI's `encoding_format: "base64"`: little-endian float32, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
