"""The OpenAI-compatible API driven by the real openai SDK (sync and async) and curl."""

from __future__ import annotations

import httpx
import openai
import pytest

from gateway.simulator import Behaviour
from tests.harness import config_for, curl_stream


def _client(url: str, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, **kw)  # type: ignore[arg-type]


def test_non_stream_answer_carries_provider_cost_and_request_id(fake, gateway):
    upstream = fake("groq", Behaviour(content="hello from the fake upstream"))
    gw = gateway(config_for({"groq": upstream.url}))
    raw = _client(gw.url).chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "hi"}]
    )
    answer = raw.parse()
    assert answer.choices[0].message.content == "hello from the fake upstream"
    assert raw.headers["x-request-id"].startswith("gen-")
    assert answer.id == raw.headers["x-request-id"]
    assert answer.model == "m"
    extra = answer.model_extra or {}
    assert extra["provider"] == "groq"
    usage = answer.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens == 5
    expected = (usage.prompt_tokens * 1.0 + usage.completion_tokens * 2.0) / 1e6
    assert (usage.model_extra or {})["cost"] == pytest.approx(expected)
    assert upstream.sim.requests[-1].body["model"] == "groq-model"


def test_unknown_fields_pass_through_and_routing_fields_do_not(fake, gateway):
    upstream = fake()
    gw = gateway(config_for({"p": upstream.url}))
    _client(gw.url).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"top_k": 7, "vendor_option": {"a": [1, 2]}, "provider": {"sort": "price"}},
    )
    sent = upstream.sim.requests[-1].body
    assert sent["top_k"] == 7 and sent["vendor_option"] == {"a": [1, 2]}
    assert "provider" not in sent


async def test_async_stream_with_usage_chunk(fake, gateway):
    upstream = fake("together", Behaviour(content="one two three four"))
    gw = gateway(config_for({"together": upstream.url}))
    client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)
    stream = await client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage_chunks, providers = "", [], set()
    async for chunk in stream:
        providers.add((chunk.model_extra or {}).get("provider"))
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage is not None:
            usage_chunks.append(chunk)
    await client.close()
    assert text == "one two three four"
    assert providers == {"together"}
    assert len(usage_chunks) == 1 and usage_chunks[0].choices == []
    usage = usage_chunks[0].usage
    assert usage is not None and usage.completion_tokens == 4
    assert (usage.model_extra or {})["cost"] == pytest.approx((usage.prompt_tokens + 2 * 4) / 1e6)
    assert upstream.sim.requests[-1].body["stream_options"] == {"include_usage": True}


def test_stream_without_include_usage_hides_usage_but_asks_upstream(fake, gateway):
    upstream = fake("groq", Behaviour(content="a b c"))
    gw = gateway(config_for({"groq": upstream.url}))
    chunks = list(
        _client(gw.url).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    assert all(c.usage is None and c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "a b c"
    assert upstream.sim.requests[-1].body["stream_options"] == {"include_usage": True}


def test_curl_streams_sse_with_done(fake, gateway):
    upstream = fake(behaviour=Behaviour(content="alpha beta"))
    gw = gateway(config_for({"p": upstream.url}))
    out = curl_stream(
        gw.url,
        '{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}',
        include_headers=True,
    )
    head, _, body = out.partition("\r\n\r\n")
    assert "content-type: text/event-stream" in head.lower()
    assert "cache-control: no-cache" in head.lower()
    assert "x-accel-buffering: no" in head.lower()
    events = [line for line in body.split("\n") if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    assert '"content":"alpha "' in body and '"content":"beta"' in body


def test_models_lists_deployments_with_prices(fake, gateway):
    upstream = fake()
    gw = gateway(config_for({"p": upstream.url}))
    models = _client(gw.url).models.list()
    (model,) = models.data
    assert model.id == "m"
    deployments = (model.model_extra or {})["deployments"]
    assert deployments[0]["pricing"]["input_per_mtok_usd"] == 1.0
    assert deployments[0]["simulated"] is False


def test_embeddings_forwarded_and_costed(fake, gateway):
    upstream = fake()
    gw = gateway(config_for({"p": upstream.url}))
    result = _client(gw.url).embeddings.create(model="m", input=["one", "two"])
    assert len(result.data) == 2 and len(result.data[0].embedding) > 0
    assert (result.model_extra or {})["provider"] == "p"
    assert upstream.sim.requests[-1].path.endswith("/embeddings")


def test_every_response_has_request_id(fake, gateway):
    upstream = fake()
    gw = gateway(config_for({"p": upstream.url}))
    with httpx.Client(base_url=gw.url, timeout=10) as http:
        for response in (
            http.get("/v1/models"),
            http.get("/nope"),
            http.post("/v1/chat/completions", content=b"{"),
        ):
            assert response.headers["x-request-id"].startswith("gen-")
