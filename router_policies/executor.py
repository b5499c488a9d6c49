"""Runs a request's plan: the entry points for completions, embeddings and streams.

The attempt loop itself (failover, hedging, retry rounds) is in runner.py; this
module says what one attempt is for each request kind, and reports each finished
attempt's time to first token, throughput and rate-limit headers to the observer
(the router's state) with the tokens it billed, so the next request is scored on
fresh numbers and on each deployment's observed cache-hit rate and token mix.

Once a stream has produced content it is handed to the caller and never retried
here: what happens after that is the streaming layer's business. Role chunks that
carry no content are held back until real content arrives, so an upstream that dies
right after `{"role": "assistant"}` is still failed over without the client seeing
a second role chunk.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from providers.errors import ProviderError
from providers.responses_wire import RESPONSES_FIELD
from providers.types import JSON, ChatResult, EmbeddingsResult, RateLimitInfo, UpstreamCall, Usage
from router_policies.attempts import AttemptLog
from router_policies.deployment import Deployment
from router_policies.runner import (
    DEFAULT_RETRY,
    NO_HEDGE,
    NULL_OBSERVER,
    AttemptObserver,
    HedgeSettings,
    RetrySettings,
    run_plan,
    still_eligible,
)
from router_policies.tracing import AnswerTrace, current, fail_attempt, finish_attempt, open_attempt

__all__ = [
    "StartedStream",
    "carries_content",
    "complete",
    "embed",
    "run_plan",
    "start_stream",
    "still_eligible",
]

_CONTENT_KEYS = ("content", "tool_calls", "function_call", "refusal", "reasoning", "reasoning_content")


class FinishObserver(AttemptObserver, Protocol):
    def finished(
        self,
        d: Deployment,
        ttft_ms: float,
        tokens_per_s: float | None,
        rate_limit: RateLimitInfo | None,
        usage: Usage | None = None,
        in_flight: int | None = None,
    ) -> None: ...

    def in_flight(self, d: Deployment) -> int: ...


class _NullFinish:
    def finished(self, *args: Any) -> None: ...


def load_at_start(observer: Any, d: Deployment) -> int | None:
    """The other answers in flight on `d` as this attempt starts (the observer already counts
    this one): what the load-aware TTFT fit learns from. None when the observer keeps no count."""
    count = getattr(observer, "in_flight", None)
    return None if count is None else max(0, count(d) - 1)


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


class StartedStream:
    """A stream that has produced content: the held-back chunks, then the rest.

    `aclose()` (always called by the streaming layer) closes the upstream and reports
    the attempt once: its throughput from the usage chunk, or its mid-stream failure.
    """

    def __init__(
        self,
        deployment: Deployment,
        preamble: list[JSON],
        inner: AsyncIterator[JSON],
        rate_limit: RateLimitInfo,
        started_at: float,
        first_token_at: float,
        observer: Any = None,
        span: Any = None,
        answer: AnswerTrace | None = None,
        load: int | None = None,
    ) -> None:
        self.deployment = deployment
        self.preamble = preamble
        self.rate_limit = rate_limit
        self.started_at = started_at
        self.first_token_at = first_token_at
        self._inner = inner
        self._observer = observer
        self._completion_tokens: int | None = None
        self._usage: Usage | None = None
        self._error: ProviderError | None = None
        self._ended_at: float | None = None
        self._reported = False
        self._span = span  # the attempt's span (router_policies.tracing), ended on close
        self._answer = answer
        self._load = load  # other answers in flight when this attempt started
        self.rest: AsyncIterator[JSON] = self._watch()

    async def _watch(self) -> AsyncIterator[JSON]:
        try:
            async for chunk in self._inner:
                usage = chunk.get("usage")
                if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                    self._completion_tokens = usage["completion_tokens"]
                    self._usage = Usage.from_openai(usage)
                if self._answer is not None:
                    self._answer.observe(chunk)
                yield chunk
            self._ended_at = time.monotonic()
        except ProviderError as error:
            self._error = error
            raise

    async def aclose(self) -> None:
        try:
            aclose = getattr(self.rest, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            inner_close = getattr(self._inner, "aclose", None)
            if inner_close is not None:
                await inner_close()
            self._report()
            self._end_span()

    def _end_span(self) -> None:
        span, self._span = self._span, None
        if span is None or self._answer is None:
            return
        if self._error is not None:
            fail_attempt(span, self._error)
        else:
            finish_attempt(span, self.deployment, self._answer)

    def _report(self) -> None:
        if self._reported or self._observer is None:
            return
        self._reported = True
        d = self.deployment
        if self._error is not None:
            self._observer.failed(d, self._error)
            return
        ttft_ms = (self.first_token_at - self.started_at) * 1000
        tps = None
        if self._completion_tokens and self._ended_at and self._ended_at > self.first_token_at:
            tps = self._completion_tokens / (self._ended_at - self.first_token_at)
        self._observer.finished(d, ttft_ms, tps, self.rate_limit, self._usage, self._load)


def upstream_call(deployment: Deployment, body: JSON, headers: dict[str, str] | None = None) -> UpstreamCall:
    """The body as this deployment must see it: the client's, with the upstream's model name.

    A Responses API request's native fields (`RESPONSES_FIELD`) go only to a deployment that
    has that API; any other gets the chat body alone.
    """
    body = {**body, "model": deployment.model}
    if RESPONSES_FIELD in body and not deployment.responses_api:
        del body[RESPONSES_FIELD]
    return UpstreamCall(body=body, timeouts=deployment.timeouts, headers=headers or {})


T = TypeVar("T")


def _report_whole(
    observer: Any,
    d: Deployment,
    started: float,
    usage: Usage | None,
    rate_limit: RateLimitInfo,
    load: int | None,
) -> None:
    """A non-streamed answer: its latency stands in for time to first token."""
    elapsed = time.monotonic() - started
    tokens = usage.completion_tokens if usage is not None else 0
    tps = tokens / elapsed if tokens and elapsed > 0 else None
    observer.finished(d, elapsed * 1000, tps, rate_limit, usage, load)


def _timed(
    observer: Any,
    fetch: Callable[[Deployment], Awaitable[T]],
    usage_of: Callable[[T], Usage | None],
    rate_limit_of: Callable[[T], RateLimitInfo],
    traced: tuple[str, JSON, Callable[[T], JSON]],
) -> Callable[[Deployment], Awaitable[T]]:
    """An attempt that fetches a whole (non-streamed) answer and reports its timing.

    `traced` is (operation name, request body, the answer's JSON) for the attempt's span.
    """
    finish = observer if hasattr(observer, "finished") else _NullFinish()
    operation, body, answer_of = traced

    async def attempt(d: Deployment) -> T:
        started = time.monotonic()
        load = load_at_start(finish, d)
        span = open_attempt(d, body, operation)
        try:
            with current(span):
                result = await fetch(d)
        except BaseException as error:
            fail_attempt(span, error)
            raise
        usage = usage_of(result)
        _report_whole(finish, d, started, usage, rate_limit_of(result), load)
        if span is not None:
            answer = AnswerTrace()
            answer.observe(answer_of(result))
            finish_attempt(span, d, answer, usage)
        return result

    return attempt


async def complete(
    plan: Sequence[Deployment],
    body: JSON,
    log: AttemptLog,
    observer: Any = NULL_OBSERVER,
    hedge: HedgeSettings = NO_HEDGE,
    retry: RetrySettings = DEFAULT_RETRY,
) -> tuple[ChatResult, Deployment]:
    attempt = _timed(
        observer,
        lambda d: d.adapter.chat(upstream_call(d, body)),
        lambda r: r.usage,
        lambda r: r.rate_limit,
        ("chat", body, lambda r: r.body),
    )
    return await run_plan(plan, log, attempt, observer, hedge, retry)


async def embed(
    plan: Sequence[Deployment],
    body: JSON,
    log: AttemptLog,
    observer: Any = NULL_OBSERVER,
    retry: RetrySettings = DEFAULT_RETRY,
) -> tuple[EmbeddingsResult, Deployment]:
    attempt = _timed(
        observer,
        lambda d: d.adapter.embeddings(upstream_call(d, body)),
        lambda r: r.usage,
        lambda r: r.rate_limit,
        ("embeddings", body, lambda r: r.body),
    )
    return await run_plan(plan, log, attempt, observer, NO_HEDGE, retry)


async def _open_until_content(deployment: Deployment, body: JSON, observer: Any) -> StartedStream:
    started_at = time.monotonic()
    load = load_at_start(observer, deployment)
    span = open_attempt(deployment, body, "chat")
    try:
        with current(span):
            stream = await deployment.adapter.chat_stream(upstream_call(deployment, body))
    except BaseException as error:
        fail_attempt(span, error)
        raise
    answer = AnswerTrace() if span is not None else None
    if span is not None:
        span.set_attribute("gateway.time_to_first_byte_ms", (time.monotonic() - started_at) * 1000)
    iterator = stream.__aiter__()
    preamble: list[JSON] = []
    try:
        while True:
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                break
            preamble.append(chunk)
            if answer is not None:
                answer.observe(chunk)
            if carries_content(chunk):
                break
    except BaseException as error:
        fail_attempt(span, error)
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
        await stream.aclose()
        raise
    first_token_at = time.monotonic()
    if span is not None:
        span.set_attribute("gateway.time_to_first_token_ms", (first_token_at - started_at) * 1000)
    return StartedStream(
        deployment,
        preamble,
        iterator,
        stream.rate_limit,
        started_at,
        first_token_at,
        observer,
        span,
        answer,
        load,
    )


async def start_stream(
    plan: Sequence[Deployment],
    body: JSON,
    log: AttemptLog,
    observer: Any = NULL_OBSERVER,
    hedge: HedgeSettings = NO_HEDGE,
    retry: RetrySettings = DEFAULT_RETRY,
) -> StartedStream:
    finish = observer if hasattr(observer, "finished") else None
    started, _ = await run_plan(
        plan, log, lambda d: _open_until_content(d, body, finish), observer, hedge, retry
    )
    return started
