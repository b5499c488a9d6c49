"""Errors the gateway answers with, always in OpenAI's envelope.

`{"error": {"message", "type", "code", "param"}}` is what the official SDKs parse into
their exception classes (BadRequestError, AuthenticationError, NotFoundError, …), so
every failure — ours or an upstream's — leaves through `error_response`. Upstream
failures name the provider, never its key; unexpected exceptions are logged with
their traceback and answered with a bare 500 that reveals nothing.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from providers.errors import (
    ProviderError,
    UpstreamRateLimited,
    UpstreamStatusError,
    UpstreamTimeout,
)
from router_policies.attempts import AllAttemptsFailed

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class GatewayError(Exception):
    """An error the client gets back as it is: status, message and OpenAI's fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.error_type = error_type or _TYPE_BY_STATUS.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        self.headers = headers or {}
        self.metadata = metadata

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.error_type,
            "code": self.code,
            "param": self.param,
        }
        if self.metadata:
            error["metadata"] = self.metadata
        return {"error": error}


def error_response(error: GatewayError, extra_headers: dict[str, str] | None = None) -> Response:
    headers = {**error.headers, **(extra_headers or {})}
    return Response(
        orjson.dumps(error.envelope()),
        status_code=error.status,
        media_type="application/json",
        headers=headers,
    )


def from_provider_error(error: ProviderError) -> GatewayError:
    """A non-retryable upstream error (the client's request is at fault) goes back as it is."""
    upstream_status = error.status or 0
    status = (
        upstream_status if isinstance(error, UpstreamStatusError) and 400 <= upstream_status < 500 else 502
    )
    code = error.code if isinstance(error, UpstreamStatusError) else error.error_type
    param = error.param if isinstance(error, UpstreamStatusError) else None
    return GatewayError(
        status,
        f"{error.provider}: {error.message}",
        code=code,
        param=param,
        metadata={"provider": error.provider},
    )


def from_all_failed(failure: AllAttemptsFailed, model: str) -> GatewayError:
    """Every deployment failed: 504 if the last one timed out, 503 if rate-limited, else 502."""
    last = failure.last_error
    tried = ", ".join(dict.fromkeys(a.provider for a in failure.attempts)) or "none"
    detail = f"; last error from {last}" if last is not None else ""
    message = f"no provider could serve model {model!r} (tried: {tried}){detail}"
    headers: dict[str, str] = {}
    if isinstance(last, UpstreamTimeout):
        status, code = 504, "upstream_timeout"
    elif isinstance(last, UpstreamRateLimited):
        status, code = 503, "upstream_rate_limited"
        if last.retry_after_s is not None:
            headers["retry-after"] = str(max(1, round(last.retry_after_s)))
    else:
        status, code = 502, "upstream_error"
    metadata = {
        "provider": last.provider if last else None,
        "attempts": [a.as_dict() for a in failure.attempts],
    }
    return GatewayError(
        status, message, code=code, error_type="api_error", headers=headers, metadata=metadata
    )
