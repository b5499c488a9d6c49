"""`gateway serve --workers N`: one migration, shared limits and routing state, refusal without Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import redis

from tests.harness import GatewayProcess, config_for, redis_url, wait_for
from tests.test_limits import ADMIN, HI, new_key


def test_two_workers_without_redis_refuse_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/g.db"
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--workers", "2", "--port", "1"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2
    assert "refusing to start 2 workers without REDIS_URL" in done.stderr
    assert "multiplied by 2" in done.stderr
    assert not (tmp_path / "g.db").exists()  # refused before touching anything


def test_two_workers_migrate_once_and_share_limits_and_routing_state(fake, tmp_path):
    url, prefix = redis_url(), f"gwtest-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "gateway.yaml"
    config.write_text(config_for({"a": fake().url}) + f"routing:\n  state_prefix: {prefix}\n")
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/g.db",
        "REDIS_URL": url,
        "GATEWAY_ADMIN_KEY": ADMIN,
        "GATEWAY_LEDGER_SPOOL_DIR": str(tmp_path / "spool"),
        "GATEWAY_MAX_HEADER_BYTES": "2048",
    }
    server = GatewayProcess(config, env, tmp_path / "serve.log", ("--workers", "2")).wait_ready(timeout_s=60)
    shared = redis.Redis.from_url(url, decode_responses=True)
    try:
        # Each worker is its own replica in the shared routing state.
        inflight = f"{prefix}:inflight:a/a-model"
        wait_for(lambda: len(shared.hgetall(inflight)) == 2, timeout_s=10)
        key = new_key(server.url, name="workers", rpm=20)["key"]

        def call(_: int) -> int:
            response = httpx.post(
                f"{server.url}/v1/chat/completions",
                json={"model": "m", "messages": HI},
                headers={"authorization": f"Bearer {key}"},
                timeout=30,
            )
            return response.status_code

        with ThreadPoolExecutor(max_workers=8) as pool:  # new connections: the kernel spreads them
            statuses = list(pool.map(call, range(40)))
        assert statuses.count(200) == 20 and statuses.count(429) == 20, statuses
        # Each worker runs the guarded HTTP protocol with the limits from the environment.
        big = httpx.get(f"{server.url}/health", headers={"x-big": "a" * 4096}, timeout=10)
        assert big.status_code == 431 and big.json()["error"]["code"] == "headers_too_large"
    finally:
        code = server.stop()
        for k in shared.keys(f"{prefix}:*"):
            shared.delete(k)
        shared.close()
    assert code == 0
    log = server.log_path.read_text()
    assert log.count("database migrated once, before starting 2 workers") == 1
    assert log.count("Application startup complete") == 2
