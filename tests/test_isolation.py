"""The test harness keeps test gateways apart from the developer's environment and from each other."""

from __future__ import annotations

import httpx

from tests.harness import clean_env, config_for, current_namespace, runtime_of

HI = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_exported_gateway_variables_do_not_reach_a_test_gateway(fake, gateway, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens there
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("GATEWAY_ADMIN_KEY", "exported-admin-key")
    monkeypatch.setenv("GATEWAY_MIGRATE_ON_START", "false")
    monkeypatch.setenv("QDRANT_PATH", "/nonexistent/qdrant")
    gw = gateway(config_for({"up": fake().url}))
    settings = runtime_of(gw).settings
    assert settings.redis_url is None and settings.admin_key is None
    assert settings.database_url.startswith("sqlite+aiosqlite:///") and settings.migrate_on_start is True
    assert str(settings.qdrant_path) != "/nonexistent/qdrant"
    assert httpx.post(f"{gw.url}/v1/chat/completions", json=HI, timeout=20).status_code == 200
    env = clean_env(GATEWAY_LOG_LEVEL="debug")
    assert "REDIS_URL" not in env and "DATABASE_URL" not in env and "GATEWAY_ADMIN_KEY" not in env
    assert env["GATEWAY_LOG_LEVEL"] == "debug"


def test_each_gateway_has_its_own_database_and_spool_and_the_tests_redis_prefix(fake, gateway):
    config = config_for({"up": fake().url})
    one, two = runtime_of(gateway(config)), runtime_of(gateway(config))
    assert one.settings.database_url != two.settings.database_url
    assert one.settings.ledger_spool_dir != two.settings.ledger_spool_dir
    assert one.settings.qdrant_path != two.settings.qdrant_path
    assert one.config.routing.state_prefix == two.config.routing.state_prefix == current_namespace()


def test_a_stopped_gateway_leaves_no_files(fake, gateway):
    from pathlib import Path

    gw = gateway(config_for({"up": fake().url}))
    home = Path(runtime_of(gw).settings.database_url.removeprefix("sqlite+aiosqlite:///")).parent
    assert home.is_dir()
    gw.stop()
    assert not home.exists()
