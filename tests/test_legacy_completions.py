"""`POST /v1/completions` (legacy) driven by the openai SDK: stream, non-stream, errors."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from gateway.simulator import Behaviour
from tests.harness import config_for, generation_record


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_prompt_in_text_out(fake, gateway):
    upstream = fake(behaviour=Behaviour(content="a completed sentence"))
    gw = gateway(config_for({"p": upstream.url}))
    completion = _client(gw.url).completions.create(model="m", prompt="Once upon", max_tokens=20, stop=["\n"])
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "a completed sentence"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    sent = upstream.sim.requests[-1].body
    assert sent["messages"] == [{"role": "user", "content": "Once upon"}]
    assert sent["max_tokens"] == 20 and sent["stop"] == ["\n"]
    assert generation_record(gw.url, completion.id)["kind"] == "completions"


def test_stream_with_usage(fake, gateway):
    upstream = fake(behaviour=Behaviour(content="one two three"))
    gw = gateway(config_for({"p": upstream.url}))
    chunks = list(
        _client(gw.url).completions.create(
            model="m", prompt="count", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "one two three"
    assert all(c.object == "text_completion" for c in chunks)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


def test_mid_stream_failure_ends_with_the_error_chunk(fake, gateway):
    upstream = fake(behaviour=Behaviour(content="one two three four", die_after_chunks=2))
    gw = gateway(config_for({"p": upstream.url}))
    body = {"model": "m", "prompt": "count", "stream": True}
    with httpx.stream("POST", f"{gw.url}/v1/completions", json=body, timeout=30) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    error_chunk = json.loads(lines[-2].removeprefix("data: "))
    assert error_chunk["object"] == "text_completion" and error_chunk["error"]["code"] == 502
    assert error_chunk["choices"][0]["finish_reason"] == "error"
    with pytest.raises(openai.APIError):
        list(_client(gw.url).completions.create(model="m", prompt="count", stream=True))


def test_unsupported_fields_are_refused(fake, gateway):
    gw = gateway(config_for({"p": fake().url}))
    client = _client(gw.url)
    for kwargs in ({"echo": True}, {"suffix": "end"}, {"prompt": ["a", "b"]}):
        with pytest.raises(openai.BadRequestError):
            client.completions.create(**{"model": "m", "prompt": "x", **kwargs})  # type: ignore[call-overload]
