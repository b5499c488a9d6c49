"""README promises checked end to end: presets, timeout precedence, Redis outages and replicas,
migrating on start, the ledger's filters and the cost of embeddings."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from typing import Any

import httpx
import openai
import pytest

from gateway.simulator import Behaviour
from tests.harness import GatewayProcess, config_for, redis_url, reserve_port, runtime_of, wait_for
from tests.routing_helpers import MESSAGES, client, provider_of, routing_config

ADMIN = "admin-secret"
BODY = {"model": "m", "messages": MESSAGES}
AUTH = {"authorization": f"Bearer {ADMIN}"}


def _bearer(upstream: Any) -> str | None:
    return upstream.sim.requests[-1].headers.get("authorization")


def test_a_preset_fills_base_url_and_key_variable_and_explicit_fields_win(fake, gateway, monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", "groq-secret")
    monkeypatch.setenv("TOGETHER_API_KEY", "together-secret")
    monkeypatch.setenv("OUR_TOGETHER_KEY", "our-secret")
    groq, together = fake(name="groq"), fake(name="together")
    config = (
        "providers:\n"
        f"  - name: groq\n    base_url: {groq.url}\n"
        f"  - name: together\n    base_url: {together.url}\n    api_key_env: OUR_TOGETHER_KEY\n"
        "  - name: perplexity\n"
        "models:\n"
        "  - name: g\n    deployments:\n      - {provider: groq, model: x, input_price_per_mtok: 1, output_price_per_mtok: 1}\n"
        "  - name: t\n    deployments:\n      - {provider: together, model: y, input_price_per_mtok: 1, output_price_per_mtok: 1}\n"
        "  - name: p\n    deployments:\n      - {provider: perplexity, model: z, input_price_per_mtok: 1, output_price_per_mtok: 1}\n"
    )
    gw = gateway(config)
    api = client(gw.url)
    api.chat.completions.create(model="g", messages=MESSAGES)
    assert _bearer(groq) == "Bearer groq-secret"  # the preset's variable
    api.chat.completions.create(model="t", messages=MESSAGES)
    assert _bearer(together) == "Bearer our-secret"  # api_key_env given: it wins over the preset's
    providers = runtime_of(gw).providers
    assert "https://api.perplexity.ai/chat/completions" in repr(providers["perplexity"].adapter)
    assert groq.url in repr(providers["groq"].adapter)  # base_url given: it wins over the preset's


@pytest.mark.parametrize(
    ("provider_ms", "deployment_ms", "outcome"),
    [(5000, 150, "timeout"), (150, 5000, "ok")],
    ids=["deployment-shorter", "deployment-longer"],
)
def test_the_deployments_timeout_wins_over_the_providers(fake, gateway, provider_ms, deployment_ms, outcome):
    slow, spare = fake(behaviour=Behaviour(first_byte_ms=600), name="slow"), fake(name="spare")
    config = routing_config(
        {
            "slow": {"url": slow.url, "price": 1.0, "first_byte_timeout_ms": deployment_ms},
            "spare": {"url": spare.url, "price": 5.0},
        },
        routing={"policy": "price", "retries": 0},
        providers={"slow": {"first_byte_timeout_ms": provider_ms}},
    )
    raw = client(gateway(config).url).chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    assert raw.headers["x-gateway-route"].startswith(f"slow/slow-model;{outcome}")


def test_limits_fail_open_when_redis_is_down(fake, gateway, tmp_path):
    with reserve_port() as dead:  # held and never listening: connections are refused
        url = f"redis://127.0.0.1:{dead.getsockname()[1]}/0"
        gw = gateway(config_for({"a": fake().url}), admin_key=ADMIN, redis_url=url)
        made = httpx.post(f"{gw.url}/admin/api/keys", json={"name": "k", "rpm": 1}, headers=AUTH, timeout=30)
        assert made.status_code == 201, made.text
        api = openai.OpenAI(base_url=gw.url + "/v1", api_key=made.json()["key"], max_retries=0, timeout=30)
        for _ in range(3):  # an rpm of 1 would refuse the second; with Redis away it is not enforced
            api.chat.completions.create(model="m", messages=MESSAGES)


def test_a_revocation_reaches_another_replica_through_redis(fake, gateway, tmp_path):
    shared = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/shared.db",
        "redis_url": redis_url(),
        "admin_key": ADMIN,
        "key_cache_ttl_s": 600,  # far longer than the test: only the Redis message can do it
    }
    config = config_for({"a": fake().url})
    one, two = gateway(config, **shared), gateway(config, **shared)
    key = httpx.post(f"{one.url}/admin/api/keys", json={"name": "k"}, headers=AUTH, timeout=30).json()
    api_two = openai.OpenAI(base_url=two.url + "/v1", api_key=key["key"], max_retries=0, timeout=30)
    api_two.chat.completions.create(model="m", messages=MESSAGES)  # cached as valid on replica two
    revoked = httpx.delete(f"{one.url}/admin/api/keys/{key['id']}", headers=AUTH, timeout=30)
    assert revoked.status_code == 200, revoked.text

    def refused() -> bool:
        try:
            api_two.chat.completions.create(model="m", messages=MESSAGES)
        except openai.AuthenticationError:
            return True
        return False

    wait_for(refused, timeout_s=10)


def test_without_migrate_on_start_the_database_is_left_alone(fake, gateway, tmp_path):
    db = tmp_path / "untouched.db"
    gateway(config_for({"a": fake().url}), database_url=f"sqlite+aiosqlite:///{db}", migrate_on_start=False)
    if db.exists():
        with sqlite3.connect(db) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "alembic_version" not in tables and "ledger" not in tables
    migrated = tmp_path / "migrated.db"
    gateway(config_for({"a": fake().url}), database_url=f"sqlite+aiosqlite:///{migrated}")
    with sqlite3.connect(migrated) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"alembic_version", "ledger"} <= tables


def test_ledger_filters_by_provider_and_deployment(fake, gateway):
    a, b = fake(name="a"), fake(name="b")
    gw = gateway(
        config_for({"a": a.url, "b": b.url}, {"ma": [("a", "a-model")], "mb": [("b", "b-model")]}),
        admin_key=ADMIN,
    )
    api = openai.OpenAI(base_url=gw.url + "/v1", api_key=ADMIN, max_retries=0, timeout=30)
    ids = {"a": {api.chat.completions.create(model="ma", messages=MESSAGES).id for _ in range(2)}}
    ids["b"] = {api.chat.completions.create(model="mb", messages=MESSAGES).id for _ in range(3)}

    def rows(**query: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{gw.url}/admin/api/ledger", params=query, headers=AUTH, timeout=30)
        assert answer.status_code == 200, answer.text
        return list(answer.json()["data"])

    wait_for(lambda: len(rows()) >= 5)
    assert {r["request_id"] for r in rows(provider="a")} == ids["a"]
    assert {r["request_id"] for r in rows(deployment="b/b-model")} == ids["b"]
    assert rows(provider="a", deployment="b/b-model") == []


def test_embeddings_usage_has_the_cost_at_the_deployments_input_price(fake, gateway):
    upstream = fake()
    gw = gateway(config_for({"p": upstream.url}))  # input $1 per million tokens
    result = client(gw.url).embeddings.create(model="m", input=["one two three", "four five"])
    extra = result.usage.model_extra or {}
    assert result.usage.prompt_tokens > 0
    assert extra["cost"] == pytest.approx(result.usage.prompt_tokens * 1.0 / 1e6)
    assert provider_of(result) == "p"


def test_in_flight_counts_are_shared_across_replicas(fake, gateway):
    slow = fake(behaviour=Behaviour(first_byte_ms=60_000), name="slow")  # held until the test ends
    spare = fake(name="spare")
    config = routing_config(
        {
            "slow": {"url": slow.url, "price": 1.0, "max_concurrency": 2},
            "spare": {"url": spare.url, "price": 5.0},
        },
        routing={"policy": "price", "retries": 0},
        top={"routing": {"state_sync_interval_ms": 50}},
    )
    shared = redis_url()
    one, two = gateway(config, redis_url=shared), gateway(config, redis_url=shared)
    held = [threading.Thread(target=_request_ignoring_errors, args=(one.url,), daemon=True) for _ in range(2)]
    for thread in held:
        thread.start()
    wait_for(lambda: len(slow.sim.requests) == 2)  # both in flight at `slow`, through replica one
    store = runtime_of(two).routing.store
    wait_for(lambda: store.state("slow/slow-model").remote_in_flight == 2)
    answer = client(two.url).chat.completions.create(model="m", messages=MESSAGES)
    assert provider_of(answer) == "spare"  # replica two counts replica one's requests: slow is full
    assert len(slow.sim.requests) == 2
    slow.sim.release_streams()


def _request_ignoring_errors(url: str) -> None:
    with contextlib.suppress(openai.APIError):
        openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=60).chat.completions.create(
            model="m", messages=MESSAGES
        )


def test_sigterm_with_streams_in_flight_exits_cleanly_and_books_them(fake, tmp_path):
    upstream = fake(behaviour=Behaviour(completion_tokens=400, chunk_gap_ms=50))
    config = tmp_path / "gateway.yaml"
    config.write_text(config_for({"a": upstream.url}))
    db = tmp_path / "ledger.db"
    # Streams get GATEWAY_SHUTDOWN_TIMEOUT_S to finish after SIGTERM (30 s by default), then end
    # with an error chunk: 2 s here, shorter than these 20 s streams.
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{db}", "GATEWAY_SHUTDOWN_TIMEOUT_S": "2"}
    server = GatewayProcess(config, env, tmp_path / "serve.log")
    server.wait_ready()
    ids: list[str] = []
    under_way = threading.Barrier(4, timeout=30)

    def stream() -> None:
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream(
                "POST", f"{server.url}/v1/chat/completions", json={**BODY, "stream": True}, timeout=30
            ) as response,
        ):
            ids.append(response.headers["x-request-id"])
            lines = response.iter_lines()
            next(lines)
            under_way.wait()
            for _ in lines:  # to wherever the shutdown ends it
                pass

    workers = [threading.Thread(target=stream) for _ in range(3)]
    for w in workers:
        w.start()
    under_way.wait()  # three streams are under way, far from their end
    try:
        code = server.stop()
    finally:
        for w in workers:
            w.join(timeout=30)
    assert code in (0, -15), server.log_path.read_text()  # a clean exit, not a kill
    assert not any(w.is_alive() for w in workers)  # no client left hanging
    wait_for(lambda: all(s.ended for s in upstream.sim.streams))  # no upstream left open
    with sqlite3.connect(db) as conn:
        booked = {r[0] for r in conn.execute("SELECT request_id FROM ledger")}
    assert set(ids) <= booked and len(ids) == 3  # every stream is in the ledger
