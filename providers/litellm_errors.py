"""litellm's exceptions, translated into `providers.errors` here and nowhere else.

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

Messages are the upstream's own error message (cut to 500 characters), scrubbed of
secrets by the same `providers.redact.Redactor` the OpenAI-compatible path uses,
should an upstream ever echo them; auth errors get a fixed message.
"""

from __future__ import annotations

import functools
import os
import re
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
from providers.ratelimit_headers import parse_retry_after_s
from providers.redact import NO_SECRETS, Redactor

_MAX_MESSAGE_CHARS = 500
_LITELLM_PREFIX = re.compile(r"^litellm\.\w+:\s*")


@functools.cache
def load_litellm() -> Any:
    """Import litellm once, on first use, with the bundled (offline) cost map."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


@functools.cache
def _translation_table() -> tuple[tuple[type[BaseException], type[ProviderError]], ...]:
    """(litellm class, our class), most specific first: the first isinstance match wins."""
    e = load_litellm().exceptions
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


def _scrub(message: str, redact: Redactor) -> str:
    return redact(message)[:_MAX_MESSAGE_CHARS]


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
    e = load_litellm().exceptions
    if isinstance(exc, e.APIConnectionError) and not isinstance(exc, e.Timeout):
        return _wire_cause(exc) or UpstreamConnectError
    if isinstance(exc, e.InternalServerError | e.ServiceUnavailableError):
        cause = _wire_cause(exc)
        return cause if cause in (UpstreamConnectError, UpstreamTimeout) else target
    return target


def translate_litellm_error(
    exc: BaseException, provider: str, redact: Redactor = NO_SECRETS
) -> ProviderError:
    """Map one litellm exception to our hierarchy, by class; see the module docstring."""
    if isinstance(exc, ProviderError):
        return exc
    target = _target(exc)
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    is_api_error = isinstance(exc, load_litellm().exceptions.APIError)
    if target is UpstreamProtocolError and is_api_error and status is not None and status >= 500:
        target = UpstreamUnavailable
    if target is UpstreamTimeout:
        return UpstreamTimeout("no answer within the timeout", provider=provider, phase="total")
    if target is UpstreamConnectError:
        return UpstreamConnectError("could not connect to the upstream", provider=provider)
    if target is UpstreamProtocolError:
        return UpstreamProtocolError(
            f"upstream failure ({type(exc).__name__}): {_scrub(_upstream_message(exc), redact)}",
            provider=provider,
        )
    status_class, default_status = _STATUS_CLASSES[target]
    message = (
        "the provider rejected the gateway's credentials"
        if status_class is UpstreamAuthError
        else _scrub(_upstream_message(exc), redact)
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
