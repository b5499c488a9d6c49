"""Stored responses in Redis: any replica continues any conversation, per key, and a
Redis that cannot be reached is a clear 503 on reads, never a false 404."""

from __future__ import annotations

import uuid

import openai
import pytest

from gateway.errors import GatewayError
from gateway.responses_redis import RedisResponseStore
from gateway.responses_store import require
from gateway.simulator import Behaviour
from tests.harness import config_for, redis_url, reserve_port


def _client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


@pytest.mark.parametrize("stream", [False, True])
def test_a_conversation_continues_on_another_replica(fake, gateway, stream):
    upstream = fake(behaviour=Behaviour(content="Paris."))
    config = config_for({"p": upstream.url})  # both replicas get this test's state prefix
    one, two = gateway(config, redis_url=redis_url()), gateway(config, redis_url=redis_url())
    if stream:
        with _client(one.url).responses.stream(model="m", input="capital of France?") as events:
            first = events.get_final_response()
    else:
        first = _client(one.url).responses.create(model="m", input="capital of France?")
    second = _client(two.url).responses.create(
        model="m", input="and of Spain?", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    sent = upstream.sim.requests[-1].body["messages"]
    assert [m["content"] for m in sent] == ["capital of France?", "Paris.", "and of Spain?"]
    assert _client(two.url).responses.retrieve(first.id).output_text == "Paris."
    _client(two.url).responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        _client(one.url).responses.retrieve(first.id)


async def test_entries_belong_to_their_key_and_expire():
    store = RedisResponseStore(redis_url(), retention_s=60, prefix=f"gwtest-{uuid.uuid4().hex[:8]}")
    try:
        await store.put("key-a", [{"role": "user", "content": "hi"}], {"id": "resp_1"})
        entry = await store.get("key-a", "resp_1")
        assert entry is not None and entry.conversation == [{"role": "user", "content": "hi"}]
        assert await store.get("key-b", "resp_1") is None
        assert not await store.delete("key-b", "resp_1")
        assert await store.get("key-a", "resp_1") is not None  # a foreign delete changed nothing
        ttl_ms = await store._redis.pttl(store._prefix + "resp_1")
        assert 0 < ttl_ms <= 60_000  # Redis expires it after the retention period
        assert await store.delete("key-a", "resp_1")
        with pytest.raises(GatewayError) as gone:
            await require(store, "key-a", "resp_1")
        assert gone.value.status == 404
    finally:
        await store.aclose()


async def test_an_unreachable_redis_is_a_503_on_read_and_never_fails_the_answer():
    held = reserve_port()  # bound, never listening: connections are refused
    port = held.getsockname()[1]
    store = RedisResponseStore(f"redis://127.0.0.1:{port}/0", retention_s=60, timeout_s=0.5)
    try:
        await store.put("key-a", [], {"id": "resp_1"})  # logged, not raised: the answer still goes out
        with pytest.raises(GatewayError) as down:
            await require(store, "key-a", "resp_1")
        assert down.value.status == 503 and down.value.code == "store_unavailable"
    finally:
        await store.aclose()
        held.close()
