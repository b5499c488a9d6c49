"""The simulated upstreams speak OpenAI's wire format and fail exactly as told, over real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from gateway.simulator import Behaviour, Simulator, SimulatorServer

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
Serve = Callable[..., tuple[Simulator, httpx.Client]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start simulators on loopback; everything is stopped (bounded) at teardown."""
    started: list[tuple[SimulatorServer, httpx.Client]] = []

    def start(flavour: str = "openai", behaviour: Behaviour | None = None) -> tuple[Simulator, httpx.Client]:
        sim = Simulator(flavour, behaviour)
        server = SimulatorServer(sim)
        client = httpx.Client(base_url=server.start_in_thread(), timeout=5.0)
        started.append((server, client))
        return sim, client

    yield start
    for server, client in started:
        client.close()
        server.stop(timeout_s=5.0)


def chat(client: httpx.Client, **extra: Any) -> httpx.Response:
    return client.post("/chat/completions", json={"model": "m", "messages": MESSAGES, **extra})


def stream_events(client: httpx.Client, **extra: Any) -> tuple[httpx.Response, list[Any]]:
    """POST a streaming request; return the response and its events (`"[DONE]"` kept as a string)."""
    body = {"model": "m", "messages": MESSAGES, "stream": True, **extra}
    events: list[Any] = []
    with client.stream("POST", "/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = line[len("data: ") :]
                events.append(data if data == "[DONE]" else orjson.loads(data))
    return response, events


def wait_until(predicate: Callable[[], object], timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.002)


def test_non_stream_has_openai_shape_and_deterministic_usage(serve: Serve) -> None:
    sim, client = serve()
    response = chat(client)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "m"
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == "Simulated openai answer to: What is the capital"
    assert body["usage"]["prompt_tokens"] == 6 + 4
    assert body["usage"]["completion_tokens"] == 8 and body["usage"]["total_tokens"] == 18
    assert sim.requests[0].body["messages"] == MESSAGES
    assert sim.requests[0].headers["content-type"] == "application/json"


def test_stream_with_include_usage_ends_with_usage_chunk_and_done(serve: Serve) -> None:
    _, client = serve(behaviour=Behaviour(content="Paris is the capital."))
    response, events = stream_events(client, stream_options={"include_usage": True})
    assert response.headers["content-type"] == "text/event-stream"
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    words = [e["choices"][0]["delta"]["content"] for e in events[1:5]]
    assert words == ["Paris ", "is ", "the ", "capital."]
    assert events[5]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert events[6]["choices"] == [] and events[6]["usage"]["completion_tokens"] == 4
    assert events[7] == "[DONE]" and len(events) == 8
    assert all(e["usage"] is None for e in events[:6])  # OpenAI sends "usage": null until the end


def test_groq_streams_usage_only_in_the_final_chunks_x_groq(serve: Serve) -> None:
    _, client = serve("groq")
    response, events = stream_events(client)
    assert response.headers["x-ratelimit-reset-requests"] == "2m59.56s"
    assert events[0]["x_groq"]["id"].startswith("req_")
    final = events[-2]
    assert final["choices"][0]["finish_reason"] == "stop"
    assert final["x_groq"]["usage"]["completion_tokens"] == 8
    assert not any("usage" in e for e in events[:-1])
    assert chat(client).json()["x_groq"]["id"].startswith("req_")


def test_perplexity_carries_citations_and_search_results(serve: Serve) -> None:
    _, client = serve("perplexity")
    body = chat(client).json()
    assert len(body["citations"]) >= 2
    assert all(url.startswith("https://example.com/") for url in body["citations"])
    assert [r["url"] for r in body["search_results"]] == body["citations"]
    assert body["usage"]["search_context_size"] == "low"
    _, events = stream_events(client)
    assert events[0]["citations"] == body["citations"]


def test_die_after_chunks_gives_the_client_a_broken_transfer(serve: Serve) -> None:
    sim, client = serve(behaviour=Behaviour(die_after_chunks=2))
    received: list[str] = []
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    with pytest.raises(httpx.RemoteProtocolError), client.stream("POST", "/chat/completions", json=body) as r:
        for line in r.iter_lines():
            received.append(line)
    data = [line for line in received if line.startswith("data: ")]
    assert len(data) == 3  # role chunk + 2 content chunks, then nothing: no final chunk, no [DONE]
    wait_until(lambda: sim.streams[0].ended)
    assert sim.streams[0].outcome == "died" and sim.streams[0].chunks_sent == 2


def test_client_close_during_hang_is_recorded(serve: Serve) -> None:
    sim, client = serve(behaviour=Behaviour(hang_after_chunks=1))
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    with client.stream("POST", "/chat/completions", json=body) as response:
        # Read the role chunk and the one content chunk before the hang. Not with a `for`
        # loop: breaking out of httpx's line iterator closes the connection.
        lines, data_lines = response.iter_lines(), 0
        while data_lines < 2:
            data_lines += next(lines).startswith("data: ")
        assert not sim.streams[0].ended
        closed_at = time.monotonic()
    wait_until(lambda: sim.streams[0].closed_by_client_at is not None)
    record = sim.streams[0]
    assert record.outcome == "client_closed" and record.finished_at is None
    assert record.closed_by_client_at is not None and record.closed_by_client_at >= closed_at


def test_rate_limit_sends_retry_after_and_openai_error(serve: Serve) -> None:
    _, client = serve(behaviour=Behaviour(status=429, retry_after_s=2, ratelimit_headers={"X-Extra": "1"}))
    response = chat(client, stream=True)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2" and response.headers["x-extra"] == "1"
    error = response.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["message"]


def test_context_length_error_gets_its_code(serve: Serve) -> None:
    message = "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens."
    _, client = serve(behaviour=Behaviour(status=400, error_message=message))
    error = chat(client).json()["error"]
    assert error == {
        "message": message,
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }


def test_script_is_consumed_in_order_then_default_applies(serve: Serve) -> None:
    sim, client = serve()
    sim.script(Behaviour(status=500), Behaviour(status=429, retry_after_s=0.5), Behaviour(garbage=True))
    first, second, third, fourth = (chat(client) for _ in range(4))
    assert first.status_code == 500 and first.json()["error"]["type"] == "server_error"
    assert second.status_code == 429 and second.headers["retry-after"] == "0.5"
    assert third.status_code == 200 and third.text == "<html>upstream exploded</html>"
    assert fourth.status_code == 200 and fourth.json()["object"] == "chat.completion"
    assert len(sim.requests) == 4 and sim.pending_script == 0


@pytest.mark.parametrize(
    ("behaviour", "last_line", "outcome"),
    [
        (Behaviour(garbage_after_chunks=1), "data: {not json", "garbage"),
        (Behaviour(error_event_after_chunks=1), '"type":"InternalServerError"', "error_event"),
    ],
)
def test_bad_events_end_the_stream_without_done(
    serve: Serve, behaviour: Behaviour, last_line: str, outcome: str
) -> None:
    sim, client = serve(behaviour=behaviour)
    with client.stream("POST", "/chat/completions", json={"messages": MESSAGES, "stream": True}) as r:
        data = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert len(data) == 3 and last_line in data[-1]
    assert sim.streams[0].outcome == outcome


def test_assistant_prefix_continues_the_answer(serve: Serve) -> None:
    _, client = serve(behaviour=Behaviour(content="one two three four"))
    messages = [*MESSAGES, {"role": "assistant", "content": "one two "}]
    body = client.post("/chat/completions", json={"model": "m", "messages": messages}).json()
    assert body["choices"][0]["message"]["content"] == "three four"
    assert body["usage"]["completion_tokens"] == 2


def test_vllm_metrics_count_requests_in_flight(serve: Serve) -> None:
    sim, client = serve("vllm", Behaviour(first_byte_ms=300, queue_waiting=3, kv_cache_usage=0.5))
    worker = threading.Thread(target=chat, args=(client,), daemon=True)
    worker.start()
    wait_until(lambda: sim.in_flight == 1)
    metrics = httpx.get(str(client.base_url).removesuffix("/v1/") + "/metrics", timeout=5).text
    assert 'vllm:num_requests_running{model_name="m"} 1.0' in metrics
    assert 'vllm:num_requests_waiting{model_name="m"} 3.0' in metrics
    assert 'vllm:gpu_cache_usage_perc{model_name="m"} 0.5' in metrics
    worker.join(5)


def test_http_control_endpoints(serve: Serve) -> None:
    _, client = serve()
    root = str(client.base_url).removesuffix("/v1/")
    assert httpx.post(f"{root}/_sim/behaviour", json={"status": 503}).status_code == 200
    assert httpx.post(f"{root}/_sim/script", json=[{"status": 400}]).json()["queued"] == 1
    assert httpx.post(f"{root}/_sim/behaviour", json={"statsu": 503}).status_code == 400
    assert [chat(client).status_code for _ in range(2)] == [400, 503]
    seen = httpx.get(f"{root}/_sim/requests").json()
    assert seen["count"] == 2 and seen["bodies"][0]["model"] == "m"


def test_openai_sdk_parses_both_modes(serve: Serve) -> None:
    openai = pytest.importorskip("openai")
    _, client = serve("together")
    sdk = openai.OpenAI(base_url=str(client.base_url), api_key="sim", max_retries=0, timeout=5)
    completion = sdk.chat.completions.create(model="m", messages=MESSAGES)
    assert completion.usage is not None and completion.usage.completion_tokens == 8
    stream = sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == completion.choices[0].message.content
    vectors = sdk.embeddings.create(model="e", input=["a", "b"])
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 16


def test_stop_is_prompt_even_with_a_hanging_stream() -> None:
    sim = Simulator(behaviour=Behaviour(hang_after_chunks=0))
    server = SimulatorServer(sim)
    base_url = server.start_in_thread()
    client = httpx.Client(timeout=5)
    with client.stream("POST", f"{base_url}/chat/completions", json={"messages": MESSAGES, "stream": True}):
        server.stop(timeout_s=5)
        assert not server._server.force_exit  # stopped gracefully: the hanging stream did not hold it up
    client.close()
    assert sim.streams[0].outcome == "released"


async def test_serve_in_loop() -> None:
    sim = Simulator("groq")
    async with SimulatorServer(sim) as base_url, httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        response = await client.post("/chat/completions", json={"messages": MESSAGES})
        assert response.json()["model"] == "llama-3.1-8b-instant"
