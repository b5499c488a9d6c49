"""Fusing several ranked lists into one, and what a score threshold means for the result.

Hybrid retrieval and query expansion search more than once: a dense list per phrasing
of the question and a sparse (BM25-style) list per phrasing. The lists are merged by
weighted reciprocal rank fusion: a chunk scores `sum(weight / (K + rank))` over the
lists it appears in. Ranks, not raw scores, because cosine similarities and BM25
scores live on different scales; weights, because equal votes let the sparse list —
which ranks near-duplicates sharing the question's few content words alike — outvote
the dense one on paraphrased questions.

A fused score is a sum of rank votes, so a threshold on it would mean nothing a user
could choose. `score_threshold` therefore keeps its one meaning in every mode: the
minimum cosine similarity between the chunk and the question. In a fused search each
candidate's similarity is the best over the question's phrasings, computed from its
stored dense vector, and candidates below the threshold are dropped before fusion
ranks them — a chunk that only shares words with the question, but not its meaning,
does not get in through the sparse side. `Hit.similarity` carries that figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

K = 2  # Qdrant's default RRF constant: the first ranks weigh clearly more than the tenth


@dataclass(slots=True)
class Ranked:
    """One search's result: (id, payload, dense vector or None) in rank order, and its vote's weight."""

    items: list[tuple[str, dict, list[float] | None]]
    weight: float = 1.0


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms if norms else 0.0


def best_similarity(vector: Sequence[float] | None, queries: Sequence[Sequence[float]]) -> float | None:
    if vector is None:
        return None
    return max(cosine(q, vector) for q in queries)


def fuse(
    lists: Sequence[Ranked],
    queries: Sequence[Sequence[float]],
    limit: int,
    score_threshold: float | None = None,
) -> list[tuple[str, float, dict, float | None]]:
    """(id, fused score, payload, similarity) of the best `limit` chunks over `lists`."""
    scores: dict[str, float] = {}
    payloads: dict[str, dict] = {}
    similarity: dict[str, float | None] = {}
    for ranked in lists:
        for rank, (point_id, payload, vector) in enumerate(ranked.items, 1):
            if point_id not in similarity:
                similarity[point_id] = best_similarity(vector, queries)
                payloads[point_id] = payload
            scores[point_id] = scores.get(point_id, 0.0) + ranked.weight / (K + rank)
    kept = [
        point_id
        for point_id in scores
        if score_threshold is None or (similarity[point_id] or 0.0) >= score_threshold
    ]
    kept.sort(key=lambda i: scores[i], reverse=True)
    return [(i, scores[i], payloads[i], similarity[i]) for i in kept[:limit]]
