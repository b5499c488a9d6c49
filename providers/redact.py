"""Scrubbing secrets out of text that comes from an upstream.

Some proxies and misconfigured servers echo the request — headers included — in
their error bodies, so an upstream's message may carry the gateway's own provider
key. Every piece of upstream text that enters the gateway (error messages, codes and
params, error events inside streams, litellm's exception text) goes through one
`Redactor` before it can reach a client, a record, the ledger or a log line.

A `Redactor` removes two things: every configured secret (each provider's API key
and credential-bearing header values, as known at start-up), verbatim; and any value
following an `Authorization`, `Proxy-Authorization`, `api-key` or `x-api-key` name,
or a `Bearer …` token, whatever it is. Its regular expressions are compiled once,
when the runtime is built; scrubbing is one `sub` per pattern.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
# Shorter "secrets" would mask ordinary words; real keys are far longer.
MIN_SECRET_CHARS = 8

# `authorization: Bearer sk-…`, `"x-api-key": "…"`, `api-key=…`: the header's value, whatever its form.
_HEADER_VALUE = re.compile(
    r"""(?ix)
    (\b(?:proxy-)?authorization|\bx-api-key|\bapi[-_]key)   # the header's name
    (["']?\s*[:=]\s*["']?)                                  # separator, maybe quoted
    (?:(?:bearer|basic|token)\s+)?                          # an auth scheme
    [^\s"',;}\]]+                                           # the value
    """
)
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}")


class Redactor:
    """Removes configured secrets and credential header values from text."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        found = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, found))) if found else None

    def __call__(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(MASK, text)
        text = _HEADER_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
        return _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self(text)


NO_SECRETS = Redactor()
