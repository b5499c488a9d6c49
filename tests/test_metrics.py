"""`/metrics`: guarded by the admin key or the metrics token, parsed with prometheus_client's parser."""

from __future__ import annotations

from typing import Any

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from gateway.simulator import Behaviour
from tests.harness import config_for, wait_for

ADMIN = "admin-secret-for-metrics"
MESSAGES = [{"role": "user", "content": "hi"}]


def _scrape(url: str, token: str | None = ADMIN) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def _value(families: dict[str, Any], name: str, **labels: str) -> float:
    family_name = name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    total = 0.0
    for sample in families[family_name].samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            total += sample.value
    return total


def test_metrics_count_requests_errors_tokens_and_state(fake, gateway):
    broken, good = fake(behaviour=Behaviour(status=500)), fake(behaviour=Behaviour(completion_tokens=5))
    gw = gateway(config_for({"broken": broken.url, "good": good.url}), admin_key=ADMIN)
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=ADMIN, max_retries=0, timeout=30)
    client.chat.completions.create(model="m", messages=MESSAGES)
    list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    good.sim.behaviour = Behaviour(status=500)
    try:
        client.chat.completions.create(model="m", messages=MESSAGES)
    except openai.APIStatusError as error:
        assert error.status_code == 502

    def booked() -> dict[str, Any] | None:
        families = _scrape(gw.url)
        done = _value(families, "gateway_requests_total", model="m")
        return families if done >= 3 else None

    families = wait_for(booked)
    assert (
        _value(families, "gateway_requests_total", model="m", deployment="good/good-model", status="200") == 2
    )
    assert _value(families, "gateway_errors_total", model="m", status="502") == 1
    assert _value(families, "gateway_request_duration_seconds_count", model="m") == 2
    assert _value(families, "gateway_time_to_first_token_seconds_count", deployment="good/good-model") == 2
    assert _value(families, "gateway_overhead_seconds_count", model="m") == 2
    assert _value(families, "gateway_output_tokens_total", model="m", provider="good") == 10
    assert _value(families, "gateway_input_tokens_total", model="m", provider="good") > 0
    assert _value(families, "gateway_cost_usd_total", model="m", provider="good") > 0
    assert _value(families, "gateway_in_flight", deployment="good/good-model") == 0
    states = {
        s.labels["state"]: s.value
        for s in families["gateway_breaker_state"].samples
        if s.labels["deployment"] == "broken/broken-model"
    }
    assert sum(states.values()) == 1 and set(states) == {"closed", "open", "half_open"}
    assert "gateway_ledger_queue_rows" in families and "gateway_ledger_spool_bytes" in families
    assert _value(families, "gateway_dependency_up", dependency="database") == 1


def test_metrics_need_the_admin_key_or_the_metrics_token(fake, gateway):
    upstream = fake()
    gw = gateway(config_for({"up": upstream.url}), admin_key=ADMIN, metrics_token="scraper-token")
    assert httpx.get(f"{gw.url}/metrics", timeout=10).status_code == 401
    refused = httpx.get(f"{gw.url}/metrics", headers={"authorization": "Bearer wrong"}, timeout=10)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert "gateway_requests" in _scrape(gw.url, "scraper-token")
    assert "gateway_requests" in _scrape(gw.url, ADMIN)
