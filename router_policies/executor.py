"""Runs a request's plan: attempt deployments in order until one answers.

A failure *before the first byte of content* moves on to the next deployment when it
is retryable (connect errors, timeouts, 429, 5xx, garbage). A context-length error
moves on only to deployments with a longer context window. Any other 4xx is the
client's own error and is raised at once. Once a stream has produced content it is
handed to the caller and never retried here: what happens after that is the
streaming layer's business.

Role chunks that carry no content are held back until real content arrives, so an
upstream that dies right after `{"role": "assistant"}` is still failed over without
the client seeing a second role chunk.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from providers.errors import ContextLengthExceeded, ProviderError
from providers.types import JSON, ChatResult, EmbeddingsResult, RateLimitInfo, UpstreamCall
from router_policies.attempts import AllAttemptsFailed, Attempt, AttemptLog
from router_policies.deployment import Deployment

T = TypeVar("T")

_CONTENT_KEYS = ("content", "tool_calls", "function_call", "refusal", "reasoning", "reasoning_content")


def carries_content(chunk: JSON) -> bool:
    """True when a chunk is more than a role preamble: text, tool calls, a finish or usage."""
    choices = chunk.get("choices")
    if not choices:
        return chunk.get("usage") is not None
    first = choices[0]
    if not isinstance(first, dict):
        return True
    if first.get("finish_reason") is not None:
        return True
    delta = first.get("delta")
    if not isinstance(delta, dict):
        return False
    return any(delta.get(key) for key in _CONTENT_KEYS)


@dataclass(slots=True)
class StartedStream:
    """A stream that has produced content: the held-back chunks, then the rest."""

    deployment: Deployment
    preamble: list[JSON]
    rest: AsyncIterator[JSON]
    rate_limit: RateLimitInfo
    started_at: float
    first_token_at: float

    async def aclose(self) -> None:
        aclose = getattr(self.rest, "aclose", None)
        if aclose is not None:
            await aclose()


def upstream_call(deployment: Deployment, body: JSON, headers: dict[str, str] | None = None) -> UpstreamCall:
    """The body as this deployment must see it: the client's, with the upstream's model name."""
    return UpstreamCall(
        body={**body, "model": deployment.model}, timeouts=deployment.timeouts, headers=headers or {}
    )


def _still_eligible(remaining: Sequence[Deployment], failed: Deployment) -> list[Deployment]:
    """After a context-length failure keep only deployments with a longer context window."""
    window = failed.context_window_tokens
    return [d for d in remaining if window is None or (d.context_window_tokens or 0) > window]


async def run_plan(
    plan: Sequence[Deployment],
    log: AttemptLog,
    attempt: Callable[[Deployment], Awaitable[T]],
) -> tuple[T, Deployment]:
    """Try `attempt` on each deployment in turn; the one loop behind every request kind."""
    last_error: ProviderError | None = None
    queue = list(plan)
    while queue:
        deployment = queue.pop(0)
        record = Attempt(deployment.id, deployment.provider, time.monotonic())
        log.attempts.append(record)
        try:
            result = await attempt(deployment)
        except ProviderError as error:
            record.failed(error, (time.monotonic() - record.started_at) * 1000)
            last_error = error
            if not error.retryable:
                raise
            if isinstance(error, ContextLengthExceeded):
                queue = _still_eligible(queue, deployment)
            continue
        record.outcome = "ok"
        record.status = 200
        record.elapsed_ms = (time.monotonic() - record.started_at) * 1000
        return result, deployment
    raise AllAttemptsFailed(log.attempts, last_error)


async def complete(plan: Sequence[Deployment], body: JSON, log: AttemptLog) -> tuple[ChatResult, Deployment]:
    return await run_plan(plan, log, lambda d: d.adapter.chat(upstream_call(d, body)))


async def embed(
    plan: Sequence[Deployment], body: JSON, log: AttemptLog
) -> tuple[EmbeddingsResult, Deployment]:
    return await run_plan(plan, log, lambda d: d.adapter.embeddings(upstream_call(d, body)))


async def _open_until_content(deployment: Deployment, body: JSON) -> StartedStream:
    started_at = time.monotonic()
    stream = await deployment.adapter.chat_stream(upstream_call(deployment, body))
    iterator = stream.__aiter__()
    preamble: list[JSON] = []
    try:
        while True:
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                break
            preamble.append(chunk)
            if carries_content(chunk):
                break
    except BaseException:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
        await stream.aclose()
        raise
    return StartedStream(deployment, preamble, iterator, stream.rate_limit, started_at, time.monotonic())


async def start_stream(plan: Sequence[Deployment], body: JSON, log: AttemptLog) -> StartedStream:
    started, _ = await run_plan(plan, log, lambda d: _open_until_content(d, body))
    return started
