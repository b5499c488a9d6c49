"""Stored responses in Redis, shared by every replica (see `gateway.responses_store`).

One string per response under `<state_prefix>:resp:<id>`, the owner inside the value
and the retention as the key's TTL, so Redis expires entries by itself and its
`maxmemory` policy bounds them; there is no per-replica capacity. A store that
cannot be reached is a 503 naming it on reads (a 404 would tell the client its
conversation is gone when it is not); a failed write is logged and the answer
still goes out — only a later continuation of it would fail.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from redis.exceptions import RedisError

from gateway.errors import GatewayError
from gateway.redis_client import redis_client
from gateway.responses_store import JSON, StoredResponse

log = logging.getLogger("gateway.responses")


def _unavailable() -> GatewayError:
    return GatewayError(
        503, "the stored-responses store (Redis) is unreachable; try again", code="store_unavailable"
    )


class RedisResponseStore:
    def __init__(self, url: str, retention_s: float, prefix: str = "gw", timeout_s: float = 1.0) -> None:
        self.retention_s = retention_s
        self._prefix = f"{prefix}:resp:"
        self._redis: Any = redis_client(url, timeout_s)

    async def put(self, owner: str, conversation: list[JSON], response: JSON) -> None:
        value = orjson.dumps({"owner": owner, "conversation": conversation, "response": response})
        try:
            await self._redis.set(
                self._prefix + response["id"], value, px=max(1, int(self.retention_s * 1000))
            )
        except RedisError as exc:
            log.warning("could not store response %s in Redis: %s", response["id"], type(exc).__name__)

    async def get(self, owner: str, response_id: str) -> StoredResponse | None:
        key = self._prefix + response_id
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                raw, ttl_ms = await pipe.get(key).pttl(key).execute()
        except RedisError as exc:
            raise _unavailable() from exc
        if raw is None:
            return None
        entry = orjson.loads(raw)
        if entry.get("owner") != owner:
            return None
        expires_at = time.time() + max(int(ttl_ms), 0) / 1000
        return StoredResponse(owner, expires_at, entry["conversation"], entry["response"])

    async def delete(self, owner: str, response_id: str) -> bool:
        if await self.get(owner, response_id) is None:
            return False
        try:
            return bool(await self._redis.delete(self._prefix + response_id))
        except RedisError as exc:
            raise _unavailable() from exc

    async def aclose(self) -> None:
        await self._redis.aclose()
