"""Tool calls and JSON mode through the litellm adapter, against Anthropic's recorded Messages API.

litellm translates OpenAI's `tools` into Anthropic's (`name`, `description`, `input_schema`),
`tool_choice` into Anthropic's object, and back: `tool_use` content blocks become `tool_calls`
(arguments re-serialised by `json.dumps`, so non-ASCII comes back escaped), `stop_reason:
tool_use` becomes finish_reason `tool_calls`, and streamed `input_json_delta` fragments become
argument fragments under one index per tool. For `response_format`, litellm 1.106.2 forces a
tool named `json_tool_call` on models without native structured outputs (this one) and turns
its input back into the message content. The checks are the OpenAI-compatible ones: the SDK,
accumulating the chunks, gets exactly the recorded calls, and the JSON content parses.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from providers.types import JSON, UpstreamCall, Usage
from tests.contract.recordings import TIMEOUTS, TOOLS, AnthropicFactory, recording, scenario_body
from tests.contract.replay import ReplayServer
from tests.contract.streams import WRITES, accumulate, calls_of, collect, delta_text, last_usage

pytestmark = pytest.mark.asyncio(loop_scope="session")

REC = recording("anthropic")
# OpenAI's tool_choice -> what Anthropic must receive (parallel_tool_calls: true -> disable_parallel_tool_use: false).
TOOL_CHOICES: dict[str, tuple[Any, JSON]] = {
    "auto": ("auto", {"type": "auto", "disable_parallel_tool_use": False}),
    "required": ("required", {"type": "any", "disable_parallel_tool_use": False}),
    "a named function": (
        {"type": "function", "function": {"name": "get_weather"}},
        {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": False},
    ),
}


def sent_to(replay: ReplayServer, url: str) -> JSON:
    [served] = replay.served(url)
    assert (served.method, served.path) == ("POST", "/v1/messages")
    parsed: JSON = orjson.loads(served.body)
    return parsed


def anthropic_tools() -> list[JSON]:
    """`TOOLS` as Anthropic's Messages API takes them."""
    return [
        {"name": f["name"], "description": f["description"], "input_schema": f["parameters"]}
        for f in (t["function"] for t in TOOLS)
    ]


def tool_use_inputs(scenario: str) -> list[Any]:
    body = orjson.loads(REC.reply(scenario).body)
    return [block["input"] for block in body["content"] if block["type"] == "tool_use"]


async def test_tool_use_blocks_come_back_as_tool_calls(
    anthropic: AnthropicFactory, replay: ReplayServer
) -> None:
    expect = REC.expect["tools"]
    adapter, url = anthropic(REC.reply("tools"))

    result = await adapter.chat(UpstreamCall(scenario_body(REC, "tools"), TIMEOUTS))

    [choice] = result.body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] == expect["content"]
    calls = [
        {"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
        for c in message["tool_calls"]
    ]
    assert calls == expect["tool_calls"]
    assert all(c["type"] == "function" for c in message["tool_calls"])
    assert [json.loads(c["arguments"]) for c in calls] == tool_use_inputs("tools")
    assert result.usage == Usage(expect["prompt_tokens"], expect["completion_tokens"])
    sent = sent_to(replay, url)
    assert [
        {k: t[k] for k in ("name", "description", "input_schema")} for t in sent["tools"]
    ] == anthropic_tools()
    assert sent["tool_choice"] == TOOL_CHOICES["auto"][1]


@pytest.mark.parametrize("choice", list(TOOL_CHOICES))
async def test_tool_choice_is_translated(
    anthropic: AnthropicFactory, replay: ReplayServer, choice: str
) -> None:
    ours, theirs = TOOL_CHOICES[choice]
    adapter, url = anthropic(REC.reply("tools"))

    await adapter.chat(UpstreamCall({**scenario_body(REC, "tools"), "tool_choice": ours}, TIMEOUTS))

    assert sent_to(replay, url)["tool_choice"] == theirs


@pytest.mark.parametrize("writes", list(WRITES))
async def test_streamed_input_json_deltas_accumulate_to_the_recorded_calls(
    anthropic: AnthropicFactory, replay: ReplayServer, writes: str
) -> None:
    expect = REC.expect["tools_stream"]
    adapter, url = anthropic(WRITES[writes](REC.reply("tools_stream")))

    chunks = await collect(
        await adapter.chat_stream(UpstreamCall(scenario_body(REC, "tools_stream"), TIMEOUTS))
    )

    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert delta_text(chunks) == expect["content"]
    completion, events = accumulate(chunks)
    [choice] = completion.choices
    assert calls_of(choice.message.tool_calls or []) == expect["tool_calls"]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == expect["content"]
    # Each recorded input_json_delta fragment arrives as one argument fragment, in order, under its tool's index.
    fragments = [
        (e.index, e.arguments_delta) for e in events if e.type == "tool_calls.function.arguments.delta"
    ]
    recorded = [
        (block_index - 1, event["delta"]["partial_json"])
        for block_index, event in _input_json_deltas()
        if event["delta"]["partial_json"]
    ]
    assert [f for f in fragments if f[1]] == recorded
    assert last_usage(chunks) == Usage(expect["prompt_tokens"], expect["completion_tokens"])
    sent = sent_to(replay, url)
    assert sent["stream"] is True
    assert [t["name"] for t in sent["tools"]] == [t["function"]["name"] for t in TOOLS]
    if writes != "one write":
        assert replay.served(url)[-1].writes > 20, "the body should have gone out in many pieces"


def _input_json_deltas() -> list[tuple[int, JSON]]:
    events = [
        orjson.loads(line[len("data: ") :])
        for line in REC.reply("tools_stream").body.decode().splitlines()
        if line.startswith("data: ")
    ]
    return [
        (e["index"], e)
        for e in events
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta"
    ]


async def test_json_mode_content_parses(anthropic: AnthropicFactory, replay: ReplayServer) -> None:
    expect = REC.expect["json"]
    body = scenario_body(REC, "json")
    adapter, url = anthropic(REC.reply("json"))

    result = await adapter.chat(UpstreamCall(body, TIMEOUTS))

    [choice] = result.body["choices"]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == expect["content"]
    assert [json.loads(choice["message"]["content"])] == tool_use_inputs("json")
    assert not choice["message"].get("tool_calls")
    assert result.usage == Usage(expect["prompt_tokens"], expect["completion_tokens"])
    sent = sent_to(replay, url)
    schema = body["response_format"]["json_schema"]["schema"]
    assert sent["tool_choice"] == {"type": "tool", "name": "json_tool_call"}
    assert [(t["name"], t["input_schema"]) for t in sent["tools"]] == [("json_tool_call", schema)]
