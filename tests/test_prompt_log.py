"""Prompt monitoring: opt-in by model or key, opt-outs, redaction, caps, retention, the admin view."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.harness import config_for, database_url, wait_for

ADMIN = "admin-key-for-prompt-tests"
SECRET_BITS = ("alice@example.com", "4111 1111 1111 1111", "sk-live-abcdefghijklmnopqrstuv")


def _config(fake_url: str, prompt_log: str) -> str:
    models = {"m": [("up", "up-model")], "other": [("up", "up-model")]}
    base = config_for(
        {"up": fake_url}, models, up={"data_collection": "deny"}
    )  # a provider that keeps nothing
    return base + "prompt_log:\n" + "".join(f"  {line}\n" for line in prompt_log.strip().splitlines())


def _detail(http: httpx.Client, request_id: str) -> dict[str, Any] | None:
    response = http.get(f"/admin/api/requests/{request_id}")
    return response.json() if response.status_code == 200 else None


def _chat(http: httpx.Client, key: str, model: str = "m", **extra: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}", **extra.pop("headers", {})}
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}
    response = http.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response


def test_kept_prompts_are_redacted_capped_and_shown_with_the_ledger_row(fake, gateway):
    upstream = fake()
    upstream.sim.behaviour.content = "the answer"
    prompt_log = """
models: [m]
exclude_keys: [quiet-app]
max_chars: 200
"""
    gw = gateway(_config(upstream.url, prompt_log), admin_key=ADMIN)
    with httpx.Client(base_url=gw.url, timeout=30, headers={"authorization": f"Bearer {ADMIN}"}) as http:
        keys = {
            name: http.post("/admin/api/keys", json={"name": name}).json()["key"]
            for name in ("app", "quiet-app")
        }
        skipped = [
            _chat(http, keys["app"], headers={"x-gateway-prompt-log": "off"}),
            _chat(http, keys["quiet-app"]),
            _chat(http, keys["app"], model="other"),
            _chat(http, keys["app"], provider={"data_collection": "deny"}),
        ]
        text = "mail " + " ".join(SECRET_BITS) + " " + "x" * 300
        kept = _chat(http, keys["app"], messages=[{"role": "user", "content": text}])
        streamed = http.post(
            "/v1/chat/completions",
            json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {keys['app']}"},
        )
        detail = wait_for(lambda: (d := _detail(http, kept.json()["id"])) and d["prompt"] and d)
        stream_id = streamed.headers["x-request-id"]
        stream_detail = wait_for(lambda: (d := _detail(http, stream_id)) and d["prompt"] and d)
        others = [wait_for(lambda r=r: _detail(http, r.json()["id"])) for r in skipped]

    assert detail["model"] == "m" and detail["status"] == 200 and detail["cost_usd"] > 0
    assert detail["attempts"][0]["deployment"] == "up/up-model" and detail["attempts"][0]["outcome"] == "ok"
    prompt = detail["prompt"]
    assert prompt["answer"] == "the answer"
    assert prompt["cap_chars"] == 200 and len(prompt["messages"]) == 200
    assert prompt["truncated"]["messages"] > 300
    assert "[REDACTED]" in prompt["messages"]
    assert not any(bit in prompt["messages"] for bit in SECRET_BITS)
    assert stream_detail["prompt"]["answer"] == "the answer" and stream_detail["streamed"] is True
    assert [o["prompt"] for o in others] == [None, None, None, None]


def test_the_admin_view_needs_the_admin_key_and_a_known_request(fake, gateway):
    gw = gateway(_config(fake().url, "enabled: true"), admin_key=ADMIN)
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        assert http.get("/admin/api/requests/gen-nope").status_code == 401
        missing = http.get("/admin/api/requests/gen-nope", headers={"authorization": f"Bearer {ADMIN}"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_prompts_past_retention_are_deleted_in_the_background(fake, gateway, tmp_path, kind):
    url, drop = database_url(kind, tmp_path)
    try:
        prompt_log = "enabled: true\nretention_days: 0.00003\npurge_interval_s: 0.2"
        gw = gateway(_config(fake().url, prompt_log), admin_key=ADMIN, database_url=url)
        with httpx.Client(base_url=gw.url, timeout=30, headers={"authorization": f"Bearer {ADMIN}"}) as http:
            request_id = _chat(http, ADMIN).json()["id"]
            wait_for(lambda: (d := _detail(http, request_id)) and d["prompt"])
            gone = wait_for(
                lambda: (d := _detail(http, request_id)) and d["prompt"] is None and d, timeout_s=20
            )
        assert gone["request_id"] == request_id  # the ledger row stays; only the prompt expired
        gw.stop()
    finally:
        drop()
