"""Hostile or careless input gets a 400 envelope, never a 500, and never a negative cost:
deep JSON, strings where bools belong, unbounded admin values, impossible upstream usage."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.request_body import MAX_JSON_DEPTH
from gateway.simulator import Behaviour
from tests.harness import config_for, generation_record

ADMIN = "admin-secret"
HI = [{"role": "user", "content": "hi"}]


def _nested(depth: int) -> Any:
    value: Any = "x"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def _envelope(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code", "param"}
    return dict(error)


@pytest.mark.parametrize("route", ["chat", "embeddings"])
def test_deeply_nested_json_is_400_and_nothing_is_sent(route, fake, gateway):
    up = fake()
    gw = gateway(config_for({"a": up.url}))
    if route == "chat":
        path, body = "/v1/chat/completions", {"model": "m", "messages": HI, "metadata": _nested(300)}
    else:
        path, body = "/v1/embeddings", {"model": "m", "input": ["hi"], "user": _nested(300)}
    with httpx.Client(base_url=gw.url, timeout=20) as http:
        error = _envelope(http.post(path, json=body), 400)
        assert "nested deeper" in error["message"]
        # Deep but within the bound still works, and the connection was not dropped.
        ok = {**body, "metadata" if route == "chat" else "user": _nested(MAX_JSON_DEPTH - 2)}
        assert http.post(path, json=ok).status_code == 200
    assert len(up.sim.requests) == 1


def test_stream_must_be_a_real_bool(fake, gateway):
    up = fake()
    gw = gateway(config_for({"a": up.url}))
    response = httpx.post(
        f"{gw.url}/v1/chat/completions", json={"model": "m", "messages": HI, "stream": "false"}, timeout=20
    )
    assert _envelope(response, 400)["param"] == "stream"
    assert up.sim.requests == []


@pytest.mark.parametrize(
    "spec",
    [
        {"rpm": 2**63},
        {"tpm": 2**63},
        {"rpm": 10**9 + 1},
        {"rpm": "5"},
        {"budget_usd": "Infinity"},
        {"budget_usd": 1e300},
        {"budget_usd": -1},
        {"models": []},
        {"models": [""]},
    ],
)
def test_admin_api_rejects_unbounded_or_mistyped_key_settings(spec, fake, gateway, tmp_path):
    gw = gateway(
        config_for({"a": fake().url}),
        admin_key=ADMIN,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/g.db",
        ledger_spool_dir=tmp_path / "spool",
    )
    admin = {"authorization": f"Bearer {ADMIN}"}
    response = httpx.post(f"{gw.url}/admin/api/keys", json={"name": "k", **spec}, headers=admin, timeout=20)
    _envelope(response, 400)
    assert httpx.get(f"{gw.url}/admin/api/keys", headers=admin).json()["data"] == []  # nothing was created


@pytest.mark.parametrize(
    "usage", [{"prompt_tokens": -1000000, "completion_tokens": -5}, {"completion_tokens": -1}]
)
@pytest.mark.parametrize("stream", [False, True])
def test_impossible_upstream_usage_is_estimated_and_never_costs_negative(usage, stream, fake, gateway):
    up = fake(behaviour=Behaviour(usage=usage))
    gw = gateway(config_for({"a": up.url}))
    body = {"model": "m", "messages": HI, "stream": stream, "stream_options": {"include_usage": True}}
    if not stream:
        del body["stream_options"]
    with httpx.Client(timeout=20) as http:
        response = http.post(f"{gw.url}/v1/chat/completions", json=body)
        assert response.status_code == 200
        if stream:
            import orjson

            chunks = [
                orjson.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data: {")
            ]
            reported = [c["usage"] for c in chunks if c.get("usage")][-1]
        else:
            reported = response.json()["usage"]
    assert reported["estimated"] is True and reported["cost"] > 0
    assert reported["prompt_tokens"] > 0 and reported["completion_tokens"] > 0
    record = generation_record(gw.url, response.headers["x-request-id"])
    assert record["usage_estimated"] is True and record["cost_usd"] > 0
