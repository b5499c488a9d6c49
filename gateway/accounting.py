"""Usage and cost of an answer.

Cost is tokens times the deployment's prices (USD per million tokens). When an
upstream reports no usage, tokens are counted with litellm's token counter and the
usage is marked `estimated`. litellm is imported lazily, in a worker thread, and only
then: importing it costs seconds, which no request that has real usage should pay.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from providers.types import Usage
from router_policies.deployment import Deployment

log = logging.getLogger("gateway.accounting")


def usage_payload(
    usage: Usage, deployment: Deployment, upstream: dict[str, Any] | None = None
) -> dict[str, Any]:
    """OpenAI's usage object plus `cost` in USD (and `estimated` when we counted ourselves)."""
    payload: dict[str, Any] = dict(upstream) if isinstance(upstream, dict) else {}
    payload["prompt_tokens"] = usage.prompt_tokens
    payload["completion_tokens"] = usage.completion_tokens
    payload["total_tokens"] = usage.total_tokens
    payload["cost"] = round(deployment.cost_usd(usage.prompt_tokens, usage.completion_tokens), 10)
    if usage.estimated:
        payload["estimated"] = True
    return payload


def _count_tokens(model: str, messages: list[Any], completion: str) -> Usage:
    import litellm  # deliberately lazy: see the module docstring

    try:
        prompt = litellm.token_counter(model=model, messages=messages)
        completion_tokens = litellm.token_counter(model=model, text=completion, count_response_tokens=True)
    except Exception:  # litellm raises many kinds for odd inputs; fall back to a rough count
        log.warning("token counting failed for %s; using a character-based estimate", model)
        text = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        prompt, completion_tokens = len(text) // 4 + 1, len(completion) // 4 + (1 if completion else 0)
    return Usage(prompt_tokens=int(prompt), completion_tokens=int(completion_tokens), estimated=True)


async def estimate_usage(model: str, messages: list[Any], completion: str) -> Usage:
    return await asyncio.to_thread(_count_tokens, model, messages, completion)
