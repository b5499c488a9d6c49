"""Retrieval quality on the project's labelled set: hit@1/3/5 and MRR per pipeline.

    python -m bench.rag_quality [--gateway http://127.0.0.1:8080 --model <chat model>]

The set (`tests/rag_quality/`, written for this project) is 47 short first-person
documents of one fictional writer in seven topics, most of them in families of
near-duplicates that share a topic, a structure and most of their words but differ in
the fact asked for (seven months of hive inspection notes, six bike trips, three
presses, three sets of opening hours, two newsletters, two backup routines…), and 60
questions that paraphrase rather than quote (a "flat tyre" for a puncture, "parasites"
for mites, "the Danish island" for Bornholm), each with exactly one answering document.
Everything but the chat model runs here: the real local embedder, Qdrant local mode in
a temporary directory, the retrieval code the gateway runs.

Pipelines: `dense`; `hybrid` (dense + BM25-style sparse, weighted RRF); `expanded`
(hybrid plus two rewrites of the question by a chat model through a gateway, all
fused); `reranked` (hybrid, then a chat model through a gateway orders the top 10).
Expansion and reranking send the gateway's own prompts (`rag.prompts`). Without
`--gateway` the benchmark starts a gateway whose chat model is `bench.rag_model`: a
deterministic, knowledge-free stand-in — its figures show the plumbing with a weak
model, not what a real LLM reaches. Give `--gateway`/`--model` to measure a real one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.procs import gateway_config, new_workdir, python_env, start_gateway, start_server
from rag.documents import make_document
from rag.embedders import LocalEmbedder
from rag.ingest import Ingestor
from rag.prompts import parse_order, parse_rewrites, rerank_prompt, rewrite_prompt
from rag.retrieve import Reranker, RetrievalOptions, Rewriter, retrieve
from rag.store import Hit, Store

SET = Path(__file__).resolve().parent.parent / "tests" / "rag_quality"
STAND_IN_MODEL = "stand-in"


def load() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    def read(name: str) -> list[dict[str, str]]:
        return [json.loads(line) for line in (SET / name).read_text().splitlines() if line.strip()]

    return read("documents.jsonl"), read("questions.jsonl")


def _chat(gateway: str, model: str, prompt: str) -> str:
    import openai

    client = openai.OpenAI(base_url=gateway + "/v1", api_key="bench", max_retries=0, timeout=60)
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], temperature=0
    )
    return answer.choices[0].message.content or ""


def gateway_rewriter(gateway: str, model: str) -> Rewriter:
    async def rewrite(question: str, n: int) -> list[str]:
        return parse_rewrites(await asyncio.to_thread(_chat, gateway, model, rewrite_prompt(question, n)), n)

    return rewrite


def gateway_reranker(gateway: str, model: str) -> Reranker:
    async def rerank(question: str, hits: list[Hit]) -> list[Hit]:
        prompt = rerank_prompt(question, [h.text for h in hits])
        return parse_order(await asyncio.to_thread(_chat, gateway, model, prompt), hits)

    return rerank


@contextlib.contextmanager
def stand_in_gateway() -> Iterator[str]:
    """A gateway on loopback whose one chat model is the stand-in (`bench.rag_model`)."""
    with new_workdir() as tmp:
        workdir = Path(tmp)
        model_proc, model_root = start_server(
            workdir,
            "rag-model",
            [sys.executable, "-m", "bench.rag_model", "--port"],
            python_env(),
            timeout_s=60,
        )
        try:
            config = gateway_config(model_root + "/v1", STAND_IN_MODEL, STAND_IN_MODEL)
            gateway_proc, root = start_gateway(workdir, config, "aiohttp")
            try:
                yield root
            finally:
                gateway_proc.stop()
        finally:
            model_proc.stop()


def score(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks)
    return {
        "hit@1": sum(1 for r in ranks if r is not None and r < 1) / n,
        "hit@3": sum(1 for r in ranks if r is not None and r < 3) / n,
        "hit@5": sum(1 for r in ranks if r is not None and r < 5) / n,
        "mrr": sum(1 / (r + 1) for r in ranks if r is not None) / n,
    }


Pipeline = tuple[RetrievalOptions, Rewriter | None, Reranker | None]


def pipelines(gateway: str, model: str) -> dict[str, Pipeline]:
    hybrid = {"top_k": 5, "hybrid": True, "sparse_weight": 0.5}
    return {
        "dense": (RetrievalOptions(top_k=5), None, None),
        "hybrid, equal weights": (RetrievalOptions(top_k=5, hybrid=True, sparse_weight=1.0), None, None),
        "hybrid": (RetrievalOptions(**hybrid), None, None),  # type: ignore[arg-type]
        "expanded": (RetrievalOptions(**hybrid, expansions=2), gateway_rewriter(gateway, model), None),  # type: ignore[arg-type]
        "reranked": (
            RetrievalOptions(**hybrid, rerank=True, candidates=10),  # type: ignore[arg-type]
            None,
            gateway_reranker(gateway, model),
        ),
    }


async def measure(gateway: str, model: str) -> dict[str, Any]:
    documents, questions = load()
    embedder = LocalEmbedder()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store(path=Path(tmp)).open()
        docs = [
            make_document(d["id"], d["text"], kind="post", title=d["title"], url=d["id"]) for d in documents
        ]
        await Ingestor(store, embedder, "quality").run(docs)
        for name, (options, rewriter, reranker) in pipelines(gateway, model).items():
            ranks: list[int | None] = []
            for q in questions:
                found = await retrieve(store, embedder, "quality", q["q"], options, rewriter, reranker)
                if found.notes:
                    raise RuntimeError(f"{name}: {found.notes}")
                sources = [h.payload["source"] for h in found.hits]
                ranks.append(sources.index(q["doc"]) if q["doc"] in sources else None)
            results[name] = {k: round(v, 3) for k, v in score(ranks).items()}
        await store.aclose()
    embedder.close()
    return {"documents": len(documents), "questions": len(questions), "pipelines": results}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gateway", default=None, help="a running gateway serving --model")
    parser.add_argument("--model", default=STAND_IN_MODEL)
    args = parser.parse_args()
    if args.gateway:
        report = asyncio.run(measure(args.gateway, args.model))
        who = f"{args.model} through {args.gateway}"
    else:
        with stand_in_gateway() as root:
            report = asyncio.run(measure(root, STAND_IN_MODEL))
        who = "the deterministic stand-in (bench.rag_model) through a gateway; not an LLM"
    print(f"{report['documents']} documents, {report['questions']} questions; chat model: {who}")
    for name, figures in report["pipelines"].items():
        print(f"{name:22} " + "  ".join(f"{k} {v:.3f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
