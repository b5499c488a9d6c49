"""`Behaviour`: the knobs that decide how a simulated upstream answers a request.

Every failure the gateway must survive — slow first byte, slow stream, rate limits,
5xx, a connection that dies or hangs mid-stream, a body that is not JSON, a
vLLM-style error event inside a 200 stream — is one field here, so a test states
the scenario in one line and the simulator needs no test-specific code paths.

The defaults give a healthy, instant, 8-word answer. `Behaviour.from_mapping`
builds one from JSON for the HTTP control endpoint and rejects unknown fields: a
misspelt knob must fail loudly rather than silently produce a healthy answer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Status → (error type, error code, message): what OpenAI-compatible providers send.
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", "permission_denied", "You are not allowed to use this model."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    408: ("timeout", "timeout", "Request timed out."),
    413: ("invalid_request_error", "request_too_large", "Request too large."),
    422: ("invalid_request_error", "unprocessable_entity", "Unprocessable request."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", "server_error", "The server had an error while processing your request."),
    502: ("server_error", "bad_gateway", "Bad gateway."),
    503: (
        "server_error",
        "service_unavailable",
        "The engine is currently overloaded, please try again later.",
    ),
    504: ("server_error", "gateway_timeout", "Gateway timeout."),
}

CONTEXT_LENGTH_MESSAGE = (
    "This model's maximum context length is 8192 tokens. However, your messages resulted in "
    "9000 tokens. Please reduce the length of the messages."
)


@dataclass
class ErrorReply:
    """The resolved OpenAI error envelope for a non-200 behaviour."""

    status: int
    message: str
    type: str
    code: str | None
    param: str | None


@dataclass
class Behaviour:
    """How the next request(s) are answered; see the module docstring for why."""

    status: int = 200
    error_message: str | None = None
    # Override the envelope's `type` / `code`; by default they follow the status.
    error_type: str | None = None
    error_code: str | None = None
    retry_after_s: float | None = None
    first_byte_ms: float = 0
    chunk_gap_ms: float = 0
    completion_tokens: int = 8
    die_after_chunks: int | None = None
    hang_after_chunks: int | None = None
    garbage: bool = False
    garbage_after_chunks: int | None = None
    error_event_after_chunks: int | None = None
    omit_usage: bool = False
    # Replace the usage object the upstream reports (e.g. impossible negative counts).
    usage: dict[str, Any] | None = None
    # Put the request's headers into the error message, as some proxies do.
    echo_headers: bool = False
    ratelimit_headers: dict[str, str] = field(default_factory=dict)
    content: str | None = None
    # Tool calls the answer ends with: [{"name": ..., "arguments": {...} or "json"}, ...].
    tool_calls: list[dict[str, Any]] | None = None
    # vLLM /metrics gauges.
    queue_waiting: int = 0
    kv_cache_usage: float = 0.1

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Behaviour:
        """Build from JSON (the control endpoint); unknown fields raise ValueError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown Behaviour field(s): {', '.join(unknown)}")
        try:
            return cls(**dict(data))
        except TypeError as exc:  # pragma: no cover - only reachable with odd mappings
            raise ValueError(str(exc)) from exc

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def error(self) -> ErrorReply:
        """The error envelope this behaviour answers with (only meaningful when status != 200).

        A 400 whose message mentions the maximum context length gets OpenAI's
        `context_length_exceeded` code unless one is given, so a test only has to
        set the status and the message to exercise the gateway's context handling.
        """
        kind, code, message = _ERRORS.get(self.status, _fallback(self.status))
        message = self.error_message or message
        param = None
        if self.status == 400 and "maximum context length" in message:
            code, param = "context_length_exceeded", "messages"
        return ErrorReply(
            status=self.status,
            message=message,
            type=self.error_type or kind,
            code=self.error_code if self.error_code is not None else code,
            param=param,
        )

    def retry_after_header(self) -> str | None:
        """`Retry-After` value: whole seconds as an integer string, else as given."""
        if self.retry_after_s is None:
            return None
        seconds = float(self.retry_after_s)
        return str(int(seconds)) if seconds.is_integer() else repr(seconds)


def _fallback(status: int) -> tuple[str, str | None, str]:
    if status >= 500:
        return ("server_error", "server_error", f"Upstream error {status}.")
    return ("invalid_request_error", None, f"Request failed with status {status}.")
