"""Who may reach what: a key's model allow-list covers every model a request can reach,
and a key reads only its own generation records."""

from __future__ import annotations

from typing import Any

import httpx

from gateway.simulator import Behaviour
from tests.harness import config_for, new_key, wait_for

ADMIN = "admin-secret"
HI = [{"role": "user", "content": "hi"}]


def _two_models(fake: Any, gateway: Any, tmp_path: Any, a: Behaviour | None = None) -> tuple[Any, Any, Any]:
    up_a, up_b = fake(behaviour=a, name="a"), fake(name="b")
    gw = gateway(
        config_for(
            {"a": up_a.url, "b": up_b.url}, models={"m": [("a", "a-model")], "other": [("b", "b-model")]}
        ),
        admin_key=ADMIN,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/g.db",
        ledger_spool_dir=tmp_path / "spool",
    )
    return gw, up_a, up_b


def _chat(base: str, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        json={"messages": HI, **body},
        headers={"authorization": f"Bearer {key}"},
        timeout=20,
    )


def test_allow_list_covers_every_model_a_request_can_reach(fake, gateway, tmp_path):
    """A key allowed only `m` cannot reach `other` through `models[]`, whatever the preferences."""
    gw, up_a, up_b = _two_models(fake, gateway, tmp_path, a=Behaviour(status=500))
    key = new_key(gw.url, models=["m"])["key"]
    bodies = [
        {"model": "m", "models": ["other"], "provider": {"ignore": ["a"]}},  # m unreachable: only other left
        {"model": "m", "models": ["m", "other"]},  # m fails (500) and would fall back to other
        {"models": ["other"]},
    ]
    for body in bodies:
        response = _chat(gw.url, key, body)
        assert response.status_code == 403, (body, response.text)
        error = response.json()["error"]
        assert error["code"] == "model_not_allowed" and "'other'" in error["message"], error
    assert up_a.sim.requests == [] and up_b.sim.requests == []  # refused before anything was sent
    assert _chat(gw.url, key, {"model": "m"}).status_code == 502  # m itself is still allowed (and fails)


def test_generation_records_are_visible_only_to_their_own_key(fake, gateway, tmp_path):
    gw, _, _ = _two_models(fake, gateway, tmp_path)
    mine, theirs = new_key(gw.url, name="mine")["key"], new_key(gw.url, name="theirs")["key"]
    answered = _chat(gw.url, mine, {"model": "m"})
    assert answered.status_code == 200, answered.text
    request_id = answered.headers["x-request-id"]

    def lookup(token: str) -> httpx.Response:
        return httpx.get(
            f"{gw.url}/v1/generation", params={"id": request_id}, headers={"authorization": f"Bearer {token}"}
        )

    own = wait_for(lambda: (r := lookup(mine)).status_code == 200 and r, timeout_s=10)
    assert own.json()["data"]["request_id"] == request_id
    assert lookup(ADMIN).status_code == 200
    foreign = lookup(theirs)
    missing = httpx.get(
        f"{gw.url}/v1/generation", params={"id": "gen-none"}, headers={"authorization": f"Bearer {theirs}"}
    )
    assert foreign.status_code == 404 and missing.status_code == 404
    assert foreign.json()["error"]["code"] == missing.json()["error"]["code"] == "generation_not_found"
