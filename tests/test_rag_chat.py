"""RAG in the chat path: a real gateway, real Qdrant local mode, the real local embedder and a fake
upstream that records the prompt it received."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.simulator import Behaviour
from tests.harness import config_for, generation_record, wait_for

BEES = """---
title: Rooftop bees
url: https://mara.example/bees
author: mara
---
# Rooftop bees

Visit the hive every seven days from May to July, even when you are busy.
"""
PRESS = """---
title: The letterpress
url: https://mara.example/press
author: mara
---
# The letterpress

Our letterpress is a 1962 Heidelberg platen bought from a newspaper in Lund.
"""
QUESTION = [{"role": "user", "content": "How often should a beginner look inside a beehive?"}]
META = {"x-gateway-metadata": "enabled"}


def _docs(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "bees.md").write_text(BEES)
    (docs / "press.md").write_text(PRESS)
    return docs


def _config(url: str, rag: str, model_rag: str = "", **fakes: str) -> str:
    config = config_for({"up": url, **fakes}, models={"m": [("up", "up-model")], "emb": [("up", "up-embed")]})
    if model_rag:
        config = config.replace("  - name: m\n", f"  - name: m\n    rag: {model_rag}\n", 1)
    return config + rag


def _collection(name: str, seed: Path | None = None, **fields: str) -> str:
    lines = [f"    - name: {name}"] + [f"      {k}: {v}" for k, v in fields.items()]
    if seed is not None:
        lines.append(f"      seed: [{seed}]")
    return "\n".join(lines) + "\n"


def _upstream_messages(fake: Any) -> list[dict[str, Any]]:
    chats = [r for r in fake.sim.requests if r.path.endswith("/chat/completions")]
    body: dict[str, Any] = chats[-1].body
    assert "rag" not in body  # the gateway's own field never reaches the upstream
    return list(body["messages"])


@pytest.fixture
def grounded(fake, gateway, local_embedder, tmp_path):
    up = fake(name="up")
    rag = "rag:\n  collections:\n" + _collection("twin", _docs(tmp_path), hybrid="true")
    gw = gateway(_config(up.url, rag), qdrant_path=tmp_path / "qdrant")
    return up, gw


def test_the_prompt_holds_the_retrieved_chunk_and_the_answer_cites_it(grounded):
    up, gw = grounded
    api = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=20)
    answer = api.chat.completions.create(
        model="m",
        messages=QUESTION,
        extra_body={"rag": {"collection": "twin", "top_k": 1}},
        extra_headers=META,
    )
    messages = _upstream_messages(up)
    assert messages[0]["role"] == "system" and "every seven days" in messages[0]["content"]
    assert messages[-1] == QUESTION[0]
    annotations = answer.choices[0].message.annotations or []
    assert [a.url_citation.url for a in annotations] == ["https://mara.example/bees"]
    assert annotations[0].url_citation.title == "Rooftop bees"
    extra = answer.model_extra or {}
    assert extra["citations"] == ["https://mara.example/bees"]
    rag_meta = extra["gateway"]["rag"]
    assert rag_meta["collection"] == "twin" and len(rag_meta["chunks"]) == 1 and rag_meta["retrieval_ms"] > 0
    record = generation_record(gw.url, answer.id)
    assert record["retrieval_ms"] > 0 and record["rag_chunks"][0]["id"] == rag_meta["chunks"][0]["id"]


def test_a_stream_carries_the_citations_on_its_final_chunk(grounded):
    up, gw = grounded
    api = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=20)
    chunks = list(
        api.chat.completions.create(
            model="m", messages=QUESTION, stream=True, extra_body={"rag": {"collection": "twin", "top_k": 1}}
        )
    )
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    delta = final.choices[0].delta.model_extra or {}
    assert delta["annotations"][0]["url_citation"]["url"] == "https://mara.example/bees"
    assert (final.model_extra or {})["citations"] == ["https://mara.example/bees"]
    assert all(not (c.model_extra or {}).get("citations") for c in chunks if c is not final)
    assert "every seven days" in _upstream_messages(up)[0]["content"]


@pytest.mark.parametrize("native", [False, True], ids=["translated", "native"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_the_responses_api_is_grounded_and_cites_too(fake, gateway, local_embedder, tmp_path, native, stream):
    """Through /v1/responses, to a deployment with or without the Responses API: the context reaches
    the upstream either way, and the answer's text part carries Responses-shaped `url_citation`s."""
    up = fake(name="up")
    rag = "rag:\n  collections:\n" + _collection("twin", _docs(tmp_path))
    config = _config(up.url, rag).replace(
        "    base_url:", "    responses_api: true\n    base_url:", 1 if native else 0
    )
    gw = gateway(config, qdrant_path=tmp_path / "qdrant")
    api = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=20)
    ask = {
        "model": "m",
        "input": QUESTION[0]["content"],
        "extra_body": {"rag": {"collection": "twin", "top_k": 1}},
    }
    if stream:
        with api.responses.stream(**ask) as events:  # type: ignore[arg-type]
            response = events.get_final_response()
    else:
        response = api.responses.create(**ask)  # type: ignore[call-overload]
    sent = up.sim.requests[-1]
    assert sent.path.endswith("/responses" if native else "/chat/completions")
    system = sent.body["input"][0] if native else sent.body["messages"][0]
    assert system["role"] == "system" and "every seven days" in system["content"]
    message = next(item for item in response.output if item.type == "message")
    citations = [a for a in message.content[0].annotations if a.type == "url_citation"]  # type: ignore[union-attr]
    assert [(a.url, a.title) for a in citations] == [("https://mara.example/bees", "Rooftop bees")]  # type: ignore[union-attr]


def test_a_model_configured_with_a_collection_is_always_grounded(fake, gateway, local_embedder, tmp_path):
    up = fake(name="up")
    rag = "rag:\n  collections:\n" + _collection("twin", _docs(tmp_path))
    gw = gateway(_config(up.url, rag, model_rag="{collection: twin, top_k: 1}"), qdrant_path=tmp_path / "q")
    api = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=20)
    api.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Tell me about the Heidelberg press"}]
    )
    assert "1962 Heidelberg" in _upstream_messages(up)[0]["content"]


def test_bad_rag_objects_are_400s_naming_the_field_and_unknown_collections_404(grounded):
    _, gw = grounded
    url = gw.url + "/v1/chat/completions"
    for rag, param in (
        ({"collection": "twin", "top_k": "many"}, "rag.top_k"),
        ({"collection": "twin", "score_threshold": "high"}, "rag.score_threshold"),
        ({"collection": "twin", "filter": "author"}, "rag.filter"),
        ({"collection": "twin", "colection": "x"}, "rag.colection"),
        ("twin", "rag"),
        ({"top_k": 2}, "rag.collection"),
    ):
        response = httpx.post(url, json={"model": "m", "messages": QUESTION, "rag": rag}, timeout=20)
        assert response.status_code == 400, rag
        assert response.json()["error"]["param"] == param
    api = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=20)
    with pytest.raises(openai.NotFoundError) as missing:
        api.chat.completions.create(
            model="m", messages=QUESTION, extra_body={"rag": {"collection": "nowhere"}}
        )
    assert "'nowhere'" in missing.value.message
    assert missing.value.body["code"] == "rag_collection_not_found"


def test_an_empty_collection_gives_no_context_and_no_error(fake, gateway, local_embedder, tmp_path):
    up = fake(name="up")
    gw = gateway(_config(up.url, "rag:\n  collections:\n" + _collection("empty")), qdrant_path=tmp_path / "q")
    answer = httpx.post(
        gw.url + "/v1/chat/completions",
        json={"model": "m", "messages": QUESTION, "rag": {"collection": "empty"}},
        headers=META,
        timeout=20,
    ).json()
    assert _upstream_messages(up) == QUESTION
    assert "citations" not in answer and answer["gateway"]["rag"]["chunks"] == []


def test_a_failing_embedder_is_a_502_naming_it_unless_the_collection_continues(fake, gateway, tmp_path):
    up = fake(name="up")
    broken_embeddings = fake(name="emb")
    docs = _docs(tmp_path)
    rag = (
        "rag:\n  collections:\n"
        + _collection("strict", docs, embedder="gateway", embedding_model="broken", dimensions="16")
        + _collection(
            "lenient",
            docs,
            embedder="gateway",
            embedding_model="broken",
            dimensions="16",
            on_error="continue",
        )
    )
    config = (
        _config(up.url, rag)
        .replace(
            "models:\n",
            "models:\n  - name: broken\n    deployments:\n      - provider: embup\n        model: e\n"
            "        input_price_per_mtok: 0.1\n        output_price_per_mtok: 0.0\n",
            1,
        )
        .replace("providers:\n", f"providers:\n  - name: embup\n    base_url: {broken_embeddings.url}\n", 1)
    )
    gw = gateway(config, qdrant_path=tmp_path / "q")  # seeds both through the embeddings upstream
    broken_embeddings.sim.reset(Behaviour(status=500))
    url = gw.url + "/v1/chat/completions"
    strict = httpx.post(
        url, json={"model": "m", "messages": QUESTION, "rag": {"collection": "strict"}}, timeout=20
    )
    assert strict.status_code == 502
    assert (
        strict.json()["error"]["code"] == "rag_embedder_failed"
        and "gateway:broken" in strict.json()["error"]["message"]
    )
    lenient = httpx.post(
        url,
        json={"model": "m", "messages": QUESTION, "rag": {"collection": "lenient"}},
        headers=META,
        timeout=20,
    )
    assert lenient.status_code == 200
    meta = lenient.json()["gateway"]["rag"]
    assert meta["continued_without_context"] and "gateway:broken" in meta["error"]
    assert _upstream_messages(up) == QUESTION


def test_an_unreachable_qdrant_follows_the_same_rule(fake, gateway, tmp_path):
    up = fake(name="up")
    rag = "rag:\n  collections:\n" + _collection("strict") + _collection("lenient", on_error="continue")
    gw = gateway(_config(up.url, rag), qdrant_url="http://127.0.0.1:9", qdrant_path=tmp_path / "q")
    url = gw.url + "/v1/chat/completions"
    strict = httpx.post(
        url, json={"model": "m", "messages": QUESTION, "rag": {"collection": "strict"}}, timeout=30
    )
    assert strict.status_code == 502 and strict.json()["error"]["code"] == "rag_store_unavailable"
    assert "Qdrant" in strict.json()["error"]["message"]
    lenient = httpx.post(
        url, json={"model": "m", "messages": QUESTION, "rag": {"collection": "lenient"}}, timeout=30
    )
    assert lenient.status_code == 200 and _upstream_messages(up) == QUESTION


def test_admin_ingest_works_while_other_requests_are_served(fake, gateway, local_embedder, tmp_path):
    up = fake(name="up")
    gw = gateway(_config(up.url, ""), qdrant_path=tmp_path / "q")
    documents = [
        {"source": f"note-{i}.md", "text": f"Note {i}: bees, presses and bicycles.", "type": "post"}
        for i in range(120)
    ]
    result: dict[str, Any] = {}

    def ingest() -> None:
        result["response"] = httpx.post(
            f"{gw.url}/admin/api/rag/notes/documents", json={"documents": documents}, timeout=120
        )

    worker = threading.Thread(target=ingest)
    worker.start()
    answered_during_ingest = 0
    deadline_polls = 2000
    while worker.is_alive() and deadline_polls:
        deadline_polls -= 1
        if httpx.get(f"{gw.url}/health", timeout=10).status_code == 200 and worker.is_alive():
            answered_during_ingest += 1
    worker.join(timeout=120)
    assert result["response"].status_code == 200 and result["response"].json()["added"] == 120
    assert answered_during_ingest >= 3  # the event loop kept serving while the embedder worked
    # A collection made by ingest serves requests with no config change.
    api = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=20)
    api.chat.completions.create(
        model="m", messages=QUESTION, extra_body={"rag": {"collection": "notes", "top_k": 2}}
    )
    assert "bees, presses and bicycles" in _upstream_messages(up)[0]["content"]
    listed = wait_for(lambda: httpx.get(f"{gw.url}/admin/api/rag", timeout=10).json()["data"])
    assert listed[0]["name"] == "notes" and listed[0]["chunks"] == 120


def test_the_demo_twin_answers_from_the_shipped_writing(tmp_path, local_embedder):
    from gateway.app import create_app
    from gateway.config import DEMO_CONFIG_PATH, load_config
    from tests.harness import ServerThread, settings

    app = create_app(settings(qdrant_path=tmp_path / "q"), load_config(DEMO_CONFIG_PATH))
    with ServerThread(app) as gw:
        api = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=20)
        answer = api.chat.completions.create(
            model="twin", messages=[{"role": "user", "content": "Which tyres did you take around Gotland?"}]
        )
        urls = [a.url_citation.url for a in answer.choices[0].message.annotations or []]
        assert "https://mara-lindqvist.example/posts/gotland-ride" in urls


def test_data_collection_deny_keeps_the_query_embedding_on_self_hosted_deployments(fake, gateway, tmp_path):
    up, cloud, own = fake(name="up"), fake(name="cloud"), fake(name="own")
    config = (
        config_for(
            {"up": up.url, "cloud": cloud.url, "own": own.url},
            models={"m": [("up", "up-model")], "emb": [("cloud", "e"), ("own", "e")]},
            up={"self_hosted": "true"},
            own={"self_hosted": "true"},
        )
        + "rag:\n  collections:\n"
        + _collection("notes", _docs(tmp_path), embedder="gateway", embedding_model="emb", dimensions="16")
    )
    gw = gateway(config, qdrant_path=tmp_path / "q")
    embeds = lambda fake: [r for r in fake.sim.requests if r.path.endswith("/embeddings")]  # noqa: E731
    assert embeds(cloud) and not embeds(own)  # seeding used the cheaper, first deployment
    before = len(embeds(cloud))
    httpx.post(
        gw.url + "/v1/chat/completions",
        json={
            "model": "m",
            "messages": QUESTION,
            "rag": {"collection": "notes", "top_k": 1},
            "provider": {"data_collection": "deny"},
        },
        timeout=20,
    ).raise_for_status()
    assert len(embeds(cloud)) == before and len(embeds(own)) == 1
    assert (
        _upstream_messages(up)[0]["role"] == "system"
    )  # context was added (the fake's vectors carry no meaning)
