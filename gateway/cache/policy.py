"""Whether, how and where one request is cached: the decision made before anything is looked up.

In order:

1. the body's `cache` object is popped (it never goes upstream) and validated — a 400
   names the bad field;
2. the mode: the request's, else its model's config, else off. A model's default does
   not apply to a request with `temperature > 0` (a sampled answer is not meant to be
   repeated) unless the model says `sampled: true`; a request that asks itself is
   always served;
3. `n > 1` is never cached (one stored answer cannot be n different ones);
4. `Cache-Control: no-store` neither reads nor writes; `no-cache` skips the read and
   stores the fresh answer;
5. a `data_collection: deny` request never touches a shared namespace: its prompt and
   answer must not be served to another key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gateway.cache.config import CacheConfig, CacheRequest, ModelCacheConfig
from gateway.cache.keys import context_key, exact_key, last_user_text, namespace
from gateway.request_body import validation_error


@dataclass(slots=True)
class Ticket:
    """The cache's plan for one request: where its entry lives and whether to read and write it."""

    mode: str  # "exact" or "semantic"
    namespace: str
    model: str
    key: str
    ttl_s: int
    read: bool
    write: bool
    threshold: float
    text: str | None = None  # the last user turn (semantic mode)
    context: str | None = None  # hash of the rest (semantic mode)
    result: str = "miss"  # what the lookup found: "hit", "semantic-hit", "miss"
    score: float | None = None

    def header(self) -> str:
        return f"{self.result}; score={self.score:.4f}" if self.score is not None else self.result


def _asked(body: dict[str, Any]) -> CacheRequest | None:
    raw = body.pop("cache", None)
    if raw is None:
        return None
    try:
        return CacheRequest.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, prefix=("cache",)) from None


def _cache_control(headers: Mapping[str, str]) -> tuple[bool, bool]:
    """(read, write) as `Cache-Control` allows."""
    value = headers.get("cache-control")
    if not value:
        return True, True
    directives = {part.strip().lower() for part in value.split(",")}
    if "no-store" in directives:
        return False, False
    return "no-cache" not in directives, True


def _sampled(body: Mapping[str, Any]) -> bool:
    temperature = body.get("temperature")
    return isinstance(temperature, int | float) and temperature > 0


def decide(
    config: CacheConfig,
    models: Mapping[str, ModelCacheConfig],
    shared: Mapping[str, str],
    body: dict[str, Any],
    headers: Mapping[str, str],
    who: tuple[str | None, str],
    model: str,
    deny: bool,
    rag: Mapping[str, Any] | None,
) -> Ticket | None:
    """The ticket for this request, or None when it is not cached at all. Pops `body["cache"]`."""
    asked = _asked(body)
    configured = models.get(model)
    mode = asked.mode if asked is not None and asked.mode is not None else None
    if mode is None and configured is not None and (configured.sampled or not _sampled(body)):
        mode = configured.mode
    if mode is None or mode == "off" or (body.get("n") or 1) > 1:
        return None
    read, write = _cache_control(headers)
    if not (read or write):
        return None
    space = namespace(who[0], who[1], shared)
    if deny and space.startswith("shared:"):
        return None
    wanted = asked.ttl_s if asked is not None and asked.ttl_s is not None else None
    ttl = wanted or (configured.ttl_s if configured is not None else None) or config.ttl_s
    threshold = configured.threshold if configured is not None and configured.threshold else config.threshold
    ticket = Ticket(
        mode, space, model, exact_key(body, rag), min(ttl, config.max_ttl_s), read, write, threshold
    )
    if mode == "semantic":
        ticket.text = last_user_text(body.get("messages") or ())
        if ticket.text is not None:
            ticket.context = context_key(body, rag)
    return ticket
