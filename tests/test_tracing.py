"""Traces: the span tree of a request (collected in memory) for answers, streams, failover and errors."""

from __future__ import annotations

import os
from typing import Any

import httpx
import openai
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from gateway.simulator import Behaviour
from tests.conftest import Collector
from tests.harness import config_for, wait_for

MESSAGES = [{"role": "user", "content": "hi"}]


def _traceparent() -> tuple[str, int, int]:
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    return f"00-{trace_id}-{span_id}-01", int(trace_id, 16), int(span_id, 16)


def _client(url: str, traceparent: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{url}/v1",
        api_key="unused",
        max_retries=0,
        timeout=30,
        default_headers={"traceparent": traceparent},
    )


def _tree(collector: Collector, trace_id: int, names: set[str]) -> dict[str, list[ReadableSpan]]:
    """Wait until spans with each of `names` have ended in this trace; group them by name."""

    def complete() -> dict[str, list[ReadableSpan]] | None:
        by_name: dict[str, list[ReadableSpan]] = {}
        for span in collector.of_trace(trace_id):
            by_name.setdefault(span.name, []).append(span)
        return by_name if names <= set(by_name) else None

    return wait_for(complete)


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_failover_answer_makes_one_server_span_with_admit_route_and_two_attempts(fake, gateway, spans):
    first, second = fake(behaviour=Behaviour(status=500)), fake(behaviour=Behaviour(completion_tokens=6))
    gw = gateway(config_for({"first": first.url, "second": second.url}))
    traceparent, trace_id, parent_id = _traceparent()
    _client(gw.url, traceparent).chat.completions.create(
        model="m", messages=MESSAGES, max_tokens=50, temperature=0.5
    )
    tree = _tree(
        spans,
        trace_id,
        {
            "POST /v1/chat/completions",
            "gateway.admit",
            "gateway.route",
            "chat first-model",
            "chat second-model",
        },
    )
    (server,) = tree["POST /v1/chat/completions"]
    assert server.parent is not None and server.parent.span_id == parent_id  # the caller's trace continued
    assert server.kind == trace.SpanKind.SERVER
    assert _attrs(server)["http.response.status_code"] == 200
    for name in ("gateway.admit", "gateway.route", "chat first-model", "chat second-model"):
        (child,) = tree[name]
        assert child.parent is not None and child.parent.span_id == server.context.span_id, name
    route = tree["gateway.route"][0]
    assert _attrs(route)["gateway.routing.plan"] == ("first/first-model", "second/second-model")
    assert {e.attributes["deployment"] for e in route.events if e.name == "candidate"} == {
        "first/first-model",
        "second/second-model",
    }
    failed, answered = tree["chat first-model"][0], tree["chat second-model"][0]
    assert failed.status.status_code == StatusCode.ERROR
    assert _attrs(failed)["http.response.status_code"] == 500 and _attrs(failed)["error.type"]
    attrs = _attrs(answered)
    assert answered.kind == trace.SpanKind.CLIENT
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.system"] == attrs["gen_ai.provider.name"] == "second"
    assert attrs["gen_ai.request.model"] == "second-model" and attrs["gen_ai.response.model"]
    assert attrs["gen_ai.request.max_tokens"] == 50 and attrs["gen_ai.request.temperature"] == 0.5
    assert attrs["gen_ai.usage.output_tokens"] == 6 and attrs["gen_ai.usage.input_tokens"] > 0
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.response.id"] and attrs["gateway.cost_usd"] > 0
    assert attrs["gateway.deployment"] == "second/second-model"
    # Each upstream request carried the traceparent of its own attempt span.
    sent = second.sim.requests[-1].headers["traceparent"]
    assert sent == f"00-{trace_id:032x}-{answered.context.span_id:016x}-01"
    assert first.sim.requests[-1].headers["traceparent"].split("-")[2] == f"{failed.context.span_id:016x}"


def test_stream_has_an_attempt_span_with_usage_and_a_stream_span_that_ended_with_stop(fake, gateway, spans):
    upstream = fake(behaviour=Behaviour(completion_tokens=7))
    gw = gateway(config_for({"up": upstream.url}))
    traceparent, trace_id, _ = _traceparent()
    chunks = list(
        _client(gw.url, traceparent).chat.completions.create(model="m", messages=MESSAGES, stream=True)
    )
    tree = _tree(spans, trace_id, {"POST /v1/chat/completions", "chat up-model", "gateway.stream"})
    server = tree["POST /v1/chat/completions"][0]
    attempt, stream = tree["chat up-model"][0], tree["gateway.stream"][0]
    assert attempt.parent.span_id == stream.parent.span_id == server.context.span_id
    assert _attrs(attempt)["gen_ai.usage.output_tokens"] == 7
    assert _attrs(attempt)["gen_ai.response.finish_reasons"] == ("stop",)
    assert (
        _attrs(attempt)["gateway.time_to_first_token_ms"] >= _attrs(attempt)["gateway.time_to_first_byte_ms"]
    )
    attrs = _attrs(stream)
    assert attrs["gateway.stream.end"] == "stop"
    assert attrs["gateway.stream.chunks"] == len([c for c in chunks if c.choices])
    assert attrs["gateway.stream.time_to_first_token_ms"] > 0
    assert server.end_time >= stream.end_time  # the server span covers the whole body


def test_stream_broken_mid_way_ends_with_an_error_chunk(fake, gateway, spans):
    upstream = fake(behaviour=Behaviour(completion_tokens=20, die_after_chunks=3))
    gw = gateway(config_for({"up": upstream.url}))
    traceparent, trace_id, _ = _traceparent()
    with pytest.raises(openai.APIError):
        list(_client(gw.url, traceparent).chat.completions.create(model="m", messages=MESSAGES, stream=True))
    tree = _tree(spans, trace_id, {"chat up-model", "gateway.stream"})
    stream, attempt = tree["gateway.stream"][0], tree["chat up-model"][0]
    assert _attrs(stream)["gateway.stream.end"] == "error_chunk"
    assert stream.status.status_code == StatusCode.ERROR
    assert attempt.status.status_code == StatusCode.ERROR and _attrs(attempt)["error.type"]


def test_every_deployment_failing_marks_the_server_span_and_each_attempt(fake, gateway, spans):
    first, second = fake(behaviour=Behaviour(status=503)), fake(behaviour=Behaviour(status=500))
    gw = gateway(config_for({"first": first.url, "second": second.url}))
    traceparent, trace_id, _ = _traceparent()
    response = httpx.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": "m", "messages": MESSAGES},
        headers={"traceparent": traceparent},
        timeout=30,
    )
    assert response.status_code >= 500
    tree = _tree(spans, trace_id, {"POST /v1/chat/completions", "chat first-model", "chat second-model"})
    server = tree["POST /v1/chat/completions"][0]
    assert server.status.status_code == StatusCode.ERROR
    assert _attrs(server)["http.response.status_code"] == response.status_code
    attempts = tree["chat first-model"] + tree["chat second-model"]
    assert attempts and all(a.status.status_code == StatusCode.ERROR for a in attempts)


def test_a_client_that_leaves_mid_stream_ends_the_stream_span_as_client_gone(fake, gateway, spans):
    upstream = fake(behaviour=Behaviour(completion_tokens=400, chunk_gap_ms=10))
    gw = gateway(config_for({"up": upstream.url}))
    traceparent, trace_id, _ = _traceparent()
    body = {"model": "m", "stream": True, "messages": MESSAGES}
    with httpx.stream(
        "POST", f"{gw.url}/v1/chat/completions", json=body, headers={"traceparent": traceparent}, timeout=30
    ) as response:
        for i, _line in enumerate(response.iter_lines()):
            if i >= 6:
                break
    tree = _tree(spans, trace_id, {"gateway.stream", "chat up-model"})
    assert _attrs(tree["gateway.stream"][0])["gateway.stream.end"] == "client_gone"
    assert 0 < _attrs(tree["gateway.stream"][0])["gateway.stream.chunks"] < 400


def test_embeddings_with_a_virtual_key_trace_auth_and_an_embeddings_attempt(fake, gateway, spans):
    upstream = fake()
    gw = gateway(config_for({"up": upstream.url}), admin_key="admin-for-tracing")
    admin = {"authorization": "Bearer admin-for-tracing"}
    key = httpx.post(f"{gw.url}/admin/api/keys", json={"name": "traced"}, headers=admin, timeout=10).json()
    traceparent, trace_id, _ = _traceparent()
    response = httpx.post(
        f"{gw.url}/v1/embeddings",
        json={"model": "m", "input": "some text"},
        headers={"traceparent": traceparent, "authorization": f"Bearer {key['key']}"},
        timeout=30,
    )
    assert response.status_code == 200
    tree = _tree(
        spans, trace_id, {"POST /v1/embeddings", "gateway.auth", "gateway.admit", "embeddings up-model"}
    )
    attrs = _attrs(tree["embeddings up-model"][0])
    assert attrs["gen_ai.operation.name"] == "embeddings" and attrs["gen_ai.usage.input_tokens"] > 0
    assert _attrs(tree["gateway.admit"][0])["gateway.key_name"] == "traced"


def test_retrieval_is_traced_and_the_augmented_prompt_is_kept(fake, gateway, local_embedder, tmp_path, spans):
    from tests.test_rag_chat import QUESTION, _collection, _config, _docs

    up = fake(name="up")
    rag = "rag:\n  collections:\n" + _collection("twin", _docs(tmp_path))
    config = _config(up.url, rag) + "prompt_log:\n  enabled: true\n"
    gw = gateway(config, qdrant_path=tmp_path / "qdrant")
    traceparent, trace_id, _ = _traceparent()
    answer = _client(gw.url, traceparent).chat.completions.create(
        model="m", messages=QUESTION, extra_body={"rag": {"collection": "twin", "top_k": 1}}
    )
    tree = _tree(spans, trace_id, {"POST /v1/chat/completions", "gateway.rag", "rag.embed", "rag.search"})
    server, rag_span = tree["POST /v1/chat/completions"][0], tree["gateway.rag"][0]
    assert rag_span.parent.span_id == server.context.span_id
    assert (
        _attrs(rag_span)["gateway.rag.collection"] == "twin" and _attrs(rag_span)["gateway.rag.chunks"] == 1
    )
    for step in ("rag.embed", "rag.search"):
        assert tree[step][0].parent.span_id == rag_span.context.span_id

    def kept() -> dict[str, Any] | None:
        response = httpx.get(f"{gw.url}/admin/api/requests/{answer.id}", timeout=10)
        prompt = response.json().get("prompt") if response.status_code == 200 else None
        return prompt

    prompt = wait_for(kept)
    assert "every seven days" in prompt["augmented"] and "every seven days" not in prompt["messages"]
