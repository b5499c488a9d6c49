"""`x-gateway-overhead-ms`: the gateway's own time on every proxied response, upstream excluded,
and the same figure in the ledger and in `/metrics`."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest

from gateway.simulator import Behaviour
from tests.harness import config_for, generation_record, wait_for

HI = [{"role": "user", "content": "hi"}]
SLOW_MS = 300  # an upstream this slow; none of it may show up in the gateway's overhead


def _overhead(headers: Any) -> float:
    value = float(headers["x-gateway-overhead-ms"])  # parseable, or this raises
    assert value >= 0
    return value


@pytest.fixture
def api(fake, gateway) -> openai.OpenAI:
    gw = gateway(config_for({"a": fake().url}))
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=20)


def test_every_openai_shaped_endpoint_carries_the_overhead(api):
    calls = {
        "chat": lambda: api.chat.completions.with_raw_response.create(model="m", messages=HI),
        "chat stream": lambda: api.chat.completions.with_raw_response.create(
            model="m", messages=HI, stream=True
        ),
        "completions": lambda: api.completions.with_raw_response.create(model="m", prompt="Once"),
        "completions stream": lambda: api.completions.with_raw_response.create(
            model="m", prompt="Once", stream=True
        ),
        "embeddings": lambda: api.embeddings.with_raw_response.create(model="m", input=["one"]),
        "responses": lambda: api.responses.with_raw_response.create(model="m", input="hi"),
        "responses stream": lambda: api.responses.with_raw_response.create(
            model="m", input="hi", stream=True
        ),
    }
    for name, call in calls.items():
        raw = call()
        assert raw.status_code == 200, name
        _overhead(raw.headers)
        raw.parse()  # the body is whole and well-formed too (a stream is read to its end)
        if "stream" in name:
            list(raw.parse())


def test_anthropic_messages_carry_the_overhead(fake, gateway):
    gw = gateway(config_for({"a": fake().url}))
    client = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0, timeout=20)
    raw = client.messages.with_raw_response.create(model="m", max_tokens=8, messages=HI)  # type: ignore[arg-type]
    assert raw.parse().content
    _overhead(raw.headers)
    with client.messages.with_streaming_response.create(model="m", max_tokens=8, messages=HI, stream=True) as s:  # type: ignore[arg-type]  # fmt: skip
        _overhead(s.headers)
        assert list(s.iter_lines())


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_slow_upstream_is_not_counted_as_overhead(fake, gateway, stream):
    slow = fake(behaviour=Behaviour(first_byte_ms=SLOW_MS))
    gw = gateway(config_for({"slow": slow.url}))
    body = {"model": "m", "messages": HI, "stream": stream}
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=body, timeout=20) as response:
        assert response.status_code == 200
        head = _overhead(response.headers)
        response.read()
    assert head < SLOW_MS
    record = generation_record(gw.url, response.headers["x-request-id"])
    assert 0 <= record["overhead_ms"] < SLOW_MS  # the whole request, booked
    assert record["latency_ms"] >= SLOW_MS  # while the request itself did take that long


def test_overhead_reaches_metrics(fake, gateway):
    gw = gateway(config_for({"a": fake().url}), admin_key="admin-secret")
    api = openai.OpenAI(base_url=gw.url + "/v1", api_key="admin-secret", max_retries=0, timeout=20)
    api.chat.completions.create(model="m", messages=HI)
    auth = {"authorization": "Bearer admin-secret"}

    def counted() -> float:
        scrape = httpx.get(f"{gw.url}/metrics", headers=auth).text
        lines = [line for line in scrape.splitlines() if line.startswith("gateway_overhead_seconds_count")]
        return sum(float(line.split()[-1]) for line in lines)

    assert wait_for(counted) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_overhead_is_booked_in_the_ledger(fake, gateway, tmp_path, stream):
    gw = gateway(
        config_for({"a": fake().url}),
        database_url=f"sqlite+aiosqlite:///{tmp_path}/g.db",
        ledger_spool_dir=tmp_path / "spool",
        admin_key="admin-secret",
    )
    auth = {"authorization": "Bearer admin-secret"}
    body = {"model": "m", "messages": HI, "stream": stream}
    with httpx.stream(
        "POST", f"{gw.url}/v1/chat/completions", json=body, headers=auth, timeout=20
    ) as response:
        assert response.status_code == 200
        response.read()
    request_id = response.headers["x-request-id"]

    def row() -> dict[str, Any] | None:
        rows = httpx.get(f"{gw.url}/admin/api/ledger", headers=auth).json()["data"]
        return next((r for r in rows if r["request_id"] == request_id), None)

    booked = wait_for(row)
    record = httpx.get(f"{gw.url}/v1/generation", params={"id": request_id}, headers=auth).json()["data"]
    assert booked["overhead_ms"] is not None and booked["overhead_ms"] >= 0
    assert booked["overhead_ms"] == pytest.approx(record["overhead_ms"])
