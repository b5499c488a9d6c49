"""The provider contract over every OpenAI-compatible adapter and transport, against recorded wire formats.

What every adapter must make of its provider's answers, whatever the provider:
an OpenAI-shaped body with usage; stream chunks in order and complete, decoded
whatever the write boundaries and line endings; the provider's quirks normalised
(Groq's usage lifted from `x_groq`, Perplexity's citations as `url_citation`
annotations); rate-limit headers parsed; and each failure raised as its typed error.
Known gaps in `providers/`, if any, are listed in `KNOWN_GAPS`: they run as strict xfails,
so fixing one turns its test red until the entry is removed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from providers.errors import (
    ContextLengthExceeded,
    ProviderError,
    UpstreamAuthError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamStreamError,
)
from providers.types import JSON, RateLimitInfo, UpstreamCall, Usage
from tests.contract.recordings import (
    API_KEY,
    OPENAI_COMPATIBLE,
    TIMEOUTS,
    AdapterFactory,
    chat_body,
    recording,
    sse_payloads,
)
from tests.contract.replay import ReplayServer, Reply, assert_aclose_hangs_up
from tests.contract.streams import (
    WRITES,
    assert_split_as_asked,
    collect,
    delta_text,
    last_usage,
    read_split,
    without_annotations,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

KNOWN_GAPS: dict[tuple[str, str], str] = {}
ERRORS: dict[str, type[ProviderError]] = {
    "rate_limited": UpstreamRateLimited,
    "context_length": ContextLengthExceeded,
    "unauthorized": UpstreamAuthError,
}
ERROR_CASES = [(p, s) for p in OPENAI_COMPATIBLE for s in ERRORS if recording(p).has(s)]


def known_gap(request: pytest.FixtureRequest, provider: str, check: str) -> None:
    reason = KNOWN_GAPS.get((provider, check))
    if reason:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


def assert_rate_limit(info: RateLimitInfo, expected: dict[str, Any]) -> None:
    if not expected:
        assert info.is_empty(), info
    for name, value in expected.items():
        assert getattr(info, name) == pytest.approx(value), name


# --------------------------------------------------------------------------- chat


@pytest.mark.parametrize("provider", OPENAI_COMPATIBLE)
async def test_chat_is_openai_shaped_with_usage(
    provider: str, make_adapter: AdapterFactory, replay: ReplayServer
) -> None:
    rec = recording(provider)
    expect = rec.expect["chat"]
    adapter, url = make_adapter(provider, rec.reply("chat"))

    result = await adapter.chat(UpstreamCall(chat_body(rec.model), TIMEOUTS))

    body = result.body
    assert body["object"] == "chat.completion"
    assert isinstance(body["id"], str) and body["id"]
    assert isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == expect["content"]
    assert result.usage == Usage(expect["prompt_tokens"], expect["completion_tokens"])
    assert result.status == 200

    [served] = replay.served(url)
    assert (served.method, served.path) == ("POST", rec.base_path + "/chat/completions")
    assert served.headers["authorization"] == f"Bearer {API_KEY}"
    assert served.headers["content-type"] == "application/json"
    assert orjson.loads(served.body) == chat_body(rec.model)


@pytest.mark.parametrize("provider", OPENAI_COMPATIBLE)
async def test_chat_rate_limit_headers(
    provider: str, make_adapter: AdapterFactory, request: pytest.FixtureRequest
) -> None:
    rec = recording(provider)
    expected = rec.expect["chat"]["rate_limit"]
    if expected:
        known_gap(request, provider, "rate_limit")
    adapter, _ = make_adapter(provider, rec.reply("chat"))

    result = await adapter.chat(UpstreamCall(chat_body(rec.model), TIMEOUTS))

    assert_rate_limit(result.rate_limit, expected)


async def test_perplexity_citations_become_url_citation_annotations(make_adapter: AdapterFactory) -> None:
    rec = recording("perplexity")
    raw = orjson.loads(rec.reply("chat").body)
    adapter, _ = make_adapter("perplexity", rec.reply("chat"))

    result = await adapter.chat(UpstreamCall(chat_body(rec.model), TIMEOUTS))

    titles = {r["url"]: r["title"] for r in raw["search_results"]}
    annotations = result.body["choices"][0]["message"]["annotations"]
    assert [a["type"] for a in annotations] == ["url_citation"] * len(raw["citations"])
    assert [a["url_citation"]["url"] for a in annotations] == raw["citations"]
    assert [a["url_citation"]["title"] for a in annotations] == [titles[u] for u in raw["citations"]]
    assert result.body["citations"] == raw["citations"]
    assert result.body["search_results"] == raw["search_results"]


# --------------------------------------------------------------------------- stream


@pytest.mark.parametrize("writes", list(WRITES))
@pytest.mark.parametrize("provider", OPENAI_COMPATIBLE)
async def test_stream_chunks_in_order_and_complete(
    provider: str,
    writes: str,
    make_adapter: AdapterFactory,
    replay: ReplayServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec = recording(provider)
    expect = rec.expect["stream"]
    recorded = sse_payloads(rec.reply("stream").body)
    adapter, url = make_adapter(provider, WRITES[writes](rec.reply("stream")))
    call = UpstreamCall(chat_body(rec.model, stream=True), TIMEOUTS)

    chunks, feeds = await read_split(lambda: adapter.chat_stream(call), writes, monkeypatch)

    assert len(chunks) == expect["chunks"] == len(recorded)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert {c["id"] for c in chunks} == {recorded[0]["id"]}
    assert [without_annotations(c["choices"]) for c in chunks] == [r["choices"] for r in recorded]
    assert delta_text(chunks) == expect["content"]
    finishes = [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch.get("finish_reason")]
    assert finishes == ["stop"]
    assert last_usage(chunks) == Usage(expect["prompt_tokens"], expect["completion_tokens"])

    served = replay.served(url)[-1]
    assert served.path == rec.base_path + "/chat/completions"
    assert served.headers["accept"] == "text/event-stream"
    assert orjson.loads(served.body) == chat_body(rec.model, stream=True)
    assert_split_as_asked(writes, feeds, served.writes, len(recorded))


@pytest.mark.parametrize("provider", OPENAI_COMPATIBLE)
async def test_stream_rate_limit_headers(
    provider: str, make_adapter: AdapterFactory, request: pytest.FixtureRequest
) -> None:
    rec = recording(provider)
    expected = rec.expect["stream"]["rate_limit"]
    if expected:
        known_gap(request, provider, "rate_limit")
    adapter, _ = make_adapter(provider, rec.reply("stream"))

    stream = await adapter.chat_stream(UpstreamCall(chat_body(rec.model, stream=True), TIMEOUTS))
    try:
        assert_rate_limit(stream.rate_limit, expected)
    finally:
        await stream.aclose()


async def test_groq_stream_usage_is_lifted_from_x_groq(make_adapter: AdapterFactory) -> None:
    rec = recording("groq")
    recorded = sse_payloads(rec.reply("stream").body)
    assert all("usage" not in r for r in recorded), "the recording must carry usage only in x_groq"
    adapter, _ = make_adapter("groq", rec.reply("stream").with_writes())

    chunks = await collect(
        await adapter.chat_stream(UpstreamCall(chat_body(rec.model, stream=True), TIMEOUTS))
    )

    assert chunks[-1]["usage"] == recorded[-1]["x_groq"]["usage"]
    assert chunks[-1]["x_groq"] == recorded[-1]["x_groq"]
    assert all("usage" not in c for c in chunks[:-1])


async def test_perplexity_stream_annotates_citations_once(make_adapter: AdapterFactory) -> None:
    rec = recording("perplexity")
    recorded = sse_payloads(rec.reply("stream").body)
    adapter, _ = make_adapter("perplexity", rec.reply("stream").with_writes())

    chunks = await collect(
        await adapter.chat_stream(UpstreamCall(chat_body(rec.model, stream=True), TIMEOUTS))
    )

    annotated = [i for i, c in enumerate(chunks) if "annotations" in c["choices"][0]["delta"]]
    assert annotated == [0]
    annotations = chunks[0]["choices"][0]["delta"]["annotations"]
    titles = {r["url"]: r["title"] for r in recorded[0]["search_results"]}
    assert [a["type"] for a in annotations] == ["url_citation"] * len(recorded[0]["citations"])
    assert [(a["url_citation"]["url"], a["url_citation"]["title"]) for a in annotations] == [
        (u, titles[u]) for u in recorded[0]["citations"]
    ]
    assert all(c["citations"] == r["citations"] for c, r in zip(chunks, recorded, strict=True))


async def test_vllm_error_event_mid_stream_raises_stream_error(make_adapter: AdapterFactory) -> None:
    rec = recording("vllm")
    expect = rec.expect["stream_error"]
    adapter, _ = make_adapter("vllm", rec.reply("stream_error").with_writes())
    stream = await adapter.chat_stream(UpstreamCall(chat_body(rec.model, stream=True), TIMEOUTS))
    received: list[JSON] = []

    with pytest.raises(UpstreamStreamError) as caught:
        async with asyncio.timeout(10):
            async for chunk in stream:
                received.append(chunk)

    assert delta_text(received) == expect["content"]
    assert caught.value.message == expect["message"]
    assert caught.value.provider == "vllm"


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("call", ["chat", "chat_stream"])
@pytest.mark.parametrize(("provider", "scenario"), ERROR_CASES)
async def test_error_status_raises_typed_error(
    provider: str, scenario: str, call: str, make_adapter: AdapterFactory, request: pytest.FixtureRequest
) -> None:
    known_gap(request, provider, scenario)
    rec = recording(provider)
    reply = rec.reply(scenario)
    adapter, _ = make_adapter(provider, reply)
    upstream_call = UpstreamCall(chat_body(rec.model, stream=call == "chat_stream"), TIMEOUTS)

    with pytest.raises(ProviderError) as caught:
        async with asyncio.timeout(10):
            await getattr(adapter, call)(upstream_call)

    error = caught.value
    assert type(error) is ERRORS[scenario]
    assert isinstance(error, UpstreamRateLimited | ContextLengthExceeded | UpstreamAuthError)
    assert error.status == reply.status
    assert error.provider == provider
    assert error.retryable is True
    if scenario == "rate_limited":
        assert error.retry_after_s == rec.expect["rate_limited"]["retry_after_s"]
    assert API_KEY not in f"{error} {error.message!r} {error!r}"


async def test_auth_error_never_repeats_the_key_even_if_the_upstream_echoes_it(
    transport_kind: str, make_adapter: AdapterFactory
) -> None:
    def echo(headers: dict[str, str]) -> bytes:
        key = headers["authorization"].removeprefix("Bearer ")
        return orjson.dumps({"error": {"message": f"Incorrect API key provided: {key}.", "code": 401}})

    reply = Reply(401, (("content-type", "application/json"),), b"", body_from_request=echo)
    adapter, _ = make_adapter("openai", reply)

    with pytest.raises(UpstreamAuthError) as caught:
        await adapter.chat(UpstreamCall(chat_body("gpt-4o-mini"), TIMEOUTS))

    assert API_KEY not in f"{caught.value} {caught.value.message} {caught.value!r} {caught.value.args}"


GARBAGE_CHAT = {
    "an HTML error page": (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"),
    "JSON that is not an object": (b'["choices"]', "application/json"),
    "JSON without choices": (b'{"id": "x", "object": "chat.completion"}', "application/json"),
    "truncated JSON": (b'{"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"ro', "application/json"),
}


@pytest.mark.parametrize("garbage", list(GARBAGE_CHAT))
@pytest.mark.parametrize("provider", OPENAI_COMPATIBLE)
async def test_garbage_chat_body_raises_protocol_error(
    provider: str, garbage: str, make_adapter: AdapterFactory
) -> None:
    body, content_type = GARBAGE_CHAT[garbage]
    adapter, _ = make_adapter(provider, Reply(200, (("content-type", content_type),), body))

    with pytest.raises(UpstreamProtocolError) as caught:
        await adapter.chat(UpstreamCall(chat_body(recording(provider).model), TIMEOUTS))

    assert caught.value.provider == provider
    assert caught.value.retryable is True


def _cut_before_finish(body: bytes) -> bytes:
    """The recorded stream cut inside its last event that carries no finish_reason."""
    cut_at = body.index(b'"finish_reason":"stop"') if b'"finish_reason":"stop"' in body else len(body) // 2
    start = body.rindex(b"data: ", 0, cut_at)
    return body[: start + 20]


def _garbage_event(body: bytes) -> bytes:
    first_event_end = body.index(b"\n\n") + 2
    return body[:first_event_end] + b"data: {not json at all\n\n" + body[first_event_end:]


GARBAGE_STREAM = {"a stream cut short": _cut_before_finish, "an event that is not JSON": _garbage_event}


@pytest.mark.parametrize("garbage", list(GARBAGE_STREAM))
@pytest.mark.parametrize("provider", OPENAI_COMPATIBLE)
async def test_garbage_stream_raises_protocol_error_after_good_chunks(
    provider: str, garbage: str, make_adapter: AdapterFactory
) -> None:
    rec = recording(provider)
    reply = rec.reply("stream")
    adapter, _ = make_adapter(provider, reply.with_body(GARBAGE_STREAM[garbage](reply.body)).with_writes())
    stream = await adapter.chat_stream(UpstreamCall(chat_body(rec.model, stream=True), TIMEOUTS))
    received: list[JSON] = []

    with pytest.raises(UpstreamProtocolError):
        async with asyncio.timeout(10):
            async for chunk in stream:
                received.append(chunk)

    assert received, "the chunks before the damage are still delivered"
    assert without_annotations(received[0]["choices"]) == sse_payloads(reply.body)[0]["choices"]


# --------------------------------------------------------------------------- cancellation


@pytest.mark.parametrize("provider", OPENAI_COMPATIBLE)
async def test_aclose_hangs_up_on_the_upstream(
    provider: str, make_adapter: AdapterFactory, replay: ReplayServer
) -> None:
    rec = recording(provider)
    slow = rec.reply("stream").first_event_then_slowly()  # seconds more to send in full
    adapter, url = make_adapter(provider, slow)
    call = UpstreamCall(chat_body(rec.model, stream=True), TIMEOUTS)
    await assert_aclose_hangs_up(adapter, call, url, replay)


# --------------------------------------------------------------------------- embeddings


async def test_openai_embeddings(make_adapter: AdapterFactory, replay: ReplayServer) -> None:
    rec = recording("openai")
    expect = rec.expect["embeddings"]
    adapter, url = make_adapter("openai", rec.reply("embeddings"))
    body = {"model": "text-embedding-3-small", "input": "The contract, in numbers.", "dimensions": 8}

    result = await adapter.embeddings(UpstreamCall(body, TIMEOUTS))

    assert result.body["object"] == "list"
    [item] = result.body["data"]
    assert (item["object"], item["index"], len(item["embedding"])) == ("embedding", 0, expect["dimensions"])
    assert result.usage == Usage(expect["prompt_tokens"], 0)
    assert_rate_limit(result.rate_limit, expect["rate_limit"])
    [served] = replay.served(url)
    assert (served.path, orjson.loads(served.body)) == ("/v1/embeddings", body)
