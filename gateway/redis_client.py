"""The Redis client for anything on the request path: one bounded pool per use.

redis-py's default pool opens a new connection for every concurrent command and
has no ceiling, so a burst of 200 requests opens 200 connections at once; under
load some of those connects time out, and a limit check that times out fails open
(a budget overshoots). A `BlockingConnectionPool` keeps at most `max_connections`
and makes the rest wait for a free one, which takes well under a millisecond when
commands do.
"""

from __future__ import annotations

from typing import Any

MAX_CONNECTIONS = 64


def redis_client(
    url: str, timeout_s: float, *, max_connections: int = MAX_CONNECTIONS, **options: Any
) -> Any:
    """An asyncio Redis client that owns its bounded pool (closed by the client's `aclose`)."""
    import redis.asyncio as aioredis

    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,  # waiting for a free connection
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        **options,
    )
    return aioredis.Redis.from_pool(pool)
