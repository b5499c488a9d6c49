"""Prompt-cache stickiness: the same key's long shared prompt goes back where it was cached.

Providers cache the processed prefix of a prompt for a few minutes and bill the cached
part at a fraction of the input price, but only on the deployment that saw it. So a
request whose prompt starts with a long prefix (a shared system prompt, a growing
conversation) that this key sent before is steered to the deployment that served
that prefix last, while it is healthy, has room and meets the request's targets.

The prefix key is a hash of the key's name and the first `PREFIX_CHARS` characters of
the prompt (roles and text of the messages in order); prompts shorter than
`MIN_PROMPT_CHARS` (about the 1,024 tokens below which providers do not cache) get
none. Hashing 4 KB is a few microseconds, and nothing is compiled or allocated per
request beyond the joined text.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

PREFIX_CHARS = 4096
MIN_PROMPT_CHARS = 4096
STICKY_TTL_S = 300.0  # providers keep a prompt cache ~5-10 minutes
MAX_ENTRIES = 20_000


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def prefix_key(key_name: str | None, messages: Any) -> str | None:
    """The stickiness key of this prompt, or None when it is too short to be cached upstream."""
    if not isinstance(messages, list):
        return None
    parts: list[str] = []
    size = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        text = f"{message.get('role')}\x1f{_text(message.get('content'))}\x1e"
        parts.append(text)
        size += len(text)
        if size >= PREFIX_CHARS:
            break
    if size < MIN_PROMPT_CHARS:
        return None
    prefix = "".join(parts)[:PREFIX_CHARS]
    digest = hashlib.blake2b(f"{key_name or ''}\x00{prefix}".encode(), digest_size=12)
    return digest.hexdigest()


class StickyTable:
    """Prefix key → (deployment id, when it served it): bounded, oldest evicted first."""

    __slots__ = ("_entries", "ttl_s")

    def __init__(self, ttl_s: float = STICKY_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def get(self, key: str, now: float) -> str | None:
        entry = self._entries.get(key)
        if entry is None or now - entry[1] > self.ttl_s:
            return None
        return entry[0]

    def put(self, key: str, deployment_id: str, at: float) -> None:
        current = self._entries.get(key)
        if current is not None and current[1] > at:
            return  # a newer answer (another replica's) is already known
        self._entries[key] = (deployment_id, at)
        self._entries.move_to_end(key)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
