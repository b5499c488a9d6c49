"""Configuration of the response cache: the `cache:` section, a model's `cache`, a request's `cache`.

```yaml
cache:
  max_bytes: 67108864          # the in-process store's bound (without REDIS_URL)
  ttl_s: 3600                  # default lifetime of an entry
  max_ttl_s: 604800            # no request or model may ask for longer
  threshold: 0.85              # semantic similarity a hit needs, unless the model says otherwise
  shared:                      # namespaces shared by a group of virtual keys (by key name or id)
    - name: faq
      keys: [faq-bot-eu, faq-bot-us]
models:
  - name: llama-3.1-8b
    cache: {mode: semantic, ttl_s: 600, threshold: 0.92, sampled: false}
```

Off unless a model's config or a request's `"cache": {"mode": ..., "ttl_s": ...}` turns it
on. `sampled: true` lets a model's default apply to requests with `temperature > 0` too
(a request that asks for the cache itself always gets it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["exact", "semantic", "off"]
MAX_TTL_S = 365 * 24 * 3600


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CacheRequest(_Strict):
    """What a request says in its body's `cache` object (strict: `"ttl_s": "60"` is refused)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    mode: Mode | None = None
    ttl_s: int | None = Field(None, ge=1, le=MAX_TTL_S)


class ModelCacheConfig(_Strict):
    mode: Mode = "exact"
    ttl_s: int | None = Field(None, ge=1, le=MAX_TTL_S)
    threshold: float | None = Field(None, gt=0, le=1)
    sampled: bool = False  # apply to requests with temperature > 0 as well


class SharedNamespace(_Strict):
    name: str = Field(min_length=1, max_length=100)
    keys: list[str] = Field(min_length=1)


class CacheConfig(_Strict):
    max_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    ttl_s: int = Field(3600, ge=1, le=MAX_TTL_S)
    max_ttl_s: int = Field(7 * 24 * 3600, ge=1, le=MAX_TTL_S)
    threshold: float = Field(0.85, gt=0, le=1)  # chosen with bench.cache_quality (bench/README.md)
    shared: list[SharedNamespace] = Field(default_factory=list)
