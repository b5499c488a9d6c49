"""The transport's own guarantees: typed errors, whatever the HTTP library does underneath."""

from __future__ import annotations

import orjson
import pytest

from gateway.simulator import Behaviour
from providers.errors import UpstreamProtocolError
from providers.transport import TransportPool
from providers.types import Timeouts

BODY = orjson.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]})


@pytest.mark.parametrize("kind", ["aiohttp", "httpx"])
async def test_closing_the_pool_under_a_read_raises_a_typed_error(fake, kind):
    upstream = fake(behaviour=Behaviour(completion_tokens=50, chunk_gap_ms=50))
    pool = TransportPool(kind)
    url = f"{upstream.url}/chat/completions"
    stream = await pool.for_url(url).open_stream(
        url, BODY, {"content-type": "application/json"}, Timeouts(), "p"
    )
    chunks = stream.chunks()
    assert await chunks.__anext__()
    await pool.aclose()  # what shutdown does while streams are still in flight
    with pytest.raises(UpstreamProtocolError):
        async for _ in chunks:
            pass
    await stream.aclose()
