"""The adapter for upstreams that do not speak OpenAI's API (Anthropic, Gemini, Bedrock).

Why it exists: every OpenAI-compatible provider goes through `OpenAICompatAdapter`
and our own transport; the long tail of native APIs is not worth a hand-written
translator each, so this adapter lets litellm convert OpenAI-shaped requests to the
provider's API and its answers back. It fulfils the same narrow `Adapter` contract,
so nothing above `providers` can tell which adapter served a request.

litellm is imported lazily, on the first call (`_litellm()`), never at import time:
importing it costs about 3 s and 170 MB, and the gateway imports this module at
start-up whenever such a provider is configured.

The translation rule: litellm's exceptions become `providers.errors` types here and
nowhere else, by exception class only (never by provider name or message text):

    litellm.exceptions                          providers.errors
    RateLimitError                              UpstreamRateLimited (retry_after_s from headers)
    ContextWindowExceededError                  ContextLengthExceeded
    AuthenticationError, PermissionDeniedError  UpstreamAuthError (fixed message)
    PaymentRequiredError                        UpstreamAuthError (our account, not the request)
    BadRequestError, NotFoundError,
    UnprocessableEntityError                    UpstreamBadRequest
    Timeout                                     UpstreamTimeout
    APIConnectionError                          UpstreamConnectError
    ServiceUnavailableError, InternalServerError,
    BadGatewayError, APIError with status >= 500 UpstreamUnavailable
    anything else                               UpstreamProtocolError

litellm's class says less than it seems in two cases, so there the exception's
cause chain decides, again by class: a refused or reset connection arrives as
InternalServerError (or APIConnectionError) caused by `httpx.ConnectError` /
`ConnectionError`, and becomes UpstreamConnectError; an answer that is not the API
(an HTML page with status 200) arrives as APIConnectionError caused by the parser's
error (no connection failure in the chain), and becomes UpstreamProtocolError.

Messages are the upstream's own error message (cut to 500 characters), with the
configured API key scrubbed out should an upstream ever echo it; auth errors get a
fixed message. Body fields that are litellm's own parameters (`api_base`, `api_key`,
`aws_*`, `metadata`, …) are never forwarded: a client could otherwise redirect the
gateway's credentials to a host of its choosing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import orjson

from providers.errors import (
    ContextLengthExceeded,
    ProviderError,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.ratelimit_headers import parse_rate_limit_headers, parse_retry_after_s
from providers.types import JSON, ChatResult, EmbeddingsResult, RateLimitInfo, Timeouts, UpstreamCall, Usage

log = logging.getLogger("providers.litellm")

_MAX_MESSAGE_CHARS = 500
_RAW_HEADER_PREFIX = "llm_provider-"
# Keys we set ourselves, and litellm parameters that are not part of any upstream's API.
_OWN_KEYS = frozenset({"model", "messages", "input", "stream", "timeout"})
_CONTROL_KEYS = frozenset(
    {"api_key", "api_base", "base_url", "api_version", "extra_headers", "headers", "client", "model_list"}
)
_CONTROL_PREFIXES = ("aws_", "vertex_", "litellm_", "azure_")
_LITELLM_PREFIX = re.compile(r"^litellm\.\w+:\s*")
# litellm adds these to OpenAI's shape; dropped when they hold nothing but nulls.
_EXTRA_NULL_KEYS = ("provider_specific_fields", "citations", "function_call", "audio", "thinking_blocks")


@functools.cache
def _litellm() -> Any:
    """Import litellm once, on first use, with the bundled (offline) cost map."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


@functools.cache
def _denied_body_keys() -> frozenset[str]:
    from litellm.types.utils import all_litellm_params

    return frozenset(all_litellm_params) | _CONTROL_KEYS


@functools.cache
def _translation_table() -> tuple[tuple[type[BaseException], type[ProviderError]], ...]:
    """(litellm class, our class), most specific first: the first isinstance match wins."""
    e = _litellm().exceptions
    return (
        (e.ContextWindowExceededError, ContextLengthExceeded),
        (e.PaymentRequiredError, UpstreamAuthError),
        (e.RateLimitError, UpstreamRateLimited),
        (e.AuthenticationError, UpstreamAuthError),
        (e.PermissionDeniedError, UpstreamAuthError),
        (e.BadRequestError, UpstreamBadRequest),
        (e.NotFoundError, UpstreamBadRequest),
        (e.UnprocessableEntityError, UpstreamBadRequest),
        (e.Timeout, UpstreamTimeout),
        (e.APIConnectionError, UpstreamConnectError),
        (e.ServiceUnavailableError, UpstreamUnavailable),
        (e.InternalServerError, UpstreamUnavailable),
        (e.BadGatewayError, UpstreamUnavailable),
    )


# --------------------------------------------------------------------------- errors


def _headers_of(exc: BaseException) -> dict[str, str]:
    for source in (getattr(exc, "litellm_response_headers", None), getattr(exc, "headers", None)):
        if source:
            try:
                return {str(k).lower(): str(v) for k, v in dict(source).items()}
            except (TypeError, ValueError):
                continue
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return {str(k).lower(): str(v) for k, v in headers.items()} if headers else {}


def _upstream_message(exc: BaseException) -> str:
    """The upstream's own error message when litellm wrapped its JSON body, else litellm's text."""
    text = str(getattr(exc, "message", None) or exc)
    text = _LITELLM_PREFIX.sub("", text)
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            parsed: Any = orjson.loads(text[start : end + 1])
        except orjson.JSONDecodeError:
            parsed = None
        error = parsed.get("error") if isinstance(parsed, dict) else None
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
    first_line = text.strip().split("\n", 1)[0]  # litellm sometimes appends a traceback
    return first_line or type(exc).__name__


def _scrub(message: str, secret: str | None) -> str:
    if secret and len(secret) >= 4:
        message = message.replace(secret, "***")
    return message[:_MAX_MESSAGE_CHARS]


def _wire_cause(exc: BaseException) -> type[ProviderError] | None:
    """What the cause chain shows happened on the wire, for litellm's vaguer classes.

    A timeout or a failed connection anywhere in the chain says so; a chain of only
    other exceptions (a JSON or key error while reading the answer) means the
    upstream sent something that is not its API; no chain says nothing.
    """
    cause = exc.__cause__ or exc.__context__
    other = False
    for _ in range(16):
        if cause is None:
            break
        if isinstance(cause, httpx.TimeoutException | TimeoutError):
            return UpstreamTimeout
        if isinstance(cause, httpx.ConnectError | ConnectionError):
            return UpstreamConnectError
        other = other or not isinstance(cause, StopIteration | StopAsyncIteration)
        cause = cause.__cause__ or cause.__context__
    return UpstreamProtocolError if other else None


def _target(exc: BaseException) -> type[ProviderError]:
    target: type[ProviderError] = UpstreamProtocolError
    for litellm_class, ours in _translation_table():
        if isinstance(exc, litellm_class):
            target = ours
            break
    e = _litellm().exceptions
    if isinstance(exc, e.APIConnectionError) and not isinstance(exc, e.Timeout):
        return _wire_cause(exc) or UpstreamConnectError
    if isinstance(exc, e.InternalServerError | e.ServiceUnavailableError):
        cause = _wire_cause(exc)
        return cause if cause in (UpstreamConnectError, UpstreamTimeout) else target
    return target


def translate_litellm_error(exc: BaseException, provider: str, secret: str | None = None) -> ProviderError:
    """Map one litellm exception to our hierarchy, by class; see the module docstring."""
    if isinstance(exc, ProviderError):
        return exc
    target = _target(exc)
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    is_api_error = isinstance(exc, _litellm().exceptions.APIError)
    if target is UpstreamProtocolError and is_api_error and status is not None and status >= 500:
        target = UpstreamUnavailable
    if target is UpstreamTimeout:
        return UpstreamTimeout("no answer within the timeout", provider=provider, phase="total")
    if target is UpstreamConnectError:
        return UpstreamConnectError("could not connect to the upstream", provider=provider)
    if target is UpstreamProtocolError:
        return UpstreamProtocolError(
            f"upstream failure ({type(exc).__name__}): {_scrub(_upstream_message(exc), secret)}",
            provider=provider,
        )
    status_class, default_status = _STATUS_CLASSES[target]
    message = (
        "the provider rejected the gateway's credentials"
        if status_class is UpstreamAuthError
        else _scrub(_upstream_message(exc), secret)
    )
    retry_after = parse_retry_after_s(_headers_of(exc).get("retry-after"))
    return status_class(
        message, provider=provider, status=status or default_status, retry_after_s=retry_after
    )


_STATUS_CLASSES: dict[type[ProviderError], tuple[type[UpstreamStatusError], int]] = {
    ContextLengthExceeded: (ContextLengthExceeded, 400),
    UpstreamRateLimited: (UpstreamRateLimited, 429),
    UpstreamAuthError: (UpstreamAuthError, 401),
    UpstreamBadRequest: (UpstreamBadRequest, 400),
    UpstreamUnavailable: (UpstreamUnavailable, 503),
}


# --------------------------------------------------------------------------- shapes


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

    def __init__(self, wrapper: Any, provider: str, secret: str | None, timeouts: Timeouts, deadline: float):
        self._wrapper = wrapper
        self._inner = getattr(wrapper, "completion_stream", None)
        self._provider = provider
        self._secret = secret
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
            async with asyncio.timeout(wait_s):
                return await iterator.__anext__()
        except StopAsyncIteration:
            raise
        except TimeoutError:
            raise UpstreamTimeout(
                f"no chunk within the {phase} timeout", provider=self._provider, phase=phase
            ) from None
        except Exception as exc:
            raise translate_litellm_error(exc, self._provider, self._secret) from None

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
    ) -> None:
        self.name = name
        self.litellm_provider = litellm_provider
        self._api_key = api_key
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
        headers = {**self._extra_headers, **call.headers}
        if headers:
            kwargs["extra_headers"] = headers
        return kwargs

    async def _call(self, function: Any, kwargs: dict[str, Any], wait_s: float, phase: str) -> Any:
        try:
            async with asyncio.timeout(wait_s):
                return await function(**kwargs)
        except TimeoutError:
            raise UpstreamTimeout(
                f"no answer within the {phase} timeout", provider=self.name, phase=phase
            ) from None
        except Exception as exc:
            raise translate_litellm_error(exc, self.name, self._api_key) from None

    async def chat(self, call: UpstreamCall) -> ChatResult:
        litellm = _litellm()
        kwargs = self._kwargs(call, {"messages": call.body.get("messages"), "stream": False})
        response = await self._call(
            litellm.acompletion, kwargs, call.timeouts.total_timeout_ms / 1000, "total"
        )
        body = _openai_shape(_dump(response, self.name))
        if not isinstance(body.get("choices"), list):
            raise UpstreamProtocolError("the upstream response has no choices", provider=self.name)
        return ChatResult(body, Usage.from_openai(body.get("usage")), _rate_limit(response))

    async def chat_stream(self, call: UpstreamCall) -> LiteLLMChunkStream:
        litellm = _litellm()
        timeouts = call.timeouts
        deadline = time.monotonic() + timeouts.total_timeout_ms / 1000
        kwargs = self._kwargs(call, {"messages": call.body.get("messages"), "stream": True})
        first_byte_s = timeouts.first_byte_timeout_ms / 1000
        total_s = timeouts.total_timeout_ms / 1000
        wait_s, phase = (total_s, "total") if total_s < first_byte_s else (first_byte_s, "first_byte")
        wrapper = await self._call(litellm.acompletion, kwargs, wait_s, phase)
        return LiteLLMChunkStream(wrapper, self.name, self._api_key, timeouts, deadline)

    async def embeddings(self, call: UpstreamCall) -> EmbeddingsResult:
        litellm = _litellm()
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
