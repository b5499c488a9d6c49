"""The executor on its own: what one attempt is for a completion, an embedding and a stream, which
chunks count as content, the body each deployment is sent, and the timings reported to the router.

The adapters here are small scripted stand-ins (the contract and end-to-end tests drive the real
ones over HTTP); the executor's clock is a hand-moved one, so time to first token and throughput
are exact figures. Fast enough to judge each mutant of router_policies/executor.py with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from providers.errors import ProviderError, UpstreamProtocolError, UpstreamUnavailable
from providers.responses_wire import RESPONSES_FIELD
from providers.types import ChatResult, EmbeddingsResult, RateLimitInfo, Timeouts, UpstreamCall, Usage
from router_policies.attempts import AllAttemptsFailed, AttemptLog
from router_policies.deployment import Deployment
from router_policies.executor import (
    StartedStream,
    carries_content,
    complete,
    embed,
    start_stream,
    upstream_call,
)
from router_policies.runner import NullObserver, RetrySettings
from tests.conftest import Collector, HandClock

ROLE = {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}
NO_RETRY = RetrySettings(rounds=1)


def text(t: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": t}}]}


def usage_chunk(completion: int) -> dict[str, Any]:
    return {
        "choices": [],
        "usage": {"prompt_tokens": 7, "completion_tokens": completion, "total_tokens": 7 + completion},
    }


class Stream:
    """An open upstream stream: yields `chunks` (an exception in the list is raised there),
    moving the hand_clock by `gap_s` before each; records that it was closed."""

    def __init__(
        self, chunks: list[Any], hand_clock: HandClock | None, gap_s: float, rate_limit: RateLimitInfo
    ) -> None:
        self.chunks = list(chunks)
        self.clock = hand_clock
        self.gap_s = gap_s
        self.rate_limit = rate_limit
        self.closed = False
        self.iterator_closed = False

    def __aiter__(self) -> _Chunks:
        return _Chunks(self)

    async def aclose(self) -> None:
        self.closed = True


class _Chunks:
    """A stream's iterator, closed on its own (as an adapter's generator is)."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> Any:
        stream = self.stream
        if not stream.chunks:
            raise StopAsyncIteration
        chunk = stream.chunks.pop(0)
        if stream.clock is not None:
            stream.clock.now += stream.gap_s
        if isinstance(chunk, BaseException):
            raise chunk
        return chunk

    async def aclose(self) -> None:
        self.stream.iterator_closed = True


class Adapter:
    """A deployment's adapter: answers, or raises, what its test scripted; keeps each call."""

    def __init__(
        self,
        answer: Any = None,
        hand_clock: HandClock | None = None,
        takes_s: float = 0.0,
        gap_s: float = 0.0,
    ) -> None:
        self.answer = answer
        self.clock = hand_clock
        self.takes_s = takes_s
        self.gap_s = gap_s
        self.calls: list[UpstreamCall] = []
        self.streams: list[Stream] = []

    async def _respond(self, call: UpstreamCall) -> Any:
        self.calls.append(call)
        if self.clock is not None:
            self.clock.now += self.takes_s
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer

    async def chat(self, call: UpstreamCall) -> Any:
        return await self._respond(call)

    async def embeddings(self, call: UpstreamCall) -> Any:
        return await self._respond(call)

    async def chat_stream(self, call: UpstreamCall) -> Stream:
        chunks = await self._respond(call)
        stream = Stream(chunks, self.clock, self.gap_s, LIMITS)
        self.streams.append(stream)
        return stream


LIMITS = RateLimitInfo(limit_requests=100, remaining_requests=99)


def dep(name: str, adapter: Adapter, responses_api: bool = False) -> Deployment:
    return Deployment(name, f"{name}-model", adapter, 1.0, 2.0, responses_api=responses_api)  # type: ignore[arg-type]


class Observer(NullObserver):
    """Records what the executor reports; keeps no count of answers in flight."""

    def __init__(self) -> None:
        self.finished_with: list[tuple[str, float, float | None, RateLimitInfo | None, Usage | None]] = []
        self.loads: list[int | None] = []  # the other answers in flight as each attempt started
        self.failures: list[tuple[str, ProviderError]] = []

    def failed(self, d: Deployment, error: ProviderError) -> None:
        self.failures.append((d.provider, error))

    def finished(
        self,
        d: Deployment,
        ttft_ms: float,
        tokens_per_s: float | None,
        rate_limit: RateLimitInfo | None,
        usage: Usage | None = None,
        in_flight: int | None = None,
    ) -> None:
        self.finished_with.append((d.provider, ttft_ms, tokens_per_s, rate_limit, usage))
        self.loads.append(in_flight)


class Counting(Observer):
    """An observer that counts the answers in flight on each deployment, this attempt's included."""

    def __init__(self, in_flight: int) -> None:
        super().__init__()
        self.count = {"a": in_flight}

    def in_flight(self, d: Deployment) -> int:
        return self.count[d.provider]


BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


# --------------------------------------------------------------------------- what counts as content


@pytest.mark.parametrize(
    ("chunk", "content"),
    [
        ({}, False),
        ({"choices": []}, False),
        ({"choices": [], "usage": None}, False),
        ({"choices": [], "usage": {"completion_tokens": 1}}, True),
        ({"usage": {}}, True),
        ({"choices": ["odd"]}, True),
        (ROLE, False),
        ({"choices": [{"delta": {"role": "assistant", "content": ""}}]}, False),
        ({"choices": [{"delta": None}]}, False),
        ({"choices": [{}]}, False),
        ({"choices": [{"delta": {}, "finish_reason": "stop"}]}, True),
        ({"choices": [{"delta": {}, "finish_reason": None}]}, False),
        ({"choices": [{"delta": {"content": "Hi"}}]}, True),
        ({"choices": [{"delta": {"tool_calls": [{"index": 0}]}}]}, True),
        ({"choices": [{"delta": {"function_call": {"name": "f"}}}]}, True),
        ({"choices": [{"delta": {"refusal": "no"}}]}, True),
        ({"choices": [{"delta": {"reasoning": "hmm"}}]}, True),
        ({"choices": [{"delta": {"reasoning_content": "hmm"}}]}, True),
        ({"choices": [{"delta": {"other": "x"}}]}, False),
    ],
)
def test_carries_content(chunk: dict[str, Any], content: bool):
    assert carries_content(chunk) is content


# --------------------------------------------------------------------------- the body sent upstream


def test_each_deployment_gets_the_body_with_its_own_model_name_and_its_timeouts():
    timeouts = Timeouts(connect_timeout_ms=1.0, first_byte_timeout_ms=2.0)
    d = Deployment("p", "upstream-name", None, 1.0, 2.0, timeouts=timeouts)  # type: ignore[arg-type]
    body = {**BODY, RESPONSES_FIELD: {"store": True}}
    call = upstream_call(d, body)
    assert (
        call.body == {**BODY, "model": "upstream-name"} and call.timeouts is timeouts and call.headers == {}
    )
    assert body["model"] == "m" and RESPONSES_FIELD in body  # the client's body is left as it was
    native = Deployment("p", "upstream-name", None, 1.0, 2.0, responses_api=True)  # type: ignore[arg-type]
    kept = upstream_call(native, body, {"x-trace": "1"})
    assert kept.body == {**body, "model": "upstream-name"} and kept.headers == {"x-trace": "1"}


# --------------------------------------------------------------------------- whole answers


def test_a_completion_fails_over_and_reports_its_latency_and_throughput(hand_clock: HandClock):
    usage = Usage(prompt_tokens=10, completion_tokens=50)
    answer = ChatResult({"id": "x"}, usage, LIMITS)
    broken = Adapter(UpstreamUnavailable("down", provider="a", status=503), hand_clock, takes_s=0.1)
    good = Adapter(answer, hand_clock, takes_s=0.5)
    observer = Observer()
    log = AttemptLog(started_at=hand_clock.now)
    result, chosen = asyncio.run(complete([dep("a", broken), dep("b", good)], BODY, log, observer))
    assert result is answer and chosen.provider == "b"
    assert [c.body["model"] for c in broken.calls + good.calls] == ["a-model", "b-model"]
    assert observer.finished_with == [("b", pytest.approx(500.0), pytest.approx(100.0), LIMITS, usage)]
    assert [p for p, _ in observer.failures] == ["a"]


@pytest.mark.parametrize(
    ("usage", "takes_s", "tps"),
    [
        (None, 0.25, None),
        (Usage(prompt_tokens=3, completion_tokens=0), 0.25, None),
        (Usage(prompt_tokens=3, completion_tokens=5), 0.0, None),
        (Usage(prompt_tokens=3, completion_tokens=5), 0.25, 20.0),
    ],
)
def test_a_whole_answer_has_a_throughput_only_with_tokens_and_time(
    hand_clock: HandClock, usage, takes_s, tps
):
    observer = Observer()
    adapter = Adapter(ChatResult({}, usage, LIMITS), hand_clock, takes_s=takes_s)
    asyncio.run(complete([dep("a", adapter)], BODY, AttemptLog(), observer))
    [(_, ttft_ms, got_tps, _, got_usage)] = observer.finished_with
    assert ttft_ms == pytest.approx(takes_s * 1000) and got_tps == tps and got_usage is usage


def test_an_observer_without_finished_is_not_told_of_timings(hand_clock: HandClock):
    adapter = Adapter(ChatResult({}, Usage(1, 1), LIMITS), hand_clock, takes_s=0.1)
    result, _ = asyncio.run(complete([dep("a", adapter)], BODY, AttemptLog()))  # the null observer
    assert result.usage == Usage(1, 1)


def test_embeddings_go_to_the_embeddings_endpoint_fail_over_and_are_never_hedged(hand_clock: HandClock):
    usage = Usage(prompt_tokens=12, completion_tokens=0)
    answer = EmbeddingsResult({"data": []}, usage, LIMITS)
    broken = Adapter(UpstreamUnavailable("down", provider="a", status=503), hand_clock, takes_s=0.2)
    good = Adapter(answer, hand_clock, takes_s=0.3)
    observer = Observer()
    body = {"model": "e", "input": "hello"}
    result, chosen = asyncio.run(
        embed([dep("a", broken), dep("b", good)], body, AttemptLog(), observer, retry=NO_RETRY)
    )
    assert result is answer and chosen.provider == "b"
    assert good.calls[0].body == {"model": "b-model", "input": "hello"}
    assert observer.finished_with == [("b", pytest.approx(300.0), None, LIMITS, usage)]


# --------------------------------------------------------------------------- streams


def test_a_stream_is_held_until_content_then_handed_over_and_timed_on_close(hand_clock: HandClock):
    chunks = [ROLE, text("Hel"), text("lo"), usage_chunk(40)]
    adapter = Adapter(chunks, hand_clock, takes_s=0.1, gap_s=0.2)
    observer = Observer()

    async def run() -> tuple[StartedStream, list[Any]]:
        started = await start_stream([dep("a", adapter)], BODY, AttemptLog(), observer)
        assert observer.finished_with == []  # nothing reported before the stream is over
        rest = [chunk async for chunk in started.rest]
        await started.aclose()
        await started.aclose()  # reported once however often it is closed
        return started, rest

    started, rest = asyncio.run(run())
    assert started.preamble == [ROLE, text("Hel")] and rest == [text("lo"), usage_chunk(40)]
    assert started.deployment.provider == "a" and started.rate_limit is LIMITS
    assert adapter.calls[0].body["model"] == "a-model"
    # opened after 0.1 s, the role at 0.3 s, content at 0.5 s, the end at 0.9 s: 40 tokens in 0.4 s
    assert observer.finished_with == [
        (
            "a",
            pytest.approx(500.0),
            pytest.approx(100.0),
            LIMITS,
            Usage(prompt_tokens=7, completion_tokens=40),
        )
    ]
    assert adapter.streams[0].iterator_closed


def test_an_upstream_that_dies_after_its_role_chunk_is_failed_over_and_closed(hand_clock: HandClock):
    dies = Adapter([ROLE, UpstreamProtocolError("cut", provider="a")], hand_clock, gap_s=0.1)
    good = Adapter([ROLE, text("ok"), usage_chunk(1)], hand_clock, gap_s=0.1)
    observer = Observer()

    async def run() -> StartedStream:
        started = await start_stream(
            [dep("a", dies), dep("b", good)], BODY, AttemptLog(), observer, retry=NO_RETRY
        )
        assert dies.streams[0].closed and dies.streams[0].iterator_closed  # closed as it failed
        await started.aclose()
        return started

    started = asyncio.run(run())
    assert started.deployment.provider == "b" and started.preamble == [ROLE, text("ok")]
    assert dies.streams[0].closed and dies.streams[0].iterator_closed
    assert [p for p, _ in observer.failures] == ["a"]


def test_a_stream_that_ends_before_any_content_is_handed_over_as_it_is(hand_clock: HandClock):
    adapter = Adapter([ROLE], hand_clock, gap_s=0.1)

    async def run() -> tuple[StartedStream, list[Any]]:
        started = await start_stream([dep("a", adapter)], BODY, AttemptLog(), Observer())
        rest = [chunk async for chunk in started.rest]
        await started.aclose()
        return started, rest

    started, rest = asyncio.run(run())
    assert started.preamble == [ROLE] and rest == []


def test_a_failure_after_content_is_reported_as_that_failure_not_a_finish(hand_clock: HandClock):
    error = UpstreamProtocolError("died mid-way", provider="a")
    adapter = Adapter([text("partial"), error], hand_clock, gap_s=0.1)
    observer = Observer()

    async def run() -> None:
        started = await start_stream([dep("a", adapter)], BODY, AttemptLog(), observer)
        with pytest.raises(UpstreamProtocolError):
            async for _ in started.rest:
                pass
        await started.aclose()

    asyncio.run(run())
    assert observer.finished_with == [] and observer.failures == [("a", error)]


@pytest.mark.parametrize(
    ("chunks", "gap_s"),
    [
        ([text("a"), text("b")], 0.1),  # no usage: no token count
        ([text("a"), usage_chunk(0)], 0.1),  # no tokens
        ([text("a"), usage_chunk(9)], 0.0),  # no time between first token and end
    ],
)
def test_a_stream_has_a_throughput_only_with_tokens_and_time(hand_clock: HandClock, chunks, gap_s):
    adapter = Adapter(chunks, hand_clock, gap_s=gap_s)
    observer = Observer()

    async def run() -> None:
        started = await start_stream([dep("a", adapter)], BODY, AttemptLog(), observer)
        async for _ in started.rest:
            pass
        await started.aclose()

    asyncio.run(run())
    [(_, _, tps, _, _)] = observer.finished_with
    assert tps is None


def test_a_stream_closed_early_reports_no_throughput_and_closes_the_upstream(hand_clock: HandClock):
    adapter = Adapter([text("a"), text("b"), usage_chunk(5)], hand_clock, gap_s=0.1)
    observer = Observer()

    async def run() -> None:
        started = await start_stream([dep("a", adapter)], BODY, AttemptLog(), observer)
        assert not adapter.streams[0].iterator_closed
        await started.rest.__anext__()
        await started.aclose()  # the client went away before reading on
        assert adapter.streams[0].iterator_closed and started.rest.ag_frame is None  # both closed, at once

    asyncio.run(run())
    assert observer.finished_with == [("a", pytest.approx(100.0), None, LIMITS, None)]


def test_without_an_observer_that_takes_timings_a_stream_reports_nothing(hand_clock: HandClock):
    adapter = Adapter([text("a"), usage_chunk(5)], hand_clock, gap_s=0.1)

    async def run() -> StartedStream:
        started = await start_stream([dep("a", adapter)], BODY, AttemptLog())
        async for _ in started.rest:
            pass
        await started.aclose()
        return started

    assert asyncio.run(run()).preamble == [text("a")]


# --------------------------------------------------------------------------- the load each answer met


@pytest.mark.parametrize(("in_flight", "load"), [(3, 2), (1, 0), (0, 0)])
def test_each_answer_is_reported_with_the_other_answers_in_flight_when_it_started(
    hand_clock: HandClock, in_flight: int, load: int
):
    whole, streamed = Counting(in_flight), Counting(in_flight)
    adapter = Adapter(ChatResult({}, Usage(1, 1), LIMITS), hand_clock, takes_s=0.1)
    asyncio.run(complete([dep("a", adapter)], BODY, AttemptLog(), whole))
    embeddings = Adapter(EmbeddingsResult({}, Usage(1, 0), LIMITS), hand_clock, takes_s=0.1)
    asyncio.run(embed([dep("a", embeddings)], {"input": "x"}, AttemptLog(), whole))
    stream = Adapter([text("a"), usage_chunk(2)], hand_clock, gap_s=0.1)

    async def run() -> None:
        started = await start_stream([dep("a", stream)], BODY, AttemptLog(), streamed)
        async for _ in started.rest:
            pass
        await started.aclose()

    asyncio.run(run())
    assert whole.loads == [load, load] and streamed.loads == [load]


def test_an_observer_that_keeps_no_count_is_told_no_load(hand_clock: HandClock):
    observer = Observer()
    adapter = Adapter(ChatResult({}, Usage(1, 1), LIMITS), hand_clock, takes_s=0.1)
    asyncio.run(complete([dep("a", adapter)], BODY, AttemptLog(), observer))
    assert observer.loads == [None]


# --------------------------------------------------------------------------- each attempt's span


def traced(spans: Collector, run: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """Run `run` inside a recording request span; its result and the finished attempt spans by name."""
    with trace.get_tracer("tests").start_as_current_span("request") as parent:
        result = run()
    ended = [s for s in spans.of_trace(parent.get_span_context().trace_id) if s.name != "request"]
    return result, {s.name: s for s in ended}


def test_a_whole_answer_s_attempts_are_spans_with_request_answer_and_cost(
    spans: Collector, hand_clock: HandClock
):
    usage = Usage(prompt_tokens=1000, completion_tokens=500)
    body = {**BODY, "max_tokens": 64, "temperature": 0.5, "top_p": 0.9}
    answer = ChatResult(
        {"id": "chat-1", "model": "b-served", "choices": [{"finish_reason": "stop"}]}, usage, LIMITS
    )
    broken = Adapter(UpstreamUnavailable("down", provider="a", status=503), hand_clock, takes_s=0.1)
    good = Adapter(answer, hand_clock, takes_s=0.2)
    plan = [dep("a", broken), dep("b", good)]
    _, by_name = traced(
        spans, lambda: asyncio.run(complete(plan, body, AttemptLog(), Observer(), retry=NO_RETRY))
    )
    failed, ok = by_name["chat a-model"], by_name["chat b-model"]
    assert failed.kind == SpanKind.CLIENT and ok.kind == SpanKind.CLIENT
    assert dict(failed.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "a",
        "gen_ai.provider.name": "a",
        "gen_ai.request.model": "a-model",
        "gateway.deployment": "a/a-model",
        "gen_ai.request.max_tokens": 64,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.top_p": 0.9,
        "error.type": "unavailable",
        "gateway.outcome": "unavailable",
        "http.response.status_code": 503,
    }
    assert failed.status.status_code == StatusCode.ERROR
    attributes = dict(ok.attributes or {})
    assert {k: attributes[k] for k in attributes if not k.startswith("gen_ai.request")} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": "b",
        "gen_ai.provider.name": "b",
        "gateway.deployment": "b/b-model",
        "gateway.outcome": "ok",
        "gen_ai.response.id": "chat-1",
        "gen_ai.response.model": "b-served",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 500,
        "gateway.cost_usd": pytest.approx(0.002),  # 1000 at $1/M and 500 at $2/M
    }


def test_an_embedding_attempt_is_an_embeddings_span(spans: Collector, hand_clock: HandClock):
    answer = EmbeddingsResult({"data": [], "model": "e-served"}, Usage(prompt_tokens=3), LIMITS)
    adapter = Adapter(answer, hand_clock, takes_s=0.1)
    _, by_name = traced(spans, lambda: asyncio.run(embed([dep("e", adapter)], {"input": "x"}, AttemptLog())))
    attributes = dict(by_name["embeddings e-model"].attributes or {})
    assert attributes["gen_ai.operation.name"] == "embeddings" and attributes["gateway.outcome"] == "ok"
    assert attributes["gen_ai.response.model"] == "e-served" and attributes["gen_ai.usage.input_tokens"] == 3


def test_a_stream_s_span_has_its_first_byte_and_first_token_times_and_ends_on_close(
    spans: Collector, hand_clock: HandClock
):
    chunks = [
        {"id": "s-1", "model": "a-served", **ROLE},
        text("Hi"),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        usage_chunk(4),
    ]
    adapter = Adapter(chunks, hand_clock, takes_s=0.05, gap_s=0.1)

    async def run() -> None:
        started = await start_stream([dep("a", adapter)], BODY, AttemptLog(), Observer())
        async for _ in started.rest:
            pass
        await started.aclose()
        await started.aclose()  # the span ends once

    _, by_name = traced(spans, lambda: asyncio.run(run()))
    attributes = dict(by_name["chat a-model"].attributes or {})
    assert attributes["gateway.time_to_first_byte_ms"] == pytest.approx(50.0)
    assert attributes["gateway.time_to_first_token_ms"] == pytest.approx(250.0)  # the role chunk is no token
    assert (attributes["gen_ai.response.id"], attributes["gen_ai.response.model"]) == ("s-1", "a-served")
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert (attributes["gen_ai.usage.output_tokens"], attributes["gateway.outcome"]) == (4, "ok")


def test_a_stream_that_fails_before_or_after_content_ends_its_span_as_that_failure(
    spans: Collector, hand_clock: HandClock
):
    before = Adapter([ROLE, UpstreamProtocolError("cut", provider="a")], hand_clock, gap_s=0.1)
    after = Adapter([text("partial"), UpstreamProtocolError("died", provider="b")], hand_clock, gap_s=0.1)
    refused = Adapter(UpstreamUnavailable("down", provider="c", status=503), hand_clock)

    async def run() -> None:
        plan = [dep("c", refused), dep("a", before), dep("b", after)]
        started = await start_stream(plan, BODY, AttemptLog(), Observer(), retry=NO_RETRY)
        with pytest.raises(UpstreamProtocolError):
            async for _ in started.rest:
                pass
        await started.aclose()

    _, by_name = traced(spans, lambda: asyncio.run(run()))
    outcomes = {name: dict(s.attributes or {}).get("gateway.outcome") for name, s in by_name.items()}
    assert outcomes == {
        "chat c-model": "unavailable",
        "chat a-model": "protocol_error",
        "chat b-model": "protocol_error",
    }
    assert all(s.status.status_code == StatusCode.ERROR for s in by_name.values())
    assert "gateway.time_to_first_token_ms" not in dict(by_name["chat a-model"].attributes or {})


def test_a_failed_attempt_is_not_retried_when_the_model_allows_one_round(hand_clock: HandClock):
    down = Adapter(UpstreamUnavailable("down", provider="a", status=503, retry_after_s=0.01), hand_clock)
    for run in (
        lambda: complete([dep("a", down)], BODY, AttemptLog(), retry=NO_RETRY),
        lambda: embed([dep("a", down)], BODY, AttemptLog(), retry=NO_RETRY),
        lambda: start_stream([dep("a", down)], BODY, AttemptLog(), retry=NO_RETRY),
    ):
        with pytest.raises(AllAttemptsFailed):
            asyncio.run(run())
    assert len(down.calls) == 3  # once each, not twice (two rounds is the default)


def test_the_attempt_s_span_is_current_while_the_adapter_is_called(spans: Collector, hand_clock: HandClock):
    seen: list[str] = []

    class Watching(Adapter):
        async def _respond(self, call: UpstreamCall) -> Any:
            seen.append(getattr(trace.get_current_span(), "name", "?"))
            return await super()._respond(call)

    whole = Watching(ChatResult({}, Usage(1, 1), LIMITS), hand_clock)
    streamed = Watching([text("a")], hand_clock)

    async def run() -> None:
        await complete([dep("a", whole)], BODY, AttemptLog())
        started = await start_stream([dep("b", streamed)], BODY, AttemptLog())
        await started.aclose()

    traced(spans, lambda: asyncio.run(run()))
    assert seen == ["chat a-model", "chat b-model"]  # so the transport sends its traceparent
