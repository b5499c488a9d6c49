"""Retrieval quality on the project's labelled set: hit@1/3/5 and MRR per pipeline.

    python -m bench.rag_quality [--gateway http://127.0.0.1:8080 --model llama-3.1-8b]

The set (`tests/rag_quality/`) is 42 short documents in ten topics (bees, the press,
rides, software, …), with near-duplicates that share a topic and most words but differ
in the fact asked for (inspections in summer and in autumn, two presses, two newsletters),
and 52 questions: 42 paraphrases that avoid the document's words, 10 asking for one
specific name or number. Each question has exactly one answering document. Everything runs locally: the real local
embedder and Qdrant local mode in a temporary directory.

Pipelines: `dense`, `hybrid` (dense + BM25-style sparse, RRF). `expanded` (rewrites) and
`reranked` (LLM reranker) need a chat model through a running gateway (`--gateway`,
`--model`); without one they are reported as skipped — the demo's simulated models
answer canned text, which would measure nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from rag.documents import make_document
from rag.embedders import LocalEmbedder
from rag.ingest import Ingestor
from rag.retrieve import Reranker, RetrievalOptions, Rewriter, retrieve
from rag.store import Hit, Store

SET = Path(__file__).resolve().parent.parent / "tests" / "rag_quality"


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
        prompt = f"Rewrite this question in {n} different ways, one per line, nothing else:\n{question}"
        text = await asyncio.to_thread(_chat, gateway, model, prompt)
        return [line.strip() for line in text.splitlines() if line.strip()][:n]

    return rewrite


def gateway_reranker(gateway: str, model: str) -> Reranker:
    async def rerank(question: str, hits: list[Hit]) -> list[Hit]:
        passages = "\n".join(f"[{i}] {h.text}" for i, h in enumerate(hits, 1))
        prompt = f"Order the passages by relevance to the question, numbers only, comma-separated.\nQuestion: {question}\n{passages}"
        text = await asyncio.to_thread(_chat, gateway, model, prompt)
        order = [
            int(t) - 1 for t in text.replace(",", " ").split() if t.isdigit() and 0 < int(t) <= len(hits)
        ]
        seen = list(dict.fromkeys(order))
        return [hits[i] for i in seen] + [h for i, h in enumerate(hits) if i not in seen]

    return rerank


def score(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks)
    return {
        "hit@1": sum(1 for r in ranks if r is not None and r < 1) / n,
        "hit@3": sum(1 for r in ranks if r is not None and r < 3) / n,
        "hit@5": sum(1 for r in ranks if r is not None and r < 5) / n,
        "mrr": sum(1 / (r + 1) for r in ranks if r is not None) / n,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    documents, questions = load()
    embedder = LocalEmbedder()
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store(path=Path(tmp)).open()
        docs = [
            make_document(d["id"], d["text"], kind="post", title=d["title"], url=d["id"]) for d in documents
        ]
        await Ingestor(store, embedder, "quality").run(docs)
        pipelines: dict[str, tuple[RetrievalOptions, Rewriter | None, Reranker | None]] = {
            "dense": (RetrievalOptions(top_k=5), None, None),
            "hybrid": (RetrievalOptions(top_k=5, hybrid=True), None, None),
        }
        if args.gateway:
            rewriter, reranker = (
                gateway_rewriter(args.gateway, args.model),
                gateway_reranker(args.gateway, args.model),
            )
            pipelines["expanded"] = (RetrievalOptions(top_k=5, hybrid=True, expansions=2), rewriter, None)
            pipelines["reranked"] = (
                RetrievalOptions(top_k=5, hybrid=True, rerank=True, candidates=10),
                None,
                reranker,
            )
        results: dict[str, Any] = {}
        for name, (options, rewriter, reranker) in pipelines.items():
            ranks: list[int | None] = []
            for q in questions:
                found = await retrieve(store, embedder, "quality", q["q"], options, rewriter, reranker)
                sources = [h.payload["source"] for h in found.hits]
                ranks.append(sources.index(q["doc"]) if q["doc"] in sources else None)
            results[name] = {k: round(v, 3) for k, v in score(ranks).items()}
        for name in ("expanded", "reranked"):
            results.setdefault(name, "skipped: needs a chat model through a gateway (--gateway, --model)")
        await store.aclose()
    embedder.close()
    return {"documents": len(documents), "questions": len(questions), "pipelines": results}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gateway", default=None, help="a running gateway for rewrites and reranking")
    parser.add_argument("--model", default="llama-3.1-8b")
    report = asyncio.run(run(parser.parse_args()))
    print(f"{report['documents']} documents, {report['questions']} questions")
    for name, figures in report["pipelines"].items():
        if isinstance(figures, dict):
            print(f"{name:9} " + "  ".join(f"{k} {v:.3f}" for k, v in figures.items()))
        else:
            print(f"{name:9} {figures}")


if __name__ == "__main__":
    main()
