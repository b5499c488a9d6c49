"""Parse upstream rate-limit headers into `RateLimitInfo` for the router.

Most providers use OpenAI's names (`x-ratelimit-remaining-requests`, `…-tokens`,
`…-reset-requests` as a Go-style duration like `2m59.56s` or `20ms`) and the
standard `retry-after` (seconds or an HTTP date). Together uses its own:
`x-ratelimit-limit` / `-remaining` / `-reset` for requests and
`x-tokenlimit-limit` / `-remaining` for tokens; they are read when OpenAI's are absent.
"""

from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime

from providers.types import RateLimitInfo

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration_s(value: str | None) -> float | None:
    """`1h2m3.5s`, `20ms`, `7.66s` or plain seconds `30` → seconds; None when unparseable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def parse_retry_after_s(value: str | None) -> float | None:
    """`Retry-After` as delta-seconds or an HTTP date → seconds from now (never negative)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def parse_rate_limit_headers(headers: dict[str, str]) -> RateLimitInfo:
    """Headers must already be lower-cased (the transport does it)."""
    retry_after = parse_retry_after_s(headers.get("retry-after"))
    if retry_after is None and "retry-after-ms" in headers:
        ms = _int(headers.get("retry-after-ms"))
        retry_after = ms / 1000 if ms is not None else None
    get = headers.get
    return RateLimitInfo(
        limit_requests=_int(get("x-ratelimit-limit-requests") or get("x-ratelimit-limit")),
        remaining_requests=_int(get("x-ratelimit-remaining-requests") or get("x-ratelimit-remaining")),
        limit_tokens=_int(get("x-ratelimit-limit-tokens") or get("x-tokenlimit-limit")),
        remaining_tokens=_int(get("x-ratelimit-remaining-tokens") or get("x-tokenlimit-remaining")),
        reset_requests_s=parse_duration_s(get("x-ratelimit-reset-requests") or get("x-ratelimit-reset")),
        reset_tokens_s=parse_duration_s(headers.get("x-ratelimit-reset-tokens")),
        retry_after_s=retry_after,
    )
