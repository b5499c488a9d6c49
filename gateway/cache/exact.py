"""Exact-match stores: Redis when `REDIS_URL` is set, else an in-process LRU bounded in bytes.

Both hold opaque entry bytes under (namespace, model, key), each with its own lifetime,
and can forget one namespace, one model or everything. Namespaces and models appear in
store keys only as fixed-length hashes (`keys.short`), so no name can inject a Redis
glob or collide with a separator.

A store that fails raises `CacheUnavailable`; the caller answers uncached.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Protocol

from gateway.cache.keys import short

ENTRY_OVERHEAD_BYTES = 160  # the key tuple and bookkeeping, roughly, per in-process entry


class CacheUnavailable(Exception):
    """The store could not be read or written (Redis down, Qdrant error)."""


class ExactStore(Protocol):
    name: str

    async def get(self, namespace: str, model: str, key: str) -> bytes | None: ...

    async def put(self, namespace: str, model: str, key: str, value: bytes, ttl_s: int) -> None: ...

    async def purge(self, namespace: str | None = None, model: str | None = None) -> int: ...

    async def stats(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


class MemoryStore:
    """An LRU of entry bytes; the least recently used go first once `max_bytes` is exceeded."""

    name = "memory"

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evicted = 0
        self._items: OrderedDict[tuple[str, str, str], tuple[float, bytes]] = OrderedDict()

    async def get(self, namespace: str, model: str, key: str) -> bytes | None:
        where = (short(namespace), short(model), key)
        item = self._items.get(where)
        if item is None:
            return None
        if item[0] <= time.monotonic():
            self._drop(where)
            return None
        self._items.move_to_end(where)
        return item[1]

    async def put(self, namespace: str, model: str, key: str, value: bytes, ttl_s: int) -> None:
        size = len(value) + ENTRY_OVERHEAD_BYTES
        if size > self.max_bytes:
            return
        where = (short(namespace), short(model), key)
        self._drop(where)
        self._items[where] = (time.monotonic() + ttl_s, value)
        self.bytes += size
        while self.bytes > self.max_bytes:
            oldest = next(iter(self._items))
            self._drop(oldest)
            self.evicted += 1

    def _drop(self, where: tuple[str, str, str]) -> None:
        item = self._items.pop(where, None)
        if item is not None:
            self.bytes -= len(item[1]) + ENTRY_OVERHEAD_BYTES

    async def purge(self, namespace: str | None = None, model: str | None = None) -> int:
        ns = short(namespace) if namespace is not None else None
        md = short(model) if model is not None else None
        doomed = [w for w in self._items if (ns is None or w[0] == ns) and (md is None or w[1] == md)]
        for where in doomed:
            self._drop(where)
        return len(doomed)

    async def stats(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "entries": len(self._items),
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
            "evicted": self.evicted,
        }

    async def aclose(self) -> None:
        self._items.clear()
        self.bytes = 0


class RedisStore:
    """Entries as Redis strings with an expiry, under `<prefix>:cache:<ns hash>:<model hash>:<key>`."""

    name = "redis"

    def __init__(self, url: str, prefix: str, timeout_s: float = 0.5) -> None:
        from gateway.redis_client import redis_client

        self._prefix = f"{prefix}:cache"
        self._redis = redis_client(url, timeout_s, retry_on_timeout=False)

    def _key(self, namespace: str, model: str, key: str) -> str:
        return f"{self._prefix}:{short(namespace)}:{short(model)}:{key}"

    async def get(self, namespace: str, model: str, key: str) -> bytes | None:
        try:
            value = await self._redis.get(self._key(namespace, model, key))
        except Exception as exc:
            raise CacheUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        return value.encode() if isinstance(value, str) else value

    async def put(self, namespace: str, model: str, key: str, value: bytes, ttl_s: int) -> None:
        try:
            await self._redis.set(self._key(namespace, model, key), value, ex=ttl_s)
        except Exception as exc:
            raise CacheUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    def _pattern(self, namespace: str | None, model: str | None) -> str:
        ns = short(namespace) if namespace is not None else "*"
        md = short(model) if model is not None else "*"
        return f"{self._prefix}:{ns}:{md}:*"

    async def _scan(self, pattern: str) -> list[bytes]:
        return [key async for key in self._redis.scan_iter(match=pattern, count=1000)]

    async def purge(self, namespace: str | None = None, model: str | None = None) -> int:
        try:
            doomed = await self._scan(self._pattern(namespace, model))
            for i in range(0, len(doomed), 500):
                await self._redis.unlink(*doomed[i : i + 500])
        except Exception as exc:
            raise CacheUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        return len(doomed)

    async def stats(self) -> dict[str, Any]:
        try:
            entries = len(await self._scan(self._pattern(None, None)))
        except Exception as exc:
            raise CacheUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        return {"backend": self.name, "entries": entries}

    async def aclose(self) -> None:
        await self._redis.aclose()
