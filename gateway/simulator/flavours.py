"""Per-provider wire quirks layered on OpenAI's format: Groq, Together, Perplexity, vLLM.

The gateway's adapters exist because real providers differ in small ways — where
streaming usage lives, extra top-level fields, rate-limit header dialects, a
metrics endpoint. A simulator that only spoke plain OpenAI would let those code
paths rot, so each flavour reproduces what its provider really sends:

- openai: `system_fingerprint`, `service_tier`; with `include_usage`, `"usage": null` on every chunk.
- groq: `x_groq.id` on responses and on the first chunk; streaming usage in the final
  chunk's `x_groq.usage` (never top-level unless `include_usage` asked for it);
  OpenAI-style `x-ratelimit-*` headers with Go-style reset durations.
- together: `"usage": null` on every chunk and the usage on the final one.
- perplexity: `citations` and `search_results` on the response and on every chunk;
  usage carries `search_context_size`.
- vllm: `stop_reason` in choices and a Prometheus `/metrics` endpoint.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Mapping
from typing import ClassVar, Literal

from gateway.simulator import wire
from gateway.simulator.behaviour import Behaviour
from gateway.simulator.wire import JSON, Reply

Position = Literal["first", "content", "final"]


class Flavour:
    """Plain OpenAI; the base every other flavour adds its quirks to."""

    name: ClassVar[str] = "openai"
    default_model: ClassVar[str] = "gpt-4o-mini"
    owned_by: ClassVar[str] = "openai"
    serves_metrics: ClassVar[bool] = False
    _fingerprint: ClassVar[str] = "fp_5f0c1a9e2b"

    def new_ids(self) -> tuple[str, str]:
        return "chatcmpl-" + secrets.token_hex(12), ""

    def usage(self, prompt_tokens: int, completion_tokens: int) -> JSON:
        body = wire.usage(prompt_tokens, completion_tokens)
        body["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
        body["completion_tokens_details"] = {"reasoning_tokens": 0, "audio_tokens": 0}
        return body

    def rate_headers(self, served: int) -> list[tuple[str, str]]:
        return _openai_style_limits(served, requests=10_000, tokens=2_000_000, reset="6ms", reset_tokens="0s")

    def completion(self, reply: Reply) -> JSON:
        body = wire.completion(reply)
        message = body["choices"][0]["message"]
        message["refusal"] = None
        message["annotations"] = []
        body["service_tier"] = "default"
        body["system_fingerprint"] = self._fingerprint
        return body

    def chunk(self, reply: Reply, delta: JSON, finish_reason: str | None, position: Position) -> JSON:
        body = wire.chunk(reply, delta, finish_reason)
        body["service_tier"] = "default"
        body["system_fingerprint"] = self._fingerprint
        if reply.include_usage:
            body["usage"] = None
        return body

    def usage_chunk(self, reply: Reply) -> JSON:
        body = wire.usage_chunk(reply)
        body["system_fingerprint"] = self._fingerprint
        return body

    def metrics(self, models: list[str], running: Mapping[str, int], behaviour: Behaviour) -> str:
        raise NotImplementedError(f"{self.name} has no /metrics endpoint")


class GroqFlavour(Flavour):
    name = "groq"
    default_model = "llama-3.1-8b-instant"
    owned_by = "Meta"
    _fingerprint = "fp_a4265e44d5"

    def new_ids(self) -> tuple[str, str]:
        return "chatcmpl-" + secrets.token_hex(12), "req_01" + secrets.token_hex(13)

    def usage(self, prompt_tokens: int, completion_tokens: int) -> JSON:
        prompt_time = round(prompt_tokens / 20_000, 6)
        completion_time = round(completion_tokens / 800, 6)
        return {
            "queue_time": 0.017,
            "prompt_tokens": prompt_tokens,
            "prompt_time": prompt_time,
            "completion_tokens": completion_tokens,
            "completion_time": completion_time,
            "total_tokens": prompt_tokens + completion_tokens,
            "total_time": round(prompt_time + completion_time, 6),
        }

    def rate_headers(self, served: int) -> list[tuple[str, str]]:
        return _openai_style_limits(
            served, requests=14_400, tokens=18_000, reset="2m59.56s", reset_tokens="7.66s"
        )

    def completion(self, reply: Reply) -> JSON:
        body = wire.completion(reply)
        body["system_fingerprint"] = self._fingerprint
        body["x_groq"] = {"id": reply.tag}
        return body

    def chunk(self, reply: Reply, delta: JSON, finish_reason: str | None, position: Position) -> JSON:
        body = wire.chunk(reply, delta, finish_reason)
        body["system_fingerprint"] = self._fingerprint
        if position == "first":
            body["x_groq"] = {"id": reply.tag}
        elif position == "final":
            x_groq: JSON = {"id": reply.tag}
            if reply.usage is not None:
                x_groq["usage"] = reply.usage
            body["x_groq"] = x_groq
        return body

    def usage_chunk(self, reply: Reply) -> JSON:
        body = wire.usage_chunk(reply)
        body["system_fingerprint"] = self._fingerprint
        body["x_groq"] = {"id": reply.tag}
        return body


class TogetherFlavour(Flavour):
    name = "together"
    default_model = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    owned_by = "together"

    def new_ids(self) -> tuple[str, str]:
        return secrets.token_hex(8) + "-SIM", ""

    def usage(self, prompt_tokens: int, completion_tokens: int) -> JSON:
        return wire.usage(prompt_tokens, completion_tokens)

    def rate_headers(self, served: int) -> list[tuple[str, str]]:
        return [
            ("x-ratelimit-limit", "100"),
            ("x-ratelimit-remaining", str(100 - served % 100)),
            ("x-ratelimit-reset", "1"),
            ("x-ratelimit-limit-tokens", "200000"),
            ("x-ratelimit-remaining-tokens", str(200_000 - (served * 37) % 100_000)),
        ]

    def completion(self, reply: Reply) -> JSON:
        body = wire.completion(reply)
        body["prompt"] = []
        return body

    def chunk(self, reply: Reply, delta: JSON, finish_reason: str | None, position: Position) -> JSON:
        body = wire.chunk(reply, delta, finish_reason)
        body["usage"] = reply.usage if position == "final" else None
        return body

    def usage_chunk(self, reply: Reply) -> JSON:
        return wire.usage_chunk(reply)


class PerplexityFlavour(Flavour):
    name = "perplexity"
    default_model = "sonar"
    owned_by = "perplexity"

    def usage(self, prompt_tokens: int, completion_tokens: int) -> JSON:
        body = wire.usage(prompt_tokens, completion_tokens)
        body["search_context_size"] = "low"
        return body

    def rate_headers(self, served: int) -> list[tuple[str, str]]:
        return []

    def completion(self, reply: Reply) -> JSON:
        body = wire.completion(reply)
        body.update(search_fields(reply.prompt))
        return body

    def chunk(self, reply: Reply, delta: JSON, finish_reason: str | None, position: Position) -> JSON:
        body = wire.chunk(reply, delta, finish_reason)
        body.update(search_fields(reply.prompt))
        if position == "final" and reply.usage is not None:
            body["usage"] = reply.usage
        return body

    def usage_chunk(self, reply: Reply) -> JSON:
        body = wire.usage_chunk(reply)
        body.update(search_fields(reply.prompt))
        return body


class VllmFlavour(Flavour):
    name = "vllm"
    default_model = "meta-llama/Llama-3.1-8B-Instruct"
    owned_by = "vllm"
    serves_metrics = True

    def usage(self, prompt_tokens: int, completion_tokens: int) -> JSON:
        body = wire.usage(prompt_tokens, completion_tokens)
        body["prompt_tokens_details"] = None
        return body

    def rate_headers(self, served: int) -> list[tuple[str, str]]:
        return []

    def completion(self, reply: Reply) -> JSON:
        body = wire.completion(reply)
        choice = body["choices"][0]
        choice["message"].update({"refusal": None, "reasoning_content": None})
        choice["message"].setdefault("tool_calls", [])
        choice["stop_reason"] = None
        body["prompt_logprobs"] = None
        return body

    def chunk(self, reply: Reply, delta: JSON, finish_reason: str | None, position: Position) -> JSON:
        body = wire.chunk(reply, delta, finish_reason)
        if position == "final":
            body["choices"][0]["stop_reason"] = None
        return body

    def usage_chunk(self, reply: Reply) -> JSON:
        return wire.usage_chunk(reply)

    def metrics(self, models: list[str], running: Mapping[str, int], behaviour: Behaviour) -> str:
        """Prometheus text with the gauges a load-aware router reads from vLLM."""
        gauges = [
            ("vllm:num_requests_running", "Number of requests in model execution batches.", running),
            ("vllm:num_requests_waiting", "Number of requests waiting to be processed.", None),
            ("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", None),
            ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", None),
        ]
        fixed = {
            "vllm:num_requests_waiting": float(behaviour.queue_waiting),
            "vllm:gpu_cache_usage_perc": float(behaviour.kv_cache_usage),
            "vllm:kv_cache_usage_perc": float(behaviour.kv_cache_usage),
        }
        lines: list[str] = []
        for metric, help_text, per_model in gauges:
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
            for model in models:
                value = float(per_model.get(model, 0)) if per_model is not None else fixed[metric]
                lines.append(f'{metric}{{model_name="{model}"}} {value}')
        return "\n".join(lines) + "\n"


FLAVOURS: dict[str, type[Flavour]] = {
    cls.name: cls for cls in (Flavour, GroqFlavour, TogetherFlavour, PerplexityFlavour, VllmFlavour)
}


def get_flavour(name: str) -> Flavour:
    try:
        return FLAVOURS[name]()
    except KeyError:
        raise ValueError(f"unknown simulator flavour {name!r}; choose one of {sorted(FLAVOURS)}") from None


@functools.lru_cache(maxsize=256)
def search_fields(prompt: str) -> JSON:
    """Perplexity's `citations` and `search_results`: three example.com sources derived from the prompt.

    Cached because every chunk of a stream carries them; callers must not mutate the result.
    """
    slug = hashlib.sha256(prompt.encode()).hexdigest()[:8]
    topic = " ".join(prompt.split()[:4]) or "your question"
    urls = [f"https://example.com/{slug}/source-{i}" for i in (1, 2, 3)]
    results = [
        {"title": f"Source {i} on {topic}", "url": url, "date": f"2024-05-0{i}"}
        for i, url in enumerate(urls, start=1)
    ]
    return {"citations": urls, "search_results": results}


def _openai_style_limits(
    served: int, *, requests: int, tokens: int, reset: str, reset_tokens: str
) -> list[tuple[str, str]]:
    """OpenAI's header dialect. Remaining counts wrap instead of reaching zero, so a long
    benchmark never makes a healthy simulated provider look exhausted."""
    return [
        ("x-ratelimit-limit-requests", str(requests)),
        ("x-ratelimit-limit-tokens", str(tokens)),
        ("x-ratelimit-remaining-requests", str(requests - served % requests)),
        ("x-ratelimit-remaining-tokens", str(tokens - (served * 37) % (tokens // 2))),
        ("x-ratelimit-reset-requests", reset),
        ("x-ratelimit-reset-tokens", reset_tokens),
    ]
