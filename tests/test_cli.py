"""`gateway serve` as users start it: a real process, the demo config, the safety checks."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai

from gateway.app import create_app
from gateway.config import parse_config
from tests.harness import GatewayProcess, ServerThread, clean_env, config_for, current_namespace, settings

GATEWAY = [sys.executable, "-m", "gateway.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_refuses_public_bind_without_admin_key():
    result = subprocess.run(
        [*GATEWAY, "serve", "--host", "0.0.0.0", "--port", str(_free_port())],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(),
    )
    assert result.returncode == 2
    assert "GATEWAY_ADMIN_KEY" in result.stderr and "refusing" in result.stderr


def test_bad_config_exits_with_field_and_line(tmp_path: Path):
    config = tmp_path / "gw.yaml"
    config.write_text("providers:\n  - name: groq\n    timeout: 5\nmodels: []\n")
    result = subprocess.run(
        [*GATEWAY, "serve", "--config", str(config), "--port", str(_free_port())],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(),
    )
    assert result.returncode == 2
    assert f"{config}:3: providers[0].timeout: Extra inputs are not permitted" in result.stderr


def test_demo_serve_routes_streams_and_costs_with_no_keys(tmp_path: Path):
    process = GatewayProcess(None, {}, tmp_path / "serve.log").wait_ready()
    try:
        base = process.url
        models = httpx.get(f"{base}/v1/models", timeout=5).json()["data"]
        assert models and all(m["simulated"] for m in models)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=30)
        answer = client.chat.completions.create(model="sonar", messages=[{"role": "user", "content": "hi"}])
        annotations = answer.choices[0].message.annotations or []
        assert annotations and annotations[0].type == "url_citation"
        assert annotations[0].url_citation.url.startswith("https://")
        assert (answer.usage.model_extra or {})["cost"] > 0  # type: ignore[union-attr]
        text = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="llama-3.1-8b", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            if c.choices
        )
        assert text.startswith("Simulated")
        log_text = (tmp_path / "serve.log").read_text()
        assert "SIMULATED" in log_text
    finally:
        process.stop()


def test_on_started_runs_once_the_app_is_built_and_before_the_first_request(fake, tmp_path):
    """`gateway serve` freezes the heap from this hook: the lifespan must have built everything by then."""
    config = parse_config(config_for({"up": fake().url}), "test-config.yaml")
    config.routing.state_prefix = current_namespace()
    resolved = settings(tmp_path)
    seen: list[tuple[bool, bool]] = []
    outer: list[Any] = []

    def on_started() -> None:
        app = outer[0]
        while not hasattr(app, "state"):
            app = app.app
        runtime = getattr(app.state, "runtime", None)
        seen.append((runtime is not None and runtime.accounts is not None, runtime.routing is not None))

    outer.append(create_app(resolved, config, on_started=on_started))
    with ServerThread(outer[0], resolved) as server:
        assert seen == [(True, True)]
        response = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert response.status_code == 200
    assert seen == [(True, True)]
