"""Tool calls and JSON mode over every OpenAI-compatible adapter and transport, against recorded wire formats.

What every adapter must do with them, whatever the provider: forward `tools`, `tool_choice`,
`parallel_tool_calls` and `response_format` exactly as the client sent them; return a
non-streamed answer's tool calls intact with finish_reason `tool_calls`; relay streamed
`tool_calls` deltas intact and in order, whatever the provider's style (OpenAI and vLLM cut
the arguments into fragments and send id and name once per index, vLLM even a last fragment
together with the finish_reason; Together does likewise inside its own chunk shape; Groq sends
each call whole in one delta), so that the openai SDK, accumulating the relayed chunks, gets
exactly the recorded calls; and pass JSON-mode content through untouched so that it parses.
Perplexity has no tool calling and is only under the JSON-mode checks.
Known gaps in `providers/`, if any, are listed in `KNOWN_GAPS` and run as strict xfails.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from openai.types.chat import ChatCompletion

from providers.types import JSON, UpstreamCall, Usage
from tests.contract.recordings import (
    OPENAI_COMPATIBLE,
    TIMEOUTS,
    AdapterFactory,
    recording,
    scenario_body,
    sse_payloads,
)
from tests.contract.replay import ReplayServer
from tests.contract.streams import (
    WRITES,
    accumulate,
    assert_split_as_asked,
    calls_of,
    delta_text,
    last_usage,
    read_split,
    without_annotations,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

KNOWN_GAPS: dict[tuple[str, str], str] = {}
TOOL_PROVIDERS = tuple(p for p in OPENAI_COMPATIBLE if recording(p).has("tools"))
TOOL_STREAM_PROVIDERS = tuple(p for p in OPENAI_COMPATIBLE if recording(p).has("tools_stream"))
JSON_STREAM_PROVIDERS = tuple(p for p in OPENAI_COMPATIBLE if recording(p).has("json_stream"))
# JSON content is plain text deltas, which `test_stream_chunks_in_order_and_complete` already
# reads with CRLF splits; one write and odd pieces are enough here and keep the suite quick.
JSON_WRITES = ["one write", "odd pieces"]
TOOL_CHOICES: dict[str, Any] = {
    "auto": "auto",
    "required": "required",
    "none": "none",
    "a named function": {"type": "function", "function": {"name": "get_weather"}},
}


def known_gap(request: pytest.FixtureRequest, provider: str, check: str) -> None:
    reason = KNOWN_GAPS.get((provider, check))
    if reason:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


def assert_sent(replay: ReplayServer, url: str, body: JSON, path: str) -> None:
    """The upstream got exactly the client's body: tools, tool_choice, response_format unchanged."""
    served = replay.served(url)[-1]
    assert (served.method, served.path) == ("POST", path + "/chat/completions")
    assert orjson.loads(served.body) == body


# --------------------------------------------------------------------------- tool calls


@pytest.mark.parametrize("provider", TOOL_PROVIDERS)
async def test_tool_calls_come_back_intact(
    provider: str, make_adapter: AdapterFactory, replay: ReplayServer, request: pytest.FixtureRequest
) -> None:
    known_gap(request, provider, "tools")
    rec = recording(provider)
    expect = rec.expect["tools"]
    body = scenario_body(rec, "tools")
    adapter, url = make_adapter(provider, rec.reply("tools"))

    result = await adapter.chat(UpstreamCall(body, TIMEOUTS))

    [choice] = result.body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["role"] == "assistant"
    assert not choice["message"].get("content")
    assert all(c["type"] == "function" for c in choice["message"]["tool_calls"])
    completion = ChatCompletion.construct(**result.body)  # as the openai SDK reads it
    calls = calls_of(completion.choices[0].message.tool_calls or [])
    assert calls == expect["tool_calls"]
    assert all(isinstance(json.loads(c["arguments"]), dict) for c in calls)
    assert result.usage == Usage(expect["prompt_tokens"], expect["completion_tokens"])
    assert_sent(replay, url, body, rec.base_path)


@pytest.mark.parametrize("choice", list(TOOL_CHOICES))
@pytest.mark.parametrize("provider", TOOL_PROVIDERS)
async def test_tool_choice_is_forwarded_unchanged(
    provider: str, choice: str, make_adapter: AdapterFactory, replay: ReplayServer
) -> None:
    rec = recording(provider)
    body = {**scenario_body(rec, "tools"), "tool_choice": TOOL_CHOICES[choice]}
    adapter, url = make_adapter(provider, rec.reply("tools"))

    await adapter.chat(UpstreamCall(body, TIMEOUTS))

    assert_sent(replay, url, body, rec.base_path)


@pytest.mark.parametrize("writes", list(WRITES))
@pytest.mark.parametrize("provider", TOOL_STREAM_PROVIDERS)
async def test_streamed_tool_call_deltas_are_relayed_intact_and_in_order(
    provider: str,
    writes: str,
    make_adapter: AdapterFactory,
    replay: ReplayServer,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    known_gap(request, provider, "tools_stream")
    rec = recording(provider)
    expect = rec.expect["tools_stream"]
    recorded = sse_payloads(rec.reply("tools_stream").body)
    body = scenario_body(rec, "tools_stream")
    adapter, url = make_adapter(provider, WRITES[writes](rec.reply("tools_stream")))

    chunks, feeds = await read_split(
        lambda: adapter.chat_stream(UpstreamCall(body, TIMEOUTS)), writes, monkeypatch
    )

    assert len(chunks) == expect["chunks"] == len(recorded)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    # Every delta as sent: index, id, type, name and each argument fragment, in order.
    assert [without_annotations(c["choices"]) for c in chunks] == [r["choices"] for r in recorded]
    completion, events = accumulate(chunks)
    [choice] = completion.choices
    assert calls_of(choice.message.tool_calls or []) == expect["tool_calls"]
    assert choice.finish_reason == "tool_calls"
    done = [(e.name, e.arguments) for e in events if e.type == "tool_calls.function.arguments.done"]
    assert done == [(c["name"], c["arguments"]) for c in expect["tool_calls"]]
    assert all(isinstance(json.loads(arguments), dict) for _, arguments in done)
    assert last_usage(chunks) == Usage(expect["prompt_tokens"], expect["completion_tokens"])
    assert_sent(replay, url, body, rec.base_path)
    assert replay.served(url)[-1].headers["accept"] == "text/event-stream"
    assert_split_as_asked(writes, feeds, replay.served(url)[-1].writes, len(recorded))


# --------------------------------------------------------------------------- JSON mode


@pytest.mark.parametrize("provider", OPENAI_COMPATIBLE)
async def test_json_mode_answer_parses(
    provider: str, make_adapter: AdapterFactory, replay: ReplayServer, request: pytest.FixtureRequest
) -> None:
    known_gap(request, provider, "json")
    rec = recording(provider)
    expect = rec.expect["json"]
    body = scenario_body(rec, "json")
    adapter, url = make_adapter(provider, rec.reply("json"))

    result = await adapter.chat(UpstreamCall(body, TIMEOUTS))

    [choice] = result.body["choices"]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == expect["content"]
    assert isinstance(json.loads(choice["message"]["content"]), dict)
    assert not choice["message"].get("tool_calls")
    assert result.usage == Usage(expect["prompt_tokens"], expect["completion_tokens"])
    assert_sent(replay, url, body, rec.base_path)


@pytest.mark.parametrize("writes", JSON_WRITES)
@pytest.mark.parametrize("provider", JSON_STREAM_PROVIDERS)
async def test_json_mode_stream_assembles_to_the_recorded_json(
    provider: str,
    writes: str,
    make_adapter: AdapterFactory,
    replay: ReplayServer,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    known_gap(request, provider, "json_stream")
    rec = recording(provider)
    expect = rec.expect["json_stream"]
    recorded = sse_payloads(rec.reply("json_stream").body)
    body = scenario_body(rec, "json_stream")
    adapter, url = make_adapter(provider, WRITES[writes](rec.reply("json_stream")))

    chunks, feeds = await read_split(
        lambda: adapter.chat_stream(UpstreamCall(body, TIMEOUTS)), writes, monkeypatch
    )

    assert len(chunks) == expect["chunks"] == len(recorded)
    assert [without_annotations(c["choices"]) for c in chunks] == [r["choices"] for r in recorded]
    assert delta_text(chunks) == expect["content"]
    completion, _ = accumulate(chunks)
    assert completion.choices[0].message.content == expect["content"]
    assert isinstance(json.loads(expect["content"]), dict)
    assert completion.choices[0].finish_reason == "stop"
    assert last_usage(chunks) == Usage(expect["prompt_tokens"], expect["completion_tokens"])
    assert_sent(replay, url, body, rec.base_path)
    assert_split_as_asked(writes, feeds, replay.served(url)[-1].writes, len(recorded))
