"""Query expansion and LLM reranking in the chat path: the gateway routes both to a cheap model,
with the prompts of `rag.prompts`, and the reranker's order decides which chunk reaches the prompt."""

from __future__ import annotations

from pathlib import Path

import openai

from gateway.simulator import Behaviour
from tests.harness import config_for
from tests.test_rag_chat import QUESTION, _collection, _docs, _upstream_messages


def test_rewrites_and_the_rerankers_order_go_through_the_cheap_model(
    fake, gateway, local_embedder, tmp_path: Path
):
    up = fake(name="up")
    cheap = fake(name="cheap", behaviour=Behaviour(content="2, 1"))  # "the second candidate is best"
    config = config_for(
        {"up": up.url, "cheap": cheap.url},
        models={"m": [("up", "up-model")], "small": [("cheap", "small-model")]},
    )
    collection = _collection(
        "twin",
        _docs(tmp_path),
        hybrid="true",
        expand="{model: small, n: 2}",
        rerank="{model: small, candidates: 5}",
    )
    gw = gateway(config + "rag:\n  collections:\n" + collection, qdrant_path=tmp_path / "qdrant")
    api = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=30)
    answer = api.chat.completions.create(
        model="m",
        messages=QUESTION,
        extra_body={"rag": {"collection": "twin", "top_k": 1}},
        extra_headers={"x-gateway-metadata": "enabled"},
    )
    prompts = [
        str(r.body["messages"][-1]["content"])
        for r in cheap.sim.requests
        if r.path.endswith("/chat/completions")
    ]
    assert len(prompts) == 2
    assert (
        prompts[0].startswith("Rewrite the question below in 2 different ways")
        and QUESTION[0]["content"] in prompts[0]
    )
    assert prompts[1].startswith("Order the passages") and "[1] " in prompts[1] and "[2] " in prompts[1]
    # Retrieval ranks the bee note first; the reranker named the second passage first, so it is
    # the one (top_k 1) that reaches the answering model.
    assert prompts[1].index("every seven days") < prompts[1].index("Heidelberg")
    assert "1962 Heidelberg" in _upstream_messages(up)[0]["content"]
    assert "notes" not in (answer.model_extra or {})["gateway"]["rag"]
