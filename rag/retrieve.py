"""Retrieval: a question in, the best chunks of a collection out.

The base pipeline embeds the question and searches the dense vectors. Three options
lift quality where plain dense retrieval stumbles (paraphrases, near-duplicates):

- hybrid: a BM25-style sparse search beside the dense one, fused by reciprocal rank
  (exact words — names, numbers, rare terms — that embeddings blur);
- expansion: n rewrites of the question by a cheap model (a `Rewriter` the caller
  supplies), each searched too, all fused by reciprocal rank;
- reranking: the caller's `Reranker` re-orders a wider candidate list.

Fusion happens inside Qdrant (one `query_points` with a prefetch per vector), so the
options add searches, not round trips.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace

from rag import sparse
from rag.embedders import Embedder
from rag.store import Hit, Query, Store

Rewriter = Callable[[str, int], Awaitable[list[str]]]
Reranker = Callable[[str, list[Hit]], Awaitable[list[Hit]]]


@dataclass(slots=True)
class RetrievalOptions:
    top_k: int = 4
    score_threshold: float | None = None
    filter: dict[str, Any] | None = None
    hybrid: bool = False
    expansions: int = 0
    rerank: bool = False
    candidates: int = 20  # how many each search returns before fusion / reranking
    sparse_weight: float = 0.5  # the sparse lists' vote in fusion (the question's dense list has 1)
    rewrite_weight: float = 1.0  # each rewrite's vote in fusion (the question itself has 1)


@dataclass(slots=True)
class Retrieval:
    hits: list[Hit] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    ms: float = 0.0
    notes: list[str] = field(default_factory=list)  # options that could not run, and why


async def _expand(query: str, options: RetrievalOptions, rewriter: Rewriter | None, out: Retrieval) -> None:
    if not options.expansions:
        return
    if rewriter is None:
        out.notes.append("expansion: no rewriter configured")
        return
    try:
        rewrites = await rewriter(query, options.expansions)
    except Exception as exc:  # expansion is an optimisation: the question alone still works
        out.notes.append(f"expansion failed: {type(exc).__name__}: {exc}")
        return
    out.queries += [r for r in rewrites[: options.expansions] if r.strip() and r != query]


_tracer = trace.get_tracer("rag")


def _step(name: str) -> AbstractContextManager[Any]:
    """A span for one retrieval step when the caller is traced (OpenTelemetry API); else nothing."""
    if not trace.get_current_span().is_recording():
        return nullcontext()
    return _tracer.start_as_current_span(name)


async def retrieve(
    store: Store,
    embedder: Embedder,
    collection: str,
    query: str,
    options: RetrievalOptions,
    rewriter: Rewriter | None = None,
    reranker: Reranker | None = None,
) -> Retrieval:
    """The chunks for `query`; an empty or missing collection gives none (the caller checks existence)."""
    started = time.perf_counter()
    out = Retrieval(queries=[query])
    if not query.strip() or not await store.check(collection, embedder.id):
        out.ms = (time.perf_counter() - started) * 1000
        return out
    await _expand(query, options, rewriter, out)
    with _step("rag.embed"):
        dense = [await embedder.embed_query(query)]
        if len(out.queries) > 1:
            dense += await embedder.embed_documents(out.queries[1:])
    fused = len(dense) > 1 or options.hybrid
    wide = options.rerank and reranker is not None
    search = Query(
        dense=dense,
        sparse=[sparse.query_vector(q) for q in out.queries] if options.hybrid else [],
        limit=options.candidates if (fused or wide) else options.top_k,
        score_threshold=options.score_threshold,
        filter=options.filter,
        sparse_weight=options.sparse_weight,
        rewrite_weight=options.rewrite_weight,
    )
    with _step("rag.search"):
        hits = await store.search(collection, embedder.id, search)
    if wide and reranker is not None:
        try:
            hits = await reranker(query, hits)
        except Exception as exc:
            out.notes.append(f"rerank failed: {type(exc).__name__}: {exc}")
    out.hits = hits[: options.top_k]
    out.ms = (time.perf_counter() - started) * 1000
    return out
