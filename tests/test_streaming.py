"""Streams that never hang: mid-stream failures, timeouts, cancellation, usage, backpressure."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from gateway.simulator import Behaviour
from gateway.simulator.content import answer_chunks
from tests.harness import config_for, generation_record, wait_for

MESSAGES = [{"role": "user", "content": "tell me a story"}]
BODY = {"model": "m", "stream": True, "messages": MESSAGES}


def _events(url: str, body: dict | None = None, timeout: float = 20) -> list[dict | str]:
    """All `data:` payloads of one streamed request, parsed."""
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body or BODY, timeout=timeout) as response:
        assert response.status_code == 200
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    return [line if line == "[DONE]" else json.loads(line) for line in lines]


@pytest.mark.parametrize(
    ("behaviour", "provider_settings", "error_type", "code"),
    [
        (Behaviour(completion_tokens=20, hang_after_chunks=3), {"idle_timeout_ms": 300}, "timeout", 504),
        (Behaviour(completion_tokens=20, chunk_gap_ms=100), {"total_timeout_ms": 700}, "timeout", 504),
        (Behaviour(completion_tokens=20, garbage_after_chunks=3), {}, "protocol_error", 502),
        (Behaviour(completion_tokens=20, die_after_chunks=3), {}, "protocol_error", 502),
        (Behaviour(completion_tokens=20, error_event_after_chunks=3), {}, "stream_error", 502),
    ],
    ids=["idle-timeout", "total-timeout", "malformed-chunk", "connection-dies", "error-event"],
)
def test_failure_after_content_ends_with_one_error_chunk(
    fake, gateway, behaviour, provider_settings, error_type, code
):
    upstream = fake(behaviour=behaviour)
    gw = gateway(config_for({"up": upstream.url}, up=provider_settings))
    events = _events(gw.url)
    assert events[-1] == "[DONE]"
    final = events[-2]
    assert isinstance(final, dict)
    assert final["choices"] == [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]
    error = final["error"]
    assert error["code"] == code and error["metadata"] == {"error_type": error_type, "provider": "up"}
    assert error["message"].startswith("the upstream stream broke: up: ")
    errors = [e for e in events[:-1] if isinstance(e, dict) and "error" in e]
    assert len(errors) == 1
    content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-2])  # type: ignore[index]
    # Exactly what the upstream had sent before it broke: nothing lost, nothing made up.
    sent = upstream.sim.streams[-1].chunks_sent
    upstream_chunks = answer_chunks(upstream.sim.name, MESSAGES, None, 20)
    # (A total timeout can strike while one more chunk is on the wire: never relayed, never lost
    # from the middle.)
    in_flight = 1 if "total_timeout_ms" in provider_settings else 0
    prefixes = {"".join(upstream_chunks[:k]) for k in range(max(1, sent - in_flight), sent + 1)}
    assert sent >= 1 and content in prefixes, (content, sent)
    record = generation_record(gw.url, final["id"])
    assert record["finish_reason"] == "error" and record["completion_tokens"] > 0
    assert record["cost_usd"] > 0 and record["usage_estimated"] is True


def test_client_disconnect_closes_upstream_and_books_partial(fake, gateway):
    total = 2000
    upstream = fake(behaviour=Behaviour(completion_tokens=total, chunk_gap_ms=20))
    gw = gateway(config_for({"up": upstream.url}))
    gw.report_unclosed()
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=BODY, timeout=20) as response:
        request_id = response.headers["x-request-id"]
        lines = response.iter_lines()
        received = 0
        while received < 5:
            if next(lines).startswith("data: "):
                received += 1
        closed_at = time.monotonic()
    closed_by_gateway_at = wait_for(lambda: upstream.sim.streams[-1].closed_by_client_at)
    stream = upstream.sim.streams[-1]
    assert closed_by_gateway_at >= closed_at and stream.outcome == "client_closed"
    assert stream.chunks_sent < total  # hung up on, not read to its end
    record = generation_record(gw.url, request_id)
    assert record["cancelled"] is True and record["finish_reason"] == "cancelled"
    assert record["completion_tokens"] >= 4 and record["cost_usd"] > 0
    assert gw.unclosed() == []  # closed by the gateway, not left for the garbage collector


def test_no_usage_upstream_is_counted_and_marked_estimated(fake, gateway):
    upstream = fake(behaviour=Behaviour(content="four words right here", omit_usage=True))
    gw = gateway(config_for({"up": upstream.url}))
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0, timeout=60)
    chunks = list(
        client.chat.completions.create(
            model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    extra = usage.model_extra or {}
    assert extra["estimated"] is True and extra["cost"] > 0
    assert usage.completion_tokens >= 4 and usage.prompt_tokens > 0


def _stalled(record: Any, polls: int = 6, interval_s: float = 0.05) -> int | None:
    """The chunk count once it stops moving over `polls` consecutive looks, else None."""
    seen = {record.chunks_sent}
    for _ in range(polls):
        time.sleep(interval_s)
        seen.add(record.chunks_sent)
    return record.chunks_sent if len(seen) == 1 and not record.ended else None


def test_slow_client_applies_backpressure_to_upstream(fake, gateway):
    """A client that stops reading must stop the gateway reading the upstream (bounded buffering)."""
    total = 200_000
    upstream = fake(behaviour=Behaviour(completion_tokens=total, content=None))
    gw = gateway(config_for({"up": upstream.url}))
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=BODY, timeout=30) as response:
        lines = response.iter_lines()  # held: a dropped iterator can close the connection
        next(lines)
        # The client reads nothing: socket buffers fill up until the upstream is held back.
        sent_while_stalled = wait_for(lambda: _stalled(upstream.sim.streams[-1]), timeout_s=20)
    assert sent_while_stalled < total / 2, (
        f"upstream sent {sent_while_stalled} of {total} chunks to a stalled client"
    )
    wait_for(lambda: upstream.sim.streams[-1].ended)


def test_disconnect_stops_relay_even_when_upstream_floods(fake, gateway):
    """With data always buffered and sends to a dead client returning at once, the relay may
    never suspend; it must still notice the disconnect instead of reading the upstream to its end."""
    total = 200_000
    upstream = fake(behaviour=Behaviour(completion_tokens=total))
    gw = gateway(config_for({"up": upstream.url}))
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=BODY, timeout=30) as response:
        request_id = response.headers["x-request-id"]
        lines = response.iter_lines()
        next(lines)
        closed_at = time.monotonic()
    stream = wait_for(lambda: upstream.sim.streams[-1].ended and upstream.sim.streams[-1], timeout_s=20)
    assert stream.outcome == "client_closed", f"upstream stream ended as {stream.outcome}"
    seen_close = stream.closed_by_client_at
    assert seen_close - closed_at < 1.0, f"upstream closed {seen_close - closed_at:.2f} s after the client"
    assert upstream.sim.streams[-1].chunks_sent < total
    record = generation_record(gw.url, request_id)
    assert record["cancelled"] is True and record["finish_reason"] == "cancelled"
