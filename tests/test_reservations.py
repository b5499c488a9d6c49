"""Admission reserves the worst case, so concurrent requests cannot overshoot a limit
by more than one request: budgets at the dearest deployment a plan can reach, tokens
per minute by the prompt estimate plus the completion cap."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from gateway.simulator import Behaviour
from tests.harness import config_for, new_key, redis_url, runtime_of, wait_for

ADMIN = "admin-secret"
HI = [{"role": "user", "content": "hi"}]


def _burst(base: str, key: str, body: dict[str, Any], count: int) -> list[int]:
    async def go() -> list[int]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=count + 5)) as http:
            headers = {"authorization": f"Bearer {key}"}
            calls = [
                http.post(f"{base}/v1/chat/completions", json=body, headers=headers) for _ in range(count)
            ]
            return [r.status_code for r in await asyncio.gather(*calls)]

    return asyncio.run(go())


def _start(gateway: Any, config: str, tmp_path: Any, **settings: Any) -> Any:
    return gateway(
        config,
        admin_key=ADMIN,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/g.db",
        ledger_spool_dir=tmp_path / "spool",
        **settings,
    )


def _priced_config(cheap_url: str, dear_url: str) -> str:
    deployment = "      - provider: {p}\n        model: {p}-model\n        input_price_per_mtok: {i}\n        output_price_per_mtok: {o}\n"
    return (
        f"providers:\n  - name: cheap\n    base_url: {cheap_url}\n  - name: dear\n    base_url: {dear_url}\n"
        "models:\n  - name: cheap\n    deployments:\n"
        + deployment.format(p="cheap", i=1.0, o=2.0)
        + "  - name: dear\n    deployments:\n"
        + deployment.format(p="dear", i=100.0, o=100.0)
    )


def test_budget_reservation_covers_the_dearest_fallback(fake, gateway, tmp_path):
    """12 concurrent requests for a cheap model that fails over to a dear one: at most two get through.

    Each answer costs ~$0.04 at the dear prices against a $0.05 budget, so only a
    reservation at the dear prices stops the burst; at the cheap model's prices all
    twelve would be admitted together.
    """
    cheap = fake(behaviour=Behaviour(status=500), name="cheap")
    dear = fake(behaviour=Behaviour(first_byte_ms=1500, completion_tokens=400), name="dear")
    gw = _start(gateway, _priced_config(cheap.url, dear.url), tmp_path)
    key = new_key(gw.url, name="burst", budget_usd=0.05, budget_period="total")
    body = {"model": "cheap", "models": ["dear"], "messages": HI, "max_tokens": 400}
    statuses = _burst(gw.url, key["key"], body, 12)
    assert statuses.count(200) + statuses.count(402) == 12, statuses
    assert 1 <= statuses.count(200) <= 2, statuses  # overshoot bounded by one request

    admin = {"authorization": f"Bearer {ADMIN}"}

    def spent() -> Any:
        runtime_of(gw).accounts.ledger._wake.set()
        rows = httpx.get(f"{gw.url}/admin/api/spend", params={"group_by": "key"}, headers=admin).json()[
            "data"
        ]
        booked = [r for r in rows if r["group"] == "burst"]
        return booked if booked and sum(r["requests"] for r in booked) == 12 else None

    [booked] = wait_for(spent, timeout_s=10)
    assert booked["cost_usd"] <= 0.05 + 0.0401  # the budget plus at most one request's worst case


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_tpm_reserves_at_admission_so_a_burst_cannot_overshoot(backend, fake, gateway, tmp_path):
    """20 concurrent requests against tpm=30, each worth ~29 tokens: two are admitted, not twenty."""
    extra: dict[str, Any] = {"redis_url": redis_url()} if backend == "redis" else {}
    up = fake(behaviour=Behaviour(first_byte_ms=1500, completion_tokens=20))
    gw = _start(gateway, config_for({"a": up.url}), tmp_path, **extra)
    key = new_key(gw.url, tpm=30)
    statuses = _burst(gw.url, key["key"], {"model": "m", "messages": HI, "max_tokens": 20}, 20)
    assert statuses.count(200) + statuses.count(429) == 20, statuses
    assert 1 <= statuses.count(200) <= 2, statuses
    assert len(up.sim.requests) == statuses.count(200)


def test_tpm_without_max_tokens_reserves_the_configured_default(fake, gateway, tmp_path):
    """No max_tokens: the reservation uses GATEWAY_DEFAULT_MAX_TOKENS, and settles to the actual count."""
    up = fake(behaviour=Behaviour(completion_tokens=5))
    gw = _start(gateway, config_for({"a": up.url}), tmp_path, default_max_tokens=50)
    key = new_key(gw.url, tpm=100)
    headers = {"authorization": f"Bearer {key['key']}"}
    first = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "m", "messages": HI}, headers=headers)
    assert first.status_code == 200
    reserved = 100 - int(first.headers["x-ratelimit-remaining-tokens"])
    assert 50 < reserved < 70  # the prompt estimate plus the default of 50

    def settled() -> bool:  # after settling, only the actual ~10 tokens count: the next request sees them
        probe = httpx.post(
            f"{gw.url}/v1/chat/completions",
            json={"model": "m", "messages": HI, "max_tokens": 1},
            headers=headers,
        )
        return probe.status_code == 200 and int(probe.headers["x-ratelimit-remaining-tokens"]) > 60

    wait_for(settled, timeout_s=5)


def test_tokens_reserved_by_a_request_the_budget_refuses_are_given_back(fake, gateway, tmp_path):
    """A 402 after the tpm reservation must not eat the minute's tokens: it stays 402, never 429."""
    gw = _start(gateway, config_for({"a": fake().url}), tmp_path)
    key = new_key(gw.url, tpm=100, budget_usd=0.000001, budget_period="day")
    headers = {"authorization": f"Bearer {key['key']}"}
    body = {"model": "m", "messages": HI, "max_tokens": 10}
    assert httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers).status_code == 200

    def refused() -> int | None:
        status = httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers).status_code
        return status if status != 200 else None

    assert wait_for(refused, timeout_s=5) == 402  # the first answer's cost has settled
    statuses = [
        httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers).status_code for _ in range(8)
    ]
    assert statuses == [402] * 8, statuses  # each held ~20 tokens for a moment; 8 x 20 > 100 if kept
