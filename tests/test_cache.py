"""The response cache over real HTTP: the openai SDK and curl against a gateway and fake upstreams.

Exact mode on the in-process store; Redis, Qdrant (semantic) and failing stores are in
tests/test_cache_stores.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from gateway.simulator import Behaviour
from tests.harness import config_for, curl_stream, generation_record, new_key, wait_for

ADMIN = "admin-secret"
AUTH = {"authorization": f"Bearer {ADMIN}"}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def cached_config(url: str, model_cache: str = "{mode: exact}", top: str = "") -> str:
    config = config_for({"up": url})
    config = config.replace("  - name: m\n", f"  - name: m\n    cache: {model_cache}\n", 1)
    return config + top


def client(gw: Any, key: str = "x") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)


def chats(fake: Any) -> int:
    return sum(1 for r in fake.sim.requests if r.path.endswith("/chat/completions"))


def ask(api: openai.OpenAI, **kwargs: Any) -> tuple[str, Any]:
    """(X-Gateway-Cache, the parsed answer) of one non-streamed request."""
    kwargs.setdefault("messages", QUESTION)
    raw = api.chat.completions.with_raw_response.create(model="m", **kwargs)
    return raw.headers.get("x-gateway-cache", ""), raw.parse()


def stored(gw: Any, n: int = 1, headers: dict[str, str] | None = None) -> None:
    """Wait until the gateway has written `n` entries (stores happen after the answer is sent)."""

    def done() -> bool:
        stats = httpx.get(f"{gw.url}/admin/api/cache/stats", headers=headers or {}, timeout=5).json()
        return int(stats["stored"].get("exact", 0)) >= n

    wait_for(done, timeout_s=10)


def test_an_exact_repeat_is_answered_from_the_cache_at_no_cost(fake, gateway):
    up = fake(name="up")
    gw = gateway(cached_config(up.url))
    api = client(gw)
    status, first = ask(api, temperature=0)
    assert status == "miss" and chats(up) == 1
    stored(gw)
    status, second = ask(api, temperature=0)
    assert status == "hit" and chats(up) == 1  # the upstream was not asked again
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.id != first.id and second.choices[0].finish_reason == first.choices[0].finish_reason
    usage = second.usage.model_extra or {}
    assert usage["cost"] == 0 and usage["cost_saved"] == pytest.approx(
        (first.usage.model_extra or {})["cost"]
    )
    assert second.usage.completion_tokens == first.usage.completion_tokens
    # Surrounding whitespace does not make another question.
    status, _ = ask(
        api, temperature=0, messages=[{"role": "user", "content": "  What is the capital of France?\n"}]
    )
    assert status == "hit"


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.0, "max_tokens": 5},
        {"temperature": 0.0, "seed": 7},
        {"temperature": 0.0, "response_format": {"type": "json_object"}},
        {"temperature": 0.0, "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"temperature": 0.0, "messages": [{"role": "system", "content": "Be brief."}, *QUESTION]},
        {"temperature": 0.0, "messages": [{"role": "user", "content": "What is the capital of Spain?"}]},
    ],
)
def test_anything_that_changes_the_answer_changes_the_key(fake, gateway, change):
    up = fake(name="up")
    gw = gateway(cached_config(up.url))
    api = client(gw)
    assert ask(api, temperature=0.0)[0] == "miss"
    stored(gw)
    assert ask(api, **change)[0] == "miss"
    assert chats(up) == 2


def test_sampled_requests_are_not_cached_unless_asked(fake, gateway):
    up = fake(name="up")
    gw = gateway(cached_config(up.url))
    api = client(gw)
    status, _ = ask(api, temperature=0.7)
    assert status == "" and chats(up) == 1  # the model's default does not apply to sampling
    ask(api, temperature=0.7)
    assert chats(up) == 2
    asked = {"cache": {"mode": "exact"}}
    assert ask(api, temperature=0.7, extra_body=asked)[0] == "miss"
    stored(gw)
    assert ask(api, temperature=0.7, extra_body=asked)[0] == "hit" and chats(up) == 3


def test_a_request_opts_in_or_out_and_cache_control_is_honoured(fake, gateway):
    up = fake(name="up")
    gw = gateway(config_for({"up": up.url}))  # no cache configured for the model
    api = client(gw)
    assert ask(api)[0] == "" and ask(api)[0] == ""  # off by default
    exact = {"cache": {"mode": "exact", "ttl_s": 600}}
    assert ask(api, extra_body=exact)[0] == "miss"
    stored(gw)
    assert ask(api, extra_body=exact)[0] == "hit"
    assert ask(api, extra_body={"cache": {"mode": "off"}})[0] == ""
    before = chats(up)
    # no-cache: fresh from the upstream, stored again; no-store: not cached at all.
    assert ask(api, extra_body=exact, extra_headers={"cache-control": "no-cache"})[0] == "miss"
    assert ask(api, extra_body=exact, extra_headers={"cache-control": "no-store"})[0] == ""
    assert chats(up) == before + 2
    assert "cache" not in up.sim.requests[-1].body  # the gateway's own field stays here


def test_a_bad_cache_object_is_a_400_naming_the_field(fake, gateway):
    gw = gateway(cached_config(fake().url))
    for bad, param in [({"mode": "fuzzy"}, "cache.mode"), ({"ttl_s": "60"}, "cache.ttl_s"), ("yes", "cache")]:
        with pytest.raises(openai.BadRequestError) as caught:
            client(gw).chat.completions.create(model="m", messages=QUESTION, extra_body={"cache": bad})
        error = caught.value.body
        assert isinstance(error, dict) and error["param"] == param, error


def test_two_keys_never_see_each_others_entries_unless_the_admin_shares_a_namespace(fake, gateway):
    up = fake(name="up")
    shared = "cache:\n  shared:\n    - name: faq\n      keys: [bot-eu, bot-us]\n"
    gw = gateway(cached_config(up.url, top=shared), admin_key=ADMIN)
    alice = client(gw, new_key(gw.url, name="alice")["key"])
    bob = client(gw, new_key(gw.url, name="bob")["key"])
    assert ask(alice, temperature=0)[0] == "miss"
    stored(gw, headers=AUTH)
    assert ask(bob, temperature=0)[0] == "miss"  # bob's namespace is his own
    assert ask(alice, temperature=0)[0] == "hit"
    eu = client(gw, new_key(gw.url, name="bot-eu")["key"])
    us = client(gw, new_key(gw.url, name="bot-us")["key"])
    assert ask(eu, temperature=0)[0] == "miss"
    stored(gw, 3, headers=AUTH)
    assert ask(us, temperature=0)[0] == "hit"  # one namespace for the group


def test_deny_requests_skip_a_shared_namespace_but_use_their_own(fake, gateway):
    up = fake(name="up")
    config = config_for({"up": up.url}, up={"data_collection": "deny"})
    config = config.replace("  - name: m\n", "  - name: m\n    cache: {mode: exact}\n", 1)
    shared = "cache:\n  shared:\n    - name: faq\n      keys: [bot-eu, bot-us]\n"
    gw = gateway(config + shared, admin_key=ADMIN)
    deny = {"provider": {"data_collection": "deny"}}
    eu = client(gw, new_key(gw.url, name="bot-eu")["key"])
    assert ask(eu, temperature=0, extra_body=deny)[0] == ""
    assert ask(eu, temperature=0, extra_body=deny)[0] == "" and chats(up) == 2
    solo = client(gw, new_key(gw.url, name="solo")["key"])
    assert ask(solo, temperature=0, extra_body=deny)[0] == "miss"


def test_an_entry_expires_after_its_ttl(fake, gateway):
    up = fake(name="up")
    gw = gateway(cached_config(up.url, "{mode: exact, ttl_s: 1}"))
    api = client(gw)
    assert ask(api, temperature=0)[0] == "miss"
    stored(gw)
    wait_for(lambda: ask(api, temperature=0)[0] == "miss", timeout_s=10, interval_s=0.2)


def _sse_events(raw: str) -> list[str]:
    return [line[len("data: ") :] for line in raw.splitlines() if line.startswith("data: ")]


def test_a_hit_on_a_stream_is_replayed_as_a_normal_stream(fake, gateway):
    up = fake(name="up")
    gw = gateway(cached_config(up.url))
    api = client(gw)
    first = list(
        api.chat.completions.create(
            model="m", messages=QUESTION, temperature=0, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in first if c.choices)
    paid = (first[-1].usage.model_extra or {})["cost"]
    stored(gw)
    raw = api.chat.completions.with_raw_response.create(
        model="m", messages=QUESTION, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    assert raw.headers["x-gateway-cache"] == "hit" and raw.headers["content-type"].startswith(
        "text/event-stream"
    )
    chunks = list(raw.parse())
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert (usage.model_extra or {})["cost"] == 0 and (usage.model_extra or {})[
        "cost_saved"
    ] == pytest.approx(paid)
    assert chats(up) == 1
    # curl sees the same stream, ended by [DONE]; a JSON request hits the entry the stream made.
    body = '{"model": "m", "stream": true, "temperature": 0, "messages": [{"role": "user", "content": "What is the capital of France?"}]}'
    out = curl_stream(gw.url, body, include_headers=True)
    assert "x-gateway-cache: hit" in out.lower() and _sse_events(out)[-1] == "[DONE]"
    assert ask(api, temperature=0)[1].choices[0].message.content == text


def test_a_stream_that_broke_or_was_left_is_never_stored(fake, gateway):
    up = fake(name="up", behaviour=Behaviour(completion_tokens=20, error_event_after_chunks=3))
    gw = gateway(cached_config(up.url))
    api = client(gw)
    with pytest.raises(openai.APIError):
        for _ in api.chat.completions.create(model="m", messages=QUESTION, temperature=0, stream=True):
            pass
    # A client that leaves after the first chunk: the stream is cancelled, not stored.
    up.sim.behaviour = Behaviour(completion_tokens=40, chunk_gap_ms=50)
    body = '{"model": "m", "stream": true, "temperature": 0, "messages": [{"role": "user", "content": "What is the capital of France?"}]}'
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", content=body, timeout=20) as response:
        next(response.iter_lines())
    up.sim.behaviour = Behaviour()

    def both_booked() -> bool:
        rows = httpx.get(f"{gw.url}/admin/api/ledger", timeout=5).json()["data"]
        return len(rows) == 2 and {r["finish_reason"] for r in rows} == {"error", "cancelled"}

    wait_for(both_booked, timeout_s=15)
    stats = httpx.get(f"{gw.url}/admin/api/cache/stats", timeout=5).json()
    assert stats["stored"].get("exact", 0) == 0 and stats["exact"]["entries"] == 0
    assert ask(api, temperature=0)[0] == "miss"


def test_admin_purges_by_key_model_or_all_and_reports_stats(fake, gateway):
    up = fake(name="up")
    two_models = config_for({"up": up.url}, models={"m": [("up", "a")], "n": [("up", "b")]})
    two_models = two_models.replace("  - name: m\n", "  - name: m\n    cache: {mode: exact}\n", 1)
    two_models = two_models.replace("  - name: n\n", "  - name: n\n    cache: {mode: exact}\n", 1)
    gw = gateway(two_models, admin_key=ADMIN)
    key = new_key(gw.url, name="alice")
    api = client(gw, key["key"])

    def fill() -> None:
        for model in ("m", "n"):
            api.chat.completions.create(model=model, messages=QUESTION, temperature=0)

    def status(model: str) -> str:
        raw = api.chat.completions.with_raw_response.create(model=model, messages=QUESTION, temperature=0)
        return raw.headers.get("x-gateway-cache", "")

    fill()
    stored(gw, 2, headers=AUTH)
    stats = httpx.get(f"{gw.url}/admin/api/cache/stats", headers=AUTH, timeout=5).json()
    assert stats["exact"]["entries"] == 2 and stats["exact"]["backend"] == "memory"
    purged = httpx.delete(f"{gw.url}/admin/api/cache", params={"model": "m"}, headers=AUTH, timeout=5)
    assert purged.status_code == 200 and purged.json()["exact_entries_removed"] == 1
    assert status("m") == "miss" and status("n") == "hit"
    stored(gw, 3, headers=AUTH)
    gone = httpx.delete(f"{gw.url}/admin/api/cache", params={"key": key["id"]}, headers=AUTH, timeout=5)
    assert gone.json()["exact_entries_removed"] == 2
    assert status("m") == "miss"
    stored(gw, 4, headers=AUTH)
    assert (
        httpx.delete(f"{gw.url}/admin/api/cache", params={"all": "true"}, headers=AUTH).json()[
            "exact_entries_removed"
        ]
        == 1
    )
    stats = httpx.get(f"{gw.url}/admin/api/cache/stats", headers=AUTH, timeout=5).json()
    assert stats["exact"]["entries"] == 0 and stats["lookups"]["hit"] == 1
    nothing = httpx.delete(f"{gw.url}/admin/api/cache", headers=AUTH, timeout=5)
    assert nothing.status_code == 400 and nothing.json()["error"]["param"] == "all"
    forbidden = httpx.delete(
        f"{gw.url}/admin/api/cache", params={"all": "true"}, headers={"authorization": f"Bearer {key['key']}"}
    )
    assert forbidden.status_code == 403


def test_hits_are_booked_at_no_cost_with_what_they_saved_and_counted_in_metrics(fake, gateway):
    up = fake(name="up")
    gw = gateway(cached_config(up.url))
    api = client(gw)
    _, paid = ask(api, temperature=0)
    stored(gw)
    _, hit = ask(api, temperature=0)
    record = generation_record(gw.url, hit.id)
    assert record["cache"] == "hit" and record["cost_usd"] == 0
    assert record["cost_saved_usd"] == pytest.approx((paid.usage.model_extra or {})["cost"])

    def rows() -> dict[str, Any]:
        data = httpx.get(f"{gw.url}/admin/api/ledger", timeout=5).json()["data"]
        return {r["request_id"]: r for r in data} if len(data) == 2 else {}

    booked = wait_for(rows)
    assert booked[hit.id]["cache"] == "hit" and booked[hit.id]["cost_usd"] == 0
    assert booked[hit.id]["cost_saved_usd"] == pytest.approx(record["cost_saved_usd"])
    assert booked[paid.id]["cache"] == "miss" and booked[paid.id]["cost_saved_usd"] is None
    savings = httpx.get(f"{gw.url}/admin/api/savings", timeout=5).json()
    assert savings["total"]["cache_hits"] == 1
    assert savings["total"]["cache_saved_usd"] == pytest.approx(record["cost_saved_usd"])
    metrics = httpx.get(f"{gw.url}/metrics", timeout=5).text
    assert 'gateway_cache_lookups_total{model="m",result="hit"} 1.0' in metrics
    assert 'gateway_cache_lookups_total{model="m",result="miss"} 1.0' in metrics
