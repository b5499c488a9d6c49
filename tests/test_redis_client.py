"""The request-path Redis client keeps a bounded pool: a burst waits for a free
connection instead of opening one connection per concurrent command."""

from __future__ import annotations

import asyncio
import uuid

from gateway.redis_client import redis_client
from tests.harness import redis_url


async def test_a_burst_shares_a_bounded_pool():
    name = f"gwtest-pool-{uuid.uuid4().hex[:8]}"
    client = redis_client(redis_url(), timeout_s=5, max_connections=4, client_name=name)
    observer = redis_client(redis_url(), timeout_s=5)
    try:
        results = await asyncio.gather(*(client.ping() for _ in range(200)))
        assert results == [True] * 200
        listed = await observer.client_list()
        mine = [c for c in listed if c.get("name") == name]
        assert 1 <= len(mine) <= 4, len(mine)
    finally:
        await client.aclose()
        await observer.aclose()
