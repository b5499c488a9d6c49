"""One search of a collection: what is asked (`Query`), what comes back (`Hit`), and how.

A single dense vector is one nearest-neighbour search. Several lists — a dense one per
phrasing of the question, a sparse one per phrasing with hybrid retrieval — are
searched in one batched call and fused here (`rag.fusion`); each candidate comes back
with its dense vector, so the score threshold can judge its similarity to the question.

In Qdrant's local mode, an unfiltered search takes `rag.local_mode`'s shortcuts (a
single matrix product for dense vectors, an inverted index for sparse ones) instead
of the library's pure-Python scans; a filtered one, or a Qdrant server, goes through
`query_points` / `query_batch_points`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rag import local_mode
from rag.fusion import Ranked, fuse

SPARSE = "bm25"


@dataclass(slots=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)
    similarity: float | None = None  # cosine similarity to the question (best over its phrasings)

    @property
    def text(self) -> str:
        return str(self.payload.get("text", ""))


@dataclass(slots=True)
class Query:
    """One search: dense vectors (one per phrasing) and optional sparse ones, fused when several.

    `score_threshold` is a minimum cosine similarity to the question in every mode (see
    `rag.fusion` for what that means once lists are fused).
    """

    dense: list[list[float]]
    sparse: list[tuple[list[int], list[float]]] = field(default_factory=list)
    limit: int = 4
    score_threshold: float | None = None
    filter: dict[str, Any] | None = None
    sparse_weight: float = 1.0  # the sparse lists' vote in the fusion, against 1 for the dense list
    rewrite_weight: float = 1.0  # a rewrite's lists' vote, against 1 for the question's own


# (the sparse indexes of local mode, the collection's write generation); None for a server
LocalMode = tuple[local_mode.SparseIndexes, int] | None


def qdrant_filter(conditions: dict[str, Any] | None) -> Any:
    from qdrant_client import models

    if not conditions:
        return None
    must: list[Any] = []
    for key, value in conditions.items():
        if isinstance(value, list):
            must.append(models.FieldCondition(key=key, match=models.MatchAny(any=value)))
        else:
            must.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
    return models.Filter(must=must)


def _dense(vector: Any, name: str) -> list[float] | None:
    if isinstance(vector, dict):
        vector = vector.get(name)
    return vector if isinstance(vector, list) else None


def search_points(client: Any, collection: str, dense_name: str, query: Query, local: LocalMode) -> list[Hit]:
    """Run `query` on `collection` (blocking: the store's worker thread calls it)."""
    flt = qdrant_filter(query.filter)
    sparse = [(i, w) for i, w in query.sparse if i]
    shortcut = local if flt is None else None
    if len(query.dense) == 1 and not sparse:
        found = None
        if shortcut is not None:
            found = local_mode.dense_search(
                client, collection, dense_name, query.dense[0], query.limit, query.score_threshold
            )
        if found is None:
            found = _dense_ordinary(client, collection, dense_name, query, flt)
        return [Hit(str(i), score, payload, score) for i, score, payload, _ in found]
    lists = (
        None if shortcut is None else _lists_local(client, collection, dense_name, query, sparse, shortcut)
    )
    if lists is None:
        lists = _lists_ordinary(client, collection, dense_name, query, sparse, flt)
    weights = [1.0] + [query.rewrite_weight] * (len(query.dense) - 1)
    weights += [query.sparse_weight] + [query.sparse_weight * query.rewrite_weight] * (len(sparse) - 1)
    ranked = [
        Ranked([(str(i), p, v) for i, _, p, v in items], w) for items, w in zip(lists, weights, strict=True)
    ]
    fused = fuse(ranked, query.dense, query.limit, query.score_threshold)
    return [Hit(point_id, score, payload, similarity) for point_id, score, payload, similarity in fused]


def _dense_ordinary(
    client: Any, collection: str, dense_name: str, query: Query, flt: Any
) -> local_mode.Found:
    result = client.query_points(
        collection,
        query=query.dense[0],
        using=dense_name,
        limit=query.limit,
        score_threshold=query.score_threshold,
        query_filter=flt,
        with_payload=True,
    )
    return [(p.id, float(p.score), dict(p.payload or {}), None) for p in result.points]


def _lists_local(
    client: Any,
    collection: str,
    dense_name: str,
    query: Query,
    sparse: Sequence[tuple[list[int], list[float]]],
    local: tuple[local_mode.SparseIndexes, int],
) -> list[local_mode.Found] | None:
    indexes, generation = local
    lists: list[local_mode.Found] = []
    for vector in query.dense:
        found = local_mode.dense_search(client, collection, dense_name, vector, query.limit, with_vector=True)
        if found is None:
            return None
        lists.append(found)
    for terms in sparse:
        found = indexes.search(client, collection, SPARSE, terms, query.limit, generation, dense_name)
        if found is None:
            return None
        lists.append(found)
    return lists


def _lists_ordinary(
    client: Any,
    collection: str,
    dense_name: str,
    query: Query,
    sparse: Sequence[tuple[list[int], list[float]]],
    flt: Any,
) -> list[local_mode.Found]:
    from qdrant_client import models

    def request(vector: Any, using: str) -> Any:
        return models.QueryRequest(
            query=vector,
            using=using,
            limit=query.limit,
            filter=flt,
            with_payload=True,
            with_vector=[dense_name],
        )

    requests = [request(v, dense_name) for v in query.dense]
    requests += [request(models.SparseVector(indices=i, values=w), SPARSE) for i, w in sparse]
    responses = client.query_batch_points(collection, requests)
    return [
        [(p.id, float(p.score), dict(p.payload or {}), _dense(p.vector, dense_name)) for p in r.points]
        for r in responses
    ]
