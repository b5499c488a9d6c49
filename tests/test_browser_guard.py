"""An open gateway (no admin key) on loopback is safe from web pages of other sites:
no cross-site request (CSRF) and no DNS-rebinding page can mint a key or spend."""

from __future__ import annotations

from typing import Any

import httpx

from tests.harness import config_for

HI = [{"role": "user", "content": "hi"}]


def _open_gateway(fake: Any, gateway: Any, tmp_path: Any, **settings: Any) -> tuple[Any, Any]:
    up = fake()
    gw = gateway(
        config_for({"a": up.url}),
        database_url=f"sqlite+aiosqlite:///{tmp_path}/g.db",
        ledger_spool_dir=tmp_path / "spool",
        **settings,
    )
    return gw, up


def _keys(gw: Any) -> list[Any]:
    return list(httpx.get(f"{gw.url}/admin/api/keys").json()["data"])


def test_cross_site_form_cannot_mint_a_key_or_spend(fake, gateway, tmp_path):
    gw, up = _open_gateway(fake, gateway, tmp_path)
    foreign = {"origin": "http://evil.example", "content-type": "text/plain"}
    minted = httpx.post(f"{gw.url}/admin/api/keys", content=b'{"name": "pwned"}', headers=foreign)
    spent = httpx.post(
        f"{gw.url}/v1/chat/completions", content=b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}',
        headers=foreign,
    )  # fmt: skip
    assert minted.status_code == spent.status_code == 403
    assert minted.json()["error"]["code"] == spent.json()["error"]["code"] == "origin_not_allowed"
    json_but_foreign = httpx.post(
        f"{gw.url}/admin/api/keys", json={"name": "pwned"}, headers={"origin": "null"}
    )  # a sandboxed frame
    assert json_but_foreign.status_code == 403
    not_json = httpx.post(
        f"{gw.url}/admin/api/keys", content=b'{"name": "x"}', headers={"content-type": "text/plain"}
    )
    assert not_json.status_code == 415 and not_json.json()["error"]["code"] == "not_json"
    assert _keys(gw) == [] and up.sim.requests == []
    # The gateway's own origin (its dashboard), and tools that send no Origin, still work.
    same = httpx.post(f"{gw.url}/admin/api/keys", json={"name": "ok"}, headers={"origin": gw.url})
    assert same.status_code == 201
    assert httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "m", "messages": HI}).status_code == 200


def test_dns_rebinding_host_is_refused_on_an_open_gateway(fake, gateway, tmp_path):
    gw, up = _open_gateway(fake, gateway, tmp_path, allowed_hosts="gw.internal")
    port = gw.url.rsplit(":", 1)[1]
    rebound = httpx.post(
        f"{gw.url}/admin/api/keys", json={"name": "pwned"}, headers={"host": f"evil.example:{port}"}
    )
    chat = httpx.post(
        f"{gw.url}/v1/chat/completions", json={"model": "m", "messages": HI}, headers={"host": "evil.example"}
    )
    assert rebound.status_code == chat.status_code == 403
    assert rebound.json()["error"]["code"] == "host_not_allowed"
    assert _keys(gw) == [] and up.sim.requests == []
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "gw.internal"):
        response = httpx.get(f"{gw.url}/v1/models", headers={"host": host})
        assert response.status_code == 200, (host, response.text)


def test_cors_is_off_unless_configured(fake, gateway, tmp_path):
    preflight = {
        "origin": "http://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    closed, _ = _open_gateway(fake, gateway, tmp_path)
    answer = httpx.options(f"{closed.url}/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in answer.headers
    opened, _ = _open_gateway(fake, gateway, tmp_path, cors_origins="http://app.example")
    answer = httpx.options(f"{opened.url}/v1/chat/completions", headers=preflight)
    assert answer.headers["access-control-allow-origin"] == "http://app.example"
    allowed = httpx.post(
        f"{opened.url}/v1/chat/completions",
        json={"model": "m", "messages": HI},
        headers={"origin": "http://app.example"},
    )
    assert (
        allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "http://app.example"
    )
