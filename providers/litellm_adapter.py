"""The adapter for upstreams that do not speak OpenAI's API (Anthropic, Gemini, Bedrock).

Why it exists: every OpenAI-compatible provider goes through `OpenAICompatAdapter`
and our own transport; the long tail of native APIs is not worth a hand-written
translator each, so this adapter lets litellm convert OpenAI-shaped requests to the
provider's API and its answers back. It fulfils the same narrow `Adapter` contract,
so nothing above `providers` can tell which adapter served a request.

litellm is imported lazily, on the first call (`load_litellm()`), never at import time:
importing it costs about 3 s and 170 MB, and the gateway imports this module at
start-up whenever such a provider is configured.

litellm's exceptions are translated in `providers.litellm_errors`, the one place for them.
Body fields that are litellm's own parameters (`api_base`, `api_key`,
`aws_*`, `metadata`, …) are never forwarded: a client could otherwise redirect the
gateway's credentials to a host of its choosing. litellm's MCP handling (its proxy
running `type: mcp` tools itself) is switched off: tools go to the upstream model, and
the client runs them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from providers.clock import upstream_wait
from providers.errors import (
    UpstreamBadRequest,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from providers.litellm_errors import load_litellm, translate_litellm_error
from providers.ratelimit_headers import parse_rate_limit_headers
from providers.redact import Redactor
from providers.types import JSON, ChatResult, EmbeddingsResult, RateLimitInfo, Timeouts, UpstreamCall, Usage

log = logging.getLogger("providers.litellm")

_RAW_HEADER_PREFIX = "llm_provider-"
# Keys we set ourselves, and litellm parameters that are not part of any upstream's API.
_OWN_KEYS = frozenset({"model", "messages", "input", "stream", "timeout"})
_CONTROL_KEYS = frozenset(
    {"api_key", "api_base", "base_url", "api_version", "extra_headers", "headers", "client", "model_list"}
)
_CONTROL_PREFIXES = ("aws_", "vertex_", "litellm_", "azure_")
# litellm adds these to OpenAI's shape; dropped when they hold nothing but nulls.
_EXTRA_NULL_KEYS = ("provider_specific_fields", "citations", "function_call", "audio", "thinking_blocks")


@functools.cache
def _denied_body_keys() -> frozenset[str]:
    from litellm.types.utils import all_litellm_params

    return frozenset(all_litellm_params) | _CONTROL_KEYS


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, dict | list) and all(_is_empty(v) for v in _values(value)))


def _values(value: dict[str, Any] | list[Any]) -> list[Any]:
    return list(value.values()) if isinstance(value, dict) else value


def _drop_null_extras(obj: Any) -> None:
    if isinstance(obj, dict):
        for key in _EXTRA_NULL_KEYS:
            if key in obj and _is_empty(obj[key]):
                del obj[key]


def _openai_shape(payload: JSON) -> JSON:
    """litellm's model_dump() minus the empty fields it adds to OpenAI's shape."""
    _drop_null_extras(payload)
    for choice in payload.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        _drop_null_extras(message)
        if isinstance(message, dict) and message.get("tool_calls") is None:
            message.pop("tool_calls", None)
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for key in [k for k, v in delta.items() if v is None]:
                del delta[key]
    return payload


def _dump(obj: Any, provider: str) -> JSON:
    dumped = obj.model_dump() if hasattr(obj, "model_dump") else obj
    if not isinstance(dumped, dict):
        raise UpstreamProtocolError("the upstream answer is not an object", provider=provider)
    return dumped


def _reset_s(value: str | None) -> float | None:
    """Anthropic-style resets are RFC 3339 instants; OpenAI-style ones are durations."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _rate_limit(obj: Any) -> RateLimitInfo:
    hidden = getattr(obj, "_hidden_params", None)
    additional = hidden.get("additional_headers") if isinstance(hidden, dict) else None
    if not isinstance(additional, dict):
        return RateLimitInfo()
    raw = {
        k[len(_RAW_HEADER_PREFIX) :].lower(): str(v)
        for k, v in additional.items()
        if k.startswith(_RAW_HEADER_PREFIX)
    }
    normalised = {k.lower(): str(v) for k, v in additional.items() if not k.startswith(_RAW_HEADER_PREFIX)}
    info = parse_rate_limit_headers({**raw, **normalised})
    if info.reset_requests_s is None:
        info.reset_requests_s = _reset_s(raw.get("anthropic-ratelimit-requests-reset"))
    if info.reset_tokens_s is None:
        info.reset_tokens_s = _reset_s(raw.get("anthropic-ratelimit-tokens-reset"))
    return info


# --------------------------------------------------------------------------- stream


class LiteLLMChunkStream:
    """OpenAI-shaped chunk dicts from one litellm stream.

    Deadlines: first chunk within the first-byte timeout, each next one within the
    idle timeout, all within the total. `aclose()` releases the upstream response at
    once: litellm's own `aclose()` does not reach the HTTP response for every
    provider (Anthropic's iterator has none in 1.106.2), so the line iterator it wraps
    is closed as well.
    """

    def __init__(self, wrapper: Any, provider: str, redact: Redactor, timeouts: Timeouts, deadline: float):
        self._wrapper = wrapper
        self._inner = getattr(wrapper, "completion_stream", None)
        self._provider = provider
        self._redact = redact
        self._idle_s = timeouts.idle_timeout_ms / 1000
        self._first_byte_s = timeouts.first_byte_timeout_ms / 1000
        self._deadline = deadline
        self._closed = False
        self.rate_limit: RateLimitInfo = _rate_limit(wrapper)

    def _next_wait(self, first: bool) -> tuple[float, str]:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise UpstreamTimeout("total timeout exceeded", provider=self._provider, phase="total")
        wait_s, phase = (self._first_byte_s, "first_byte") if first else (self._idle_s, "idle")
        return (remaining, "total") if remaining < wait_s else (wait_s, phase)

    async def _next(self, iterator: AsyncIterator[Any], first: bool) -> Any:
        wait_s, phase = self._next_wait(first)
        try:
            with upstream_wait():
                async with asyncio.timeout(wait_s):
                    return await iterator.__anext__()
        except StopAsyncIteration:
            raise
        except TimeoutError:
            raise UpstreamTimeout(
                f"no chunk within the {phase} timeout", provider=self._provider, phase=phase
            ) from None
        except Exception as exc:
            raise translate_litellm_error(exc, self._provider, self._redact) from None

    async def __aiter__(self) -> AsyncIterator[JSON]:
        iterator = self._wrapper.__aiter__()
        saw_finish = False
        first = True
        try:
            while True:
                try:
                    chunk = await self._next(iterator, first)
                except StopAsyncIteration:
                    break
                first = False
                payload = _openai_shape(_dump(chunk, self._provider))
                choices = payload.get("choices")
                if choices and isinstance(choices, list) and isinstance(choices[0], dict):
                    saw_finish = saw_finish or choices[0].get("finish_reason") is not None
                yield payload
        finally:
            await self.aclose()
        if not saw_finish:
            raise UpstreamProtocolError(
                "the upstream stream ended before it finished", provider=self._provider
            )

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        inner = self._inner
        targets = (
            self._wrapper,
            inner,
            getattr(inner, "streaming_response", None),
            getattr(inner, "http_response", None),
        )
        for target in targets:
            close = getattr(target, "aclose", None)
            if close is None:
                continue
            try:
                await close()
            except Exception:
                log.debug("closing %s of a litellm stream failed", type(target).__name__, exc_info=True)


# --------------------------------------------------------------------------- adapter


class LiteLLMAdapter:
    """One provider reached through litellm (`litellm_provider` is litellm's prefix, e.g. `anthropic`)."""

    def __init__(
        self,
        name: str,
        litellm_provider: str,
        *,
        api_key: str | None = None,
        api_base: str | None = None,
        extra_headers: dict[str, str] | None = None,
        redact: Redactor | None = None,
    ) -> None:
        self.name = name
        self.litellm_provider = litellm_provider
        self._api_key = api_key
        # The runtime passes one Redactor knowing every configured secret; alone, this key.
        self._redact = redact or Redactor([api_key])
        self._api_base = api_base.rstrip("/") if api_base else None
        self._extra_headers = dict(extra_headers or {})

    def __repr__(self) -> str:  # never show the key
        return f"LiteLLMAdapter(name={self.name!r}, litellm_provider={self.litellm_provider!r})"

    def _kwargs(self, call: UpstreamCall, own: dict[str, Any]) -> dict[str, Any]:
        model = call.body.get("model")
        if not isinstance(model, str) or not model:
            raise UpstreamBadRequest("the request has no model", provider=self.name, status=400)
        denied = _denied_body_keys()
        kwargs = {
            key: value
            for key, value in call.body.items()
            if key not in _OWN_KEYS and key not in denied and not key.startswith(_CONTROL_PREFIXES)
        }
        kwargs.update(own)
        kwargs["model"] = f"{self.litellm_provider}/{model}"
        kwargs["api_key"] = self._api_key
        kwargs["api_base"] = self._api_base
        kwargs["timeout"] = call.timeouts.total_timeout_ms / 1000
        # With `tools`, litellm 1.106.2 first imports its proxy's MCP handler to look for tools
        # it would run itself; that import needs the `mcp` package, which we do not install, so
        # every request with tools failed. The gateway relays tools; it never runs them.
        kwargs["_skip_mcp_handler"] = True
        headers = {**self._extra_headers, **call.headers}
        if headers:
            kwargs["extra_headers"] = headers
        return kwargs

    async def _call(self, function: Any, kwargs: dict[str, Any], wait_s: float, phase: str) -> Any:
        try:
            with upstream_wait():
                async with asyncio.timeout(wait_s):
                    return await function(**kwargs)
        except TimeoutError:
            raise UpstreamTimeout(
                f"no answer within the {phase} timeout", provider=self.name, phase=phase
            ) from None
        except Exception as exc:
            raise translate_litellm_error(exc, self.name, self._redact) from None

    async def chat(self, call: UpstreamCall) -> ChatResult:
        litellm = load_litellm()
        kwargs = self._kwargs(call, {"messages": call.body.get("messages"), "stream": False})
        response = await self._call(
            litellm.acompletion, kwargs, call.timeouts.total_timeout_ms / 1000, "total"
        )
        body = _openai_shape(_dump(response, self.name))
        if not isinstance(body.get("choices"), list):
            raise UpstreamProtocolError("the upstream response has no choices", provider=self.name)
        return ChatResult(body, Usage.from_openai(body.get("usage")), _rate_limit(response))

    async def chat_stream(self, call: UpstreamCall) -> LiteLLMChunkStream:
        litellm = load_litellm()
        timeouts = call.timeouts
        deadline = time.monotonic() + timeouts.total_timeout_ms / 1000
        kwargs = self._kwargs(call, {"messages": call.body.get("messages"), "stream": True})
        first_byte_s = timeouts.first_byte_timeout_ms / 1000
        total_s = timeouts.total_timeout_ms / 1000
        wait_s, phase = (total_s, "total") if total_s < first_byte_s else (first_byte_s, "first_byte")
        wrapper = await self._call(litellm.acompletion, kwargs, wait_s, phase)
        return LiteLLMChunkStream(wrapper, self.name, self._redact, timeouts, deadline)

    async def embeddings(self, call: UpstreamCall) -> EmbeddingsResult:
        litellm = load_litellm()
        kwargs = self._kwargs(call, {"input": call.body.get("input")})
        response = await self._call(
            litellm.aembedding, kwargs, call.timeouts.total_timeout_ms / 1000, "total"
        )
        body = _dump(response, self.name)
        if not isinstance(body.get("data"), list):
            raise UpstreamProtocolError("the upstream embeddings response has no data", provider=self.name)
        return EmbeddingsResult(body, Usage.from_openai(body.get("usage")), _rate_limit(response))

    async def aclose(self) -> None:
        """litellm owns its HTTP clients; there is nothing per adapter to release."""
