"""Neutral request/response types shared by every adapter.

Bodies stay plain dicts in OpenAI's wire shape: the gateway passes unknown fields
through to upstreams, so a typed model of the whole body would either drop them or
cost a copy on every request. What the router and the ledger need is lifted into
small typed objects (`Usage`, `RateLimitInfo`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

JSON = dict[str, Any]


@dataclass(slots=True)
class Timeouts:
    """Deadlines for one upstream call, in milliseconds.

    The defaults are generous because a long prompt on a slow or busy model can take
    well over a minute before its first token.
    """

    connect_timeout_ms: float = 10_000
    first_byte_timeout_ms: float = 120_000
    idle_timeout_ms: float = 60_000
    total_timeout_ms: float = 600_000


@dataclass(slots=True)
class RateLimitInfo:
    """What the upstream told us about its limits (`x-ratelimit-*`, `retry-after`)."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None
    retry_after_s: float | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.__slots__)


MAX_PLAUSIBLE_TOKENS = 100_000_000


def _plausible(count: Any) -> bool:
    return count is None or (
        type(count) is int and 0 <= count <= MAX_PLAUSIBLE_TOKENS  # bool is an int subclass: excluded
    )


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False
    extra: JSON = field(default_factory=dict)
    cached_tokens: int = 0  # of prompt_tokens, read from the provider's prompt cache
    reasoning_tokens: int = 0  # of completion_tokens, spent reasoning

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_openai(cls, usage: JSON | None) -> Usage | None:
        """The upstream's counts, or None when it gave none or impossible ones.

        A negative, non-integer or absurd count is treated like a missing one (the
        caller then counts the tokens itself and marks the usage estimated): trusting
        it would book a negative cost, which would refund a budget.
        """
        if not isinstance(usage, dict):
            return None
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        if prompt is None and completion is None:
            return None
        if not (_plausible(prompt) and _plausible(completion)):
            return None
        prompt, completion = prompt or 0, completion or 0
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=_detail(usage, "prompt_tokens_details", "cached_tokens", prompt),
            reasoning_tokens=_detail(usage, "completion_tokens_details", "reasoning_tokens", completion),
        )


def _detail(usage: JSON, details: str, name: str, at_most: int) -> int:
    """A count inside `prompt_tokens_details`/`completion_tokens_details`, 0 when absent or implausible."""
    inner = usage.get(details)
    value = inner.get(name) if isinstance(inner, dict) else None
    return min(value, at_most) if _plausible(value) and isinstance(value, int) else 0


@dataclass(slots=True)
class UpstreamCall:
    """One request to one deployment: the body as the upstream should see it."""

    body: JSON
    timeouts: Timeouts
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ChatResult:
    """A finished non-streaming chat completion, already normalised to OpenAI's shape."""

    body: JSON
    usage: Usage | None
    rate_limit: RateLimitInfo
    status: int = 200


@dataclass(slots=True)
class EmbeddingsResult:
    body: JSON
    usage: Usage | None
    rate_limit: RateLimitInfo


class ChunkStream(Protocol):
    """An open upstream stream of parsed, normalised chat chunks.

    Iterating yields chunk dicts; `aclose()` must always be called (the executor does it
    in a `finally`) and releases the upstream connection at once.
    """

    rate_limit: RateLimitInfo

    def __aiter__(self) -> AsyncIterator[JSON]: ...

    async def aclose(self) -> None: ...


class Adapter(Protocol):
    """The narrow contract every provider adapter fulfils.

    Adapters translate between OpenAI's wire shape and the upstream, normalise the
    provider's quirks, and raise only `providers.errors` types.
    """

    name: str

    async def chat(self, call: UpstreamCall) -> ChatResult: ...

    async def chat_stream(self, call: UpstreamCall) -> ChunkStream: ...

    async def embeddings(self, call: UpstreamCall) -> EmbeddingsResult: ...

    async def aclose(self) -> None: ...
