"""Defects the schemathesis run (`test_fuzz_openapi.py`) found, each pinned by a plain test.

- A 405 lacked `Allow` (RFC 9110), and where one path has routes for several methods it
  named only the first route's (`GET /v1/responses/{id}` hid `DELETE`).
- `/v1/messages` answered a 405 in OpenAI's shape, not Anthropic's like its other errors.
- A non-JSON POST to an admin path that takes no POST got 415 (the CSRF rule) instead of 405.
- `max_tokens: 16.0` or `rpm: 5.0` (whole numbers, integers by JSON Schema) were refused.
- The schema let through what the handlers refuse: `models: [""]`, empty embedding input,
  untyped Anthropic messages, a completions prompt of several strings.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.harness import config_for, new_key

ADMIN = "admin-secret"
AUTH = {"authorization": f"Bearer {ADMIN}"}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def gw(fake: Any, gateway: Any) -> Any:
    up = fake()
    server = gateway(config_for({"a": up.url}), admin_key=ADMIN)
    server.upstream = up
    return server


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/responses/resp_1", {"GET", "HEAD", "DELETE"}),
        ("PATCH", "/admin/api/keys", {"GET", "HEAD", "POST"}),
        ("TRACE", "/v1/chat/completions", {"POST"}),
    ],
)
def test_a_405_lists_every_method_of_the_path(gw, method, path, allowed):
    response = httpx.request(method, f"{gw.url}{path}", headers=AUTH, timeout=30)
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_both_methods_of_one_path_still_work(gw):
    made = new_key(gw.url, ADMIN)
    assert (
        httpx.get(f"{gw.url}/admin/api/keys", headers=AUTH, timeout=30).json()["data"][0]["id"] == made["id"]
    )
    assert httpx.get(f"{gw.url}/admin/api/keys/{made['id']}", headers=AUTH, timeout=30).status_code == 200
    revoked = httpx.delete(f"{gw.url}/admin/api/keys/{made['id']}", headers=AUTH, timeout=30)
    assert revoked.json() == {"id": made["id"], "revoked": True}


def test_a_405_on_the_messages_api_is_in_anthropics_shape(gw):
    response = httpx.get(f"{gw.url}/v1/messages", headers=AUTH, timeout=30)
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "Method Not Allowed: GET /v1/messages"},
    }


def test_a_form_post_to_an_admin_path_without_post_gets_405_and_to_keys_still_415(gw):
    form = {"content-type": "text/plain", **AUTH}
    other = httpx.post(f"{gw.url}/admin/api/spend", content=b"x", headers=form, timeout=30)
    assert other.status_code == 405 and set(other.headers["allow"].split(", ")) == {"GET", "HEAD"}
    keys = httpx.post(f"{gw.url}/admin/api/keys", content=b'{"name": "x"}', headers=form, timeout=30)
    assert keys.status_code == 415 and keys.json()["error"]["code"] == "not_json"
    docs = httpx.post(f"{gw.url}/admin/api/rag/c/documents", content=b"{}", headers=form, timeout=30)
    assert docs.status_code == 415
    assert httpx.get(f"{gw.url}/admin/api/keys", headers=AUTH, timeout=30).json()["data"] == []


def test_whole_floats_are_integers_and_reach_the_upstream_as_integers(gw):
    key = new_key(gw.url, ADMIN, rpm=5.0, tpm=1000.0)
    assert (key["rpm"], key["tpm"]) == (5, 1000)
    client = {"authorization": f"Bearer {key['key']}"}
    body = {"model": "m", "messages": HI, "max_tokens": 16.0, "n": 1.0}
    answered = httpx.post(f"{gw.url}/v1/chat/completions", json=body, headers=client, timeout=30)
    assert answered.status_code == 200, answered.text
    sent = gw.upstream.sim.requests[-1].body
    assert sent["max_tokens"] == 16 and isinstance(sent["max_tokens"], int) and isinstance(sent["n"], int)
    for bad in ({"max_tokens": 16.5}, {"max_tokens": True}, {"max_tokens": "16"}):
        refused = httpx.post(
            f"{gw.url}/v1/chat/completions", json={**body, **bad}, headers=client, timeout=30
        )
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "max_tokens"
    fractional = httpx.post(
        f"{gw.url}/admin/api/keys", json={"name": "k", "rpm": 5.5}, headers=AUTH, timeout=30
    )
    assert fractional.status_code == 400


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"model": "m", "messages": HI, "models": [""]}, "models[0]"),
        ("/v1/embeddings", {"model": "m", "input": ""}, "input"),
        ("/v1/completions", {"model": "m", "prompt": ["a", "b"]}, "prompt"),
    ],
)
def test_what_the_schema_refuses_the_gateway_refuses_with_the_field_named(gw, path, body, param):
    response = httpx.post(f"{gw.url}{path}", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_anthropic_messages_are_typed_by_role(gw):
    bad = {"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": [{"type": "image"}]}]}
    response = httpx.post(f"{gw.url}/v1/messages", json=bad, headers=AUTH, timeout=30)
    assert response.status_code == 400 and response.json()["type"] == "error"
    thinking = [{"type": "thinking", "thinking": "…", "signature": "s"}, {"type": "text", "text": "so"}]
    turns = [*HI, {"role": "assistant", "content": thinking}, {"role": "user", "content": "go on"}]
    ok = httpx.post(
        f"{gw.url}/v1/messages",
        json={"model": "m", "max_tokens": 5, "messages": turns},
        headers=AUTH,
        timeout=30,
    )
    assert ok.status_code == 200, ok.text
