"""The cache's stores for real: Redis shared by replicas, Qdrant local mode with the local embedder
(semantic hits), and stores that fail — the request goes through uncached."""

from __future__ import annotations

from typing import Any

import httpx

from tests.harness import new_key, redis_url, reserve_port, wait_for
from tests.test_cache import ADMIN, AUTH, QUESTION, ask, cached_config, chats, client, stored


def test_replicas_share_entries_through_redis_under_the_tests_own_prefix(fake, gateway, tmp_path):
    up = fake(name="up")
    shared = {"redis_url": redis_url(), "database_url": f"sqlite+aiosqlite:///{tmp_path}/shared.db"}
    one = gateway(cached_config(up.url), admin_key=ADMIN, **shared)
    two = gateway(cached_config(up.url), admin_key=ADMIN, **shared)
    key = new_key(one.url, name="alice")
    other = new_key(one.url, name="bob")
    assert ask(client(one, key["key"]), temperature=0)[0] == "miss"
    stored(one, headers=AUTH)
    assert ask(client(two, key["key"]), temperature=0)[0] == "hit"  # written by replica one
    assert ask(client(two, other["key"]), temperature=0)[0] == "miss"  # never another key's entry
    stats = httpx.get(f"{two.url}/admin/api/cache/stats", headers=AUTH, timeout=5).json()
    assert stats["exact"] == {"backend": "redis", "entries": 2}  # alice's, and bob's from his miss
    purged = httpx.delete(f"{two.url}/admin/api/cache", params={"key": key["id"]}, headers=AUTH, timeout=5)
    assert purged.json()["exact_entries_removed"] == 1
    assert ask(client(one, key["key"]), temperature=0)[0] == "miss"
    assert chats(up) == 3


def test_with_redis_down_requests_go_through_uncached(fake, gateway):
    up = fake(name="up")
    with reserve_port() as dead:  # held and never listening: connections are refused
        url = f"redis://127.0.0.1:{dead.getsockname()[1]}/0"
        gw = gateway(cached_config(up.url), redis_url=url)
        api = client(gw)
        for _ in range(3):
            status, answer = ask(api, temperature=0)
            assert status == "miss" and answer.choices[0].message.content
        assert chats(up) == 3
        metrics = httpx.get(f"{gw.url}/metrics", timeout=5).text
        errors = [
            line
            for line in metrics.splitlines()
            if line.startswith('gateway_cache_errors_total{store="exact"}')
        ]
        assert errors and float(errors[0].split()[-1]) >= 3
        purge = httpx.delete(f"{gw.url}/admin/api/cache", params={"all": "true"}, timeout=5)
        assert purge.status_code == 503 and purge.json()["error"]["code"] == "cache_unavailable"


SEMANTIC = "{mode: semantic, threshold: 0.8}"


def semantic_gateway(fake: Any, gateway: Any, tmp_path: Any, **settings: Any) -> tuple[Any, Any]:
    up = fake(name="up")
    return up, gateway(cached_config(up.url, SEMANTIC), qdrant_path=tmp_path / "qdrant", **settings)


def test_a_paraphrase_is_a_semantic_hit_and_a_near_miss_is_not(fake, gateway, tmp_path, local_embedder):
    up, gw = semantic_gateway(fake, gateway, tmp_path)
    api = client(gw)
    status, first = ask(api, temperature=0)
    assert status == "miss"
    stored(gw)
    wait_for(lambda: httpx.get(f"{gw.url}/admin/api/cache/stats", timeout=5).json()["stored"].get("semantic"))
    raw = api.chat.completions.with_raw_response.create(
        model="m", temperature=0, messages=[{"role": "user", "content": "capital city of France?"}]
    )
    header = raw.headers["x-gateway-cache"]
    assert header.startswith("semantic-hit; score=") and 0.8 <= float(header.split("=")[1]) <= 1
    assert raw.parse().choices[0].message.content == first.choices[0].message.content
    spain = [{"role": "user", "content": "What is the capital of Spain?"}]
    assert ask(api, temperature=0, messages=spain)[0] == "miss"
    # The rest of the conversation is a hard filter: the same question after another system prompt misses.
    other = [{"role": "system", "content": "Answer in French."}, *QUESTION]
    assert ask(api, temperature=0, messages=other)[0] == "miss"
    assert ask(api, temperature=0, max_tokens=3)[0] == "miss"
    assert chats(up) == 4


def test_semantic_entries_are_per_key_and_purged_with_them(fake, gateway, tmp_path, local_embedder):
    _, gw = semantic_gateway(fake, gateway, tmp_path, admin_key=ADMIN)
    alice = new_key(gw.url, name="alice")
    bob = client(gw, new_key(gw.url, name="bob")["key"])
    assert ask(client(gw, alice["key"]), temperature=0)[0] == "miss"
    stats = lambda: httpx.get(f"{gw.url}/admin/api/cache/stats", headers=AUTH, timeout=5).json()  # noqa: E731
    wait_for(lambda: stats()["stored"].get("semantic"))
    paraphrase = [{"role": "user", "content": "capital city of France?"}]
    assert ask(bob, temperature=0, messages=paraphrase)[0] == "miss"
    assert ask(client(gw, alice["key"]), temperature=0, messages=paraphrase)[0].startswith("semantic-hit")
    assert stats()["semantic"]["collections"] == 2  # alice's, and bob's made by his miss
    purged = httpx.delete(f"{gw.url}/admin/api/cache", params={"key": alice["id"]}, headers=AUTH, timeout=10)
    assert purged.status_code == 200
    assert ask(client(gw, alice["key"]), temperature=0, messages=paraphrase)[0] == "miss"


def test_a_failing_semantic_store_lets_requests_through(fake, gateway, tmp_path):
    up = fake(name="up")
    gw = gateway(cached_config(up.url, SEMANTIC), qdrant_url="http://127.0.0.1:9", qdrant_path=tmp_path / "q")
    api = client(gw)
    for _ in range(2):
        _, answer = ask(api, temperature=0)
        assert answer.choices[0].message.content
    stored(gw)
    assert ask(api, temperature=0)[0] == "hit"  # the exact store still works
    metrics = httpx.get(f"{gw.url}/metrics", timeout=5).text
    assert 'gateway_cache_errors_total{store="semantic"}' in metrics
