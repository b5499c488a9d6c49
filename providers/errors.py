"""Typed errors for everything that can go wrong talking to an upstream.

Every failure is raised as one of these, never as a library exception: the transport
module translates httpx/aiohttp exceptions, the adapters translate HTTP statuses and
bodies, the litellm adapter translates litellm's exceptions. Callers (the router's
executor, the gateway) therefore reason about one hierarchy:

    ProviderError                      retryable?  meaning
    ├── UpstreamConnectError           yes         could not connect / connection refused or reset
    ├── UpstreamTimeout                yes         a deadline passed (which one is in `phase`)
    ├── UpstreamProtocolError          yes         the upstream sent something that is not its API
    │                                              (garbage body, broken chunk, died mid-transfer)
    ├── UpstreamStreamError            yes*        the upstream reported an error inside a stream
    └── UpstreamStatusError            by status   the upstream answered with an HTTP error
        ├── UpstreamRateLimited        yes         429 (carries retry_after_s)
        ├── UpstreamUnavailable        yes         5xx (503 may carry retry_after_s)
        ├── UpstreamAuthError          yes         401/403: our key for that provider is wrong;
        │                                          another provider may still serve the request
        ├── ContextLengthExceeded      yes**       the prompt is too long for this deployment
        └── UpstreamBadRequest         no          any other 4xx: the client's request is at fault

    *  only before the stream's first content: once content has gone to the client
       nothing is retried in place; see the executor.
    ** only on a deployment with a longer context window.

`retryable` means "another deployment might succeed"; the executor decides what to do.
Messages never contain credentials: they are built from the status, the provider
name and the upstream's own error message, never from request headers.
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base of every upstream failure; `provider` names the deployment's provider."""

    retryable: bool = True
    error_type: str = "upstream_error"

    def __init__(self, message: str, *, provider: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status

    def __str__(self) -> str:
        prefix = f"{self.provider}: " if self.provider else ""
        return f"{prefix}{self.message}"


class UpstreamConnectError(ProviderError):
    error_type = "connect_error"


class UpstreamTimeout(ProviderError):
    """A deadline passed; `phase` is one of connect, first_byte, idle, total."""

    error_type = "timeout"

    def __init__(self, message: str, *, provider: str = "", phase: str = "total") -> None:
        super().__init__(message, provider=provider)
        self.phase = phase


class UpstreamProtocolError(ProviderError):
    error_type = "protocol_error"


class UpstreamStreamError(ProviderError):
    """The upstream put an error event into an already-started stream (vLLM does this)."""

    error_type = "stream_error"


class UpstreamStatusError(ProviderError):
    """The upstream answered with an HTTP error status."""

    error_type = "upstream_status"

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int,
        code: str | None = None,
        param: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, status=status)
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s


class UpstreamRateLimited(UpstreamStatusError):
    error_type = "rate_limited"


class UpstreamUnavailable(UpstreamStatusError):
    error_type = "unavailable"


class UpstreamAuthError(UpstreamStatusError):
    error_type = "provider_auth"


class ContextLengthExceeded(UpstreamStatusError):
    error_type = "context_length_exceeded"


class UpstreamBadRequest(UpstreamStatusError):
    retryable = False
    error_type = "bad_request"
