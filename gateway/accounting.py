"""Usage and cost of an answer.

Cost is tokens times the deployment's prices (USD per million tokens), with prompt
tokens read from the provider's cache (`prompt_tokens_details.cached_tokens`) and
reasoning tokens at their own prices when the deployment has them, so the booked cost
is what the provider bills. When an
upstream reports no usage, tokens are counted (see `providers.token_count`) and the
usage is marked `estimated`.

The tokenizer is loaded by the first count, in a worker thread, not at start-up: it
takes about 40 MB and 0.1 s, and a gateway whose upstreams report usage (most do, and
the gateway always asks them to) never needs it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from providers.token_count import TokenCounter
from providers.types import Usage
from router_policies.deployment import Deployment

# Counting this much text or more moves to a worker thread so the event loop stays free.
_THREAD_ABOVE_CHARS = 64 * 1024


def usage_payload(
    usage: Usage, deployment: Deployment, upstream: dict[str, Any] | None = None
) -> dict[str, Any]:
    """OpenAI's usage object plus `cost` in USD (and `estimated` when we counted ourselves)."""
    payload: dict[str, Any] = dict(upstream) if isinstance(upstream, dict) else {}
    payload["prompt_tokens"] = usage.prompt_tokens
    payload["completion_tokens"] = usage.completion_tokens
    payload["total_tokens"] = usage.total_tokens
    payload["cost"] = round(deployment.cost_of(usage), 10)
    if usage.estimated:
        payload["estimated"] = True
    return payload


_counter: TokenCounter | None = None
_counter_lock = threading.Lock()


def token_counter() -> TokenCounter:
    """Loaded once per process, by whichever thread asks first; the others wait for it."""
    global _counter
    if _counter is None:
        with _counter_lock:
            if _counter is None:
                _counter = TokenCounter()
    return _counter


def answer_text(answer: dict[str, Any]) -> str:
    """The text of a non-streamed chat answer: every choice's message content, joined."""
    return "".join(
        str((c.get("message") or {}).get("content") or "")
        for c in answer.get("choices") or ()
        if isinstance(c, dict)
    )


def _count(messages: list[Any], completion: str) -> Usage:
    counter = token_counter()
    return Usage(
        prompt_tokens=counter.messages(messages), completion_tokens=counter.text(completion), estimated=True
    )


async def estimate_usage(messages: list[Any], completion: str) -> Usage:
    size = len(completion) + sum(len(str(m.get("content", ""))) for m in messages if isinstance(m, dict))
    if size >= _THREAD_ABOVE_CHARS or _counter is None:  # a long text, or the tokenizer still to load
        return await asyncio.to_thread(_count, messages, completion)
    return _count(messages, completion)
