"""Turn an upstream's HTTP error answer into the right typed error.

Classification is by status and by the error's own `code`/`type`/message fields in
OpenAI's envelope, never by which provider sent it. The upstream's text is scrubbed
of secrets (`providers.redact`) before it goes into the error.
"""

from __future__ import annotations

from typing import Any

import orjson

from providers.errors import (
    ContextLengthExceeded,
    UpstreamAuthError,
    UpstreamBadRequest,
    UpstreamRateLimited,
    UpstreamStatusError,
    UpstreamUnavailable,
)
from providers.ratelimit_headers import parse_retry_after_s
from providers.redact import NO_SECRETS, Redactor

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "context window",
    "too many tokens",
    "prompt is too long",
    "`max_new_tokens` must be <=",  # Together (TGI): "`inputs` tokens + `max_new_tokens` must be <= N"
)
_MAX_MESSAGE_CHARS = 500


def _error_fields(body: bytes) -> tuple[str | None, str | None, str | None]:
    """(message, code, param) from an OpenAI-style error body, if it is one."""
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None, None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, str):
        return error, None, None
    if not isinstance(error, dict):
        detail = parsed.get("detail") if isinstance(parsed, dict) else None
        return (str(detail) if detail else None), None, None
    message = error.get("message")
    code = error.get("code") or error.get("type")
    param = error.get("param")
    return (
        str(message) if message is not None else None,
        str(code) if code is not None else None,
        str(param) if param is not None else None,
    )


def is_context_length_error(message: str | None, code: str | None) -> bool:
    text = f"{code or ''} {message or ''}".lower()
    return any(marker in text for marker in _CONTEXT_MARKERS)


def classify_status(
    status: int, headers: dict[str, str], body: bytes, provider: str, redact: Redactor = NO_SECRETS
) -> UpstreamStatusError:
    message, code, param = _error_fields(body)
    if message is None:
        message = f"upstream answered HTTP {status}"
    message = redact(message)[:_MAX_MESSAGE_CHARS]
    code, param = redact.optional(code), redact.optional(param)
    retry_after = parse_retry_after_s(headers.get("retry-after"))
    kwargs: dict[str, Any] = {
        "provider": provider,
        "status": status,
        "code": code,
        "param": param,
        "retry_after_s": retry_after,
    }
    if status == 429:
        return UpstreamRateLimited(message, **kwargs)
    if status >= 500:
        return UpstreamUnavailable(message, **kwargs)
    if status in (401, 403):
        return UpstreamAuthError("the provider rejected the gateway's credentials", **kwargs)
    if status in (400, 413, 422) and is_context_length_error(message, code):
        return ContextLengthExceeded(message, **kwargs)
    if status == 408:
        return UpstreamUnavailable(message, **kwargs)
    return UpstreamBadRequest(message, **kwargs)
