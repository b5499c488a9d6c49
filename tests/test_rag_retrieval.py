"""Fused retrieval: what `score_threshold` means in hybrid mode, and the LLM steps' prompts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rag import sparse
from rag.documents import make_document
from rag.embedders import vector_name
from rag.ingest import Ingestor
from rag.prompts import parse_order, parse_rewrites, rerank_prompt, rewrite_prompt
from rag.retrieve import RetrievalOptions, retrieve
from rag.search import Query, search_points
from rag.store import Store

QUESTION = "How often do you open the hives in summer?"
DOCS = {
    "bees.md": "Visit each hive every seven days from May to July, and open it on warm afternoons only.",
    "invoice.md": "The summer invoice template opens in the spreadsheet; often it needs a new tab.",
    "press.md": "Our letterpress is a 1962 Heidelberg platen bought from a newspaper in Lund.",
}


@pytest.fixture
async def store(tmp_path: Path, local_embedder: Any) -> AsyncIterator[Store]:
    opened = await Store(path=tmp_path / "qdrant").open()
    docs = [make_document(name, text, kind="post") for name, text in DOCS.items()]
    await Ingestor(opened, local_embedder, "c").run(docs)
    yield opened
    await opened.aclose()


async def _sources(store: Store, embedder: Any, **options: Any) -> dict[str, Any]:
    found = await retrieve(store, embedder, "c", QUESTION, RetrievalOptions(top_k=10, **options))
    return {h.payload["source"]: h for h in found.hits}


async def test_the_threshold_keeps_the_same_chunks_in_dense_and_hybrid_retrieval(
    store: Store, local_embedder: Any
) -> None:
    everything = await _sources(store, local_embedder)
    similarity = {source: hit.similarity for source, hit in everything.items()}
    assert set(similarity) == set(DOCS) and all(s is not None for s in similarity.values())
    # A threshold between the bee answer and the chunk that only shares words with the question.
    threshold = (similarity["bees.md"] + similarity["invoice.md"]) / 2
    assert similarity["bees.md"] > threshold > similarity["invoice.md"]

    dense = await _sources(store, local_embedder, score_threshold=threshold)
    hybrid = await _sources(store, local_embedder, score_threshold=threshold, hybrid=True)
    expanded_words = await _sources(store, local_embedder, hybrid=True)
    assert "invoice.md" in expanded_words  # the sparse side finds it by its words…
    assert set(dense) == set(hybrid) == {"bees.md"}  # …but it is below the similarity floor
    assert hybrid["bees.md"].similarity == pytest.approx(similarity["bees.md"], abs=1e-4)


async def test_with_rewrites_the_floor_is_judged_against_the_best_phrasing(
    store: Store, local_embedder: Any
) -> None:
    async def rewriter(question: str, n: int) -> list[str]:
        return ["spreadsheet invoice template tab"]  # close to the invoice, far from the question

    options = RetrievalOptions(top_k=10, hybrid=True, expansions=1, score_threshold=0.5)
    found = await retrieve(store, local_embedder, "c", QUESTION, options, rewriter)
    assert len(found.queries) == 2
    # The floor is judged against every phrasing: the rewrite lets the invoice in, as asked.
    assert "invoice.md" in {h.payload["source"] for h in found.hits}
    assert all((h.similarity or 0) >= 0.5 for h in found.hits)


def test_rewrites_and_orders_are_read_from_model_answers() -> None:
    assert "in 2 different ways" in rewrite_prompt("Why bees?", 2)
    assert parse_rewrites("1. Why keep bees\n\n- reasons for beekeeping\n3) third", 2) == [
        "Why keep bees",
        "reasons for beekeeping",
    ]
    prompt = rerank_prompt("q", ["alpha " * 200, "beta"])
    assert "[1] alpha" in prompt and "[2] beta" in prompt and len(prompt) < 800
    assert parse_order("3, 1, 9, 1", ["a", "b", "c"]) == ["c", "a", "b"]
    assert parse_order("none of them", ["a", "b"]) == ["a", "b"]


def test_the_labelled_set_is_well_formed() -> None:
    root = Path(__file__).parent / "rag_quality"
    docs = [json.loads(line) for line in (root / "documents.jsonl").read_text().splitlines() if line]
    questions = [json.loads(line) for line in (root / "questions.jsonl").read_text().splitlines() if line]
    ids = [d["id"] for d in docs]
    assert len(ids) == len(set(ids)) >= 40 and len(questions) >= 50
    assert {q["doc"] for q in questions} == set(ids)  # every document is the answer to something
    assert len({q["q"] for q in questions}) == len(questions)


async def test_local_mode_shortcuts_rank_as_qdrant_does(tmp_path: Path, local_embedder: Any) -> None:
    root = Path(__file__).parent / "rag_quality"
    docs = [json.loads(line) for line in (root / "documents.jsonl").read_text().splitlines() if line]
    store = await Store(path=tmp_path / "qdrant").open()
    try:
        ingestor = Ingestor(store, local_embedder, "set")
        await ingestor.run([make_document(d["id"], d["text"], kind="post", title=d["title"]) for d in docs])
        changed = make_document(docs[0]["id"], "The hives were sold in spring.", kind="post")
        await ingestor.run([changed])  # leaves deleted points behind in local mode's arrays
        dense_name = vector_name(local_embedder.id)
        for question in ("How bad were the parasites after the harvest?", "Where did you get a flat tyre?"):
            vector = await local_embedder.embed_query(question)
            for query in (
                Query(dense=[vector], limit=10),
                Query(dense=[vector], sparse=[sparse.query_vector(question)], limit=10, sparse_weight=0.5),
            ):
                fast = await store.search("set", local_embedder.id, query)
                ordinary = await store._call(search_points, store._client, "set", dense_name, query, None)
                assert [h.id for h in fast] == [h.id for h in ordinary]
                assert [h.score for h in fast] == pytest.approx([h.score for h in ordinary], abs=1e-5)
                assert [h.similarity for h in fast] == pytest.approx(
                    [h.similarity for h in ordinary], abs=1e-5
                )
                assert not any(h.payload["source"] == docs[0]["id"] and "kilos" in h.text for h in fast)
    finally:
        await store.aclose()
