"""Loads the recorded wire formats in `fixtures/<provider>/`.

Each provider folder has a `manifest.json`: the path its API lives under, a model
name, and for each scenario (`chat`, `stream`, `rate_limited`, …) the HTTP status,
the response headers in order, and the file holding the body bytes; `expect` holds
what the adapter must make of them. Adding a provider to the contract is adding a
folder. Hop-by-hop and computed headers (content-length, transfer-encoding, date,
connection) and content-encoding are not recorded: the replay server sends bodies
uncompressed and frames them itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from providers.litellm_adapter import LiteLLMAdapter
from providers.types import JSON, Adapter, Timeouts
from tests.contract.replay import Reply

FIXTURES = Path(__file__).parent / "fixtures"
OPENAI_COMPATIBLE = ("openai", "groq", "together", "perplexity", "vllm")
TOOL_PROMPT = "What is the weather in Zürich, and what time is it in Tokyo?"
JSON_PROMPT = "Report today's weather in Zürich as JSON."
# The functions every `tools` scenario offers; the recorded answers call one or both.
TOOLS: list[JSON] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_local_time",
            "description": "Local time in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
]
TRANSPORT_KINDS = ("aiohttp", "httpx")
API_KEY = "sk-contract-7f3a9c1e5b2d4f6a8c0e-fixture"
API_KEY_ENV = "CONTRACT_TEST_PROVIDER_KEY"
# Every wait in the suite is bounded: a broken adapter fails, it never hangs.
TIMEOUTS = Timeouts(
    connect_timeout_ms=2_000, first_byte_timeout_ms=5_000, idle_timeout_ms=5_000, total_timeout_ms=15_000
)


# (provider, reply) -> (adapter built as the gateway builds it, replay URL it talks to)
AdapterFactory = Callable[[str, Reply], tuple[Adapter, str]]
# (reply, key=API_KEY) -> (the `anthropic` preset's litellm adapter, replay URL it talks to)
AnthropicFactory = Callable[..., tuple[LiteLLMAdapter, str]]


@dataclass(frozen=True)
class Recording:
    provider: str
    base_path: str
    model: str
    responses: dict[str, Reply]
    expect: dict[str, Any]

    def reply(self, scenario: str) -> Reply:
        return self.responses[scenario]

    def has(self, scenario: str) -> bool:
        return scenario in self.responses


@functools.cache
def recording(provider: str) -> Recording:
    folder = FIXTURES / provider
    manifest: dict[str, Any] = orjson.loads((folder / "manifest.json").read_bytes())
    responses = {
        scenario: Reply(
            status=int(spec["status"]),
            headers=tuple((str(name), str(value)) for name, value in spec["headers"]),
            body=(folder / spec["body"]).read_bytes(),
        )
        for scenario, spec in manifest["responses"].items()
    }
    return Recording(
        provider, manifest["base_path"], manifest["model"], responses, manifest.get("expect", {})
    )


def chat_body(model: str, *, stream: bool = False) -> JSON:
    body: JSON = {
        "model": model,
        "messages": [{"role": "user", "content": "Explain your wire format in one sentence."}],
        "max_tokens": 64,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def scenario_body(rec: Recording, scenario: str) -> JSON:
    """The request a `tools`/`json` scenario's recorded answer replies to.

    The chat body with the scenario's prompt, `TOOLS` for tool scenarios, and the fields the
    manifest's `expect.<scenario>.request` adds (`tool_choice`, `response_format`, …); a stream
    scenario without its own `request` uses its non-stream sibling's.
    """
    kind = scenario.removesuffix("_stream")
    body = chat_body(rec.model, stream=scenario.endswith("_stream"))
    body["messages"] = [{"role": "user", "content": TOOL_PROMPT if kind == "tools" else JSON_PROMPT}]
    if kind == "tools":
        body["tools"] = TOOLS
    body.update(rec.expect[scenario].get("request") or rec.expect[kind]["request"])
    return body


def sse_payloads(body: bytes) -> list[JSON]:
    """The JSON events of a recorded stream, read naively (blank-line separated, LF only).

    Deliberately independent of `providers.sse`: it is what the decoder is checked against.
    """
    events: list[JSON] = []
    for block in body.decode("utf-8").split("\n\n"):
        data = [line[len("data:") :].strip() for line in block.split("\n") if line.startswith("data:")]
        if data and data[0] != "[DONE]":
            events.append(orjson.loads("\n".join(data)))
    return events
