"""Request log lines (`--log-format json`), and no secret in any log line or response."""

from __future__ import annotations

import json
import os

import httpx

from gateway.simulator import Behaviour
from tests.harness import config_for, serve_process

MESSAGES = [{"role": "user", "content": "hi"}]


def test_one_json_line_per_request_and_no_secret_anywhere(fake, tmp_path):
    provider_key = "sk-proj-" + os.urandom(24).hex()
    admin_key = "gw-admin-" + os.urandom(16).hex()
    broken, good = fake(behaviour=Behaviour(status=500)), fake()
    config = config_for(
        {"broken": broken.url, "good": good.url},
        broken={"api_key_env": "BROKEN_API_KEY"},
        good={"api_key_env": "GOOD_API_KEY"},
    )
    env = {"GOOD_API_KEY": provider_key, "BROKEN_API_KEY": provider_key + "b", "GATEWAY_ADMIN_KEY": admin_key}
    gateway = serve_process(tmp_path, config, env, ("--log-format", "json"))
    responses: list[httpx.Response] = []
    try:
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            admin = {"authorization": f"Bearer {admin_key}"}
            created = http.post("/admin/api/keys", json={"name": "search-app"}, headers=admin)
            responses.append(created)
            virtual = {"authorization": f"Bearer {created.json()['key']}"}
            chat = {"model": "m", "messages": MESSAGES}
            responses.append(http.post("/v1/chat/completions", json=chat, headers=virtual))
            responses.append(
                http.post("/v1/chat/completions", json={**chat, "stream": True}, headers=virtual)
            )
            responses.append(http.post("/v1/chat/completions", json=chat, headers=admin))
            responses.append(http.post("/v1/embeddings", json={"model": "m", "input": "x"}, headers=virtual))
            wrong = {"authorization": f"Bearer {created.json()['key']}x"}
            responses.append(http.post("/v1/chat/completions", json=chat, headers=wrong))
            good.sim.behaviour = Behaviour(status=401, error_message="Incorrect API key provided")
            responses.append(http.post("/v1/chat/completions", json=chat, headers=virtual))
            responses.append(http.get("/admin/api/ledger", headers=admin))
            responses.append(http.get("/metrics", headers=admin))
    finally:
        gateway.stop()
    assert good.sim.requests[0].headers["authorization"] == f"Bearer {provider_key}"  # the key was used
    statuses = [r.status_code for r in responses]
    assert statuses[:5] == [201, 200, 200, 200, 200] and statuses[5] == 401

    lines = gateway.log_path.read_text().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert entries[-1]["message"].startswith("Finished server process")  # flushed before the SIGTERM exit
    requests = [e for e in entries if e["logger"] == "gateway.requests"]
    assert len(requests) == 5  # the 401 for an unknown key has no owner and is not booked
    first = requests[0]
    assert first["key"] == "search-app" and first["model"] == "m" and first["status"] == 200
    assert first["deployment"] == "good/good-model" and first["attempts"] == 2
    assert first["route"] == "broken/broken-model;unavailable, good/good-model;ok"
    assert first["input_tokens"] > 0 and first["output_tokens"] > 0 and first["cost_usd"] > 0
    assert first["latency_ms"] > 0 and first["request_id"].startswith("gen-")
    assert requests[1]["streamed"] is True and requests[1]["ttft_ms"] > 0
    assert requests[2]["key"] == "admin"
    assert requests[4]["status"] >= 400 and requests[4]["error"]

    virtual_secret = created.json()["key"]
    secrets = [provider_key, provider_key + "b", admin_key, virtual_secret, virtual_secret[8:]]
    texts = [gateway.log_path.read_text()]
    for r in responses[1:]:
        texts += [r.text, json.dumps(dict(r.headers))]
    for secret in secrets:
        leaks = [t for t in texts if secret in t]
        assert not leaks, f"a secret appeared in {len(leaks)} log or response texts"
