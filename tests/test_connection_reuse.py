"""Upstream connections are pooled and reused, streams included, with either HTTP client."""

from __future__ import annotations

import httpx
import pytest

from tests.harness import config_for

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("client", ["aiohttp", "httpx"])
def test_sequential_requests_reuse_one_upstream_connection(fake, gateway, client):
    upstream = fake()
    gw = gateway(config_for({"up": upstream.url}), http_client=client)
    with httpx.Client(base_url=gw.url, timeout=20) as http:
        for i in range(20):
            if i % 2:
                assert http.post("/v1/chat/completions", json=BODY).status_code == 200
            else:
                with http.stream("POST", "/v1/chat/completions", json={**BODY, "stream": True}) as response:
                    assert list(response.iter_lines())[-2] == "data: [DONE]"
    peers = {request.client for request in upstream.sim.requests}
    assert len(upstream.sim.requests) == 20
    assert len(peers) <= 2, f"{len(peers)} upstream connections for 20 sequential requests"
