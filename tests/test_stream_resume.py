"""Resuming a stream that broke after content on another deployment (per model, off by default)."""

from __future__ import annotations

import openai

from gateway.simulator import Behaviour
from tests.harness import generation_record

ANSWER = "one two three four five six seven eight"
MESSAGES = [{"role": "user", "content": "count to eight"}]


def _config(first: str, second: str, resume: bool) -> str:
    return f"""
providers:
  - name: first
    base_url: {first}
  - name: second
    base_url: {second}
models:
  - name: m
    resume_streams: {"true" if resume else "false"}
    routing:
      policy: price  # cheapest first: "first" always starts the answer
    deployments:
      - provider: first
        model: first-model
        input_price_per_mtok: 1.0
        output_price_per_mtok: 2.0
      - provider: second
        model: second-model
        input_price_per_mtok: 3.0
        output_price_per_mtok: 4.0
"""


def test_broken_stream_resumes_into_one_uninterrupted_answer(fake, gateway):
    first = fake(behaviour=Behaviour(content=ANSWER, die_after_chunks=3))
    second = fake(behaviour=Behaviour(content=ANSWER))
    gw = gateway(_config(first.url, second.url, resume=True))
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0, timeout=60)
    chunks = list(
        client.chat.completions.create(
            model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    roles = [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role]
    assert roles == ["assistant"]
    continuation = second.sim.requests[-1].body["messages"]
    assert continuation[-1] == {"role": "assistant", "content": "one two three "}
    final = chunks[-1]
    marker = (final.model_extra or {})["resumed"]
    assert marker["deployments"] == ["first/first-model", "second/second-model"]
    usage = final.usage
    assert usage is not None
    extra = usage.model_extra or {}
    assert extra["estimated"] is True  # the first segment's usage died with it
    assert extra["cost"] > 0
    record = generation_record(gw.url, final.id)
    assert record["provider"] == "second" and record["finish_reason"] == "stop"
    assert [a["outcome"] for a in record["attempts"]] == ["ok", "ok"]
    assert record["cost_usd"] == extra["cost"] or abs(record["cost_usd"] - extra["cost"]) < 1e-9


def test_without_resume_the_break_is_an_error_chunk(fake, gateway):
    first = fake(behaviour=Behaviour(content=ANSWER, die_after_chunks=3))
    second = fake(behaviour=Behaviour(content=ANSWER))
    gw = gateway(_config(first.url, second.url, resume=False))
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0, timeout=60)
    received = ""
    try:
        for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
            received += chunk.choices[0].delta.content or "" if chunk.choices else ""
    except openai.APIError:
        pass
    else:
        raise AssertionError("the broken stream did not raise")
    assert received == "one two three "
    assert second.sim.requests == []
