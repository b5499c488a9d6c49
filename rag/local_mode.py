"""Two shortcuts through Qdrant's local mode, where its pure-Python paths are slow.

Local mode (`QdrantClient(path=...)`) keeps a collection in numpy arrays and mirrors
every point into SQLite. Profiled on this project's workloads, two of its costs
dominate, and both are fixed here by reaching into the local collection:

- Writes: it commits one SQLite transaction per point, and each commit waits for the
  disk (an fsync): ingest crawled at tens of points per second on a busy disk.
  `tune_storage` switches the file to write-ahead logging with `synchronous=NORMAL`,
  so commits no longer wait for the disk. The file stays consistent after a crash; a
  power cut may lose the last writes, which re-ingesting (idempotent) restores.
- Dense search: every query re-normalises every stored vector in place (cosine), sorts
  all scores, and deep-copies each returned payload: about 3 ms of work per 1,000
  chunks. `dense_search` multiplies the stored (already unit-length) vectors by the
  query once (about 1 ms per 10,000 chunks), picks the top k with a partial sort, and copies payloads shallowly.

Both read private attributes of `qdrant_client.local`; when those are not there (a
future qdrant-client, or a Qdrant server) they do nothing and return None, and the
caller takes the library's ordinary path. A test checks the shortcut ranks exactly as
the ordinary path does. A filtered search always takes the ordinary path.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

log = logging.getLogger("rag")


def _collection(client: Any, name: str) -> Any:
    local = getattr(client, "_client", None)
    collections = getattr(local, "collections", None)
    return collections.get(name) if isinstance(collections, dict) else None


def tune_storage(client: Any, name: str) -> None:
    """WAL and `synchronous=NORMAL` on a local collection's SQLite file; nothing for a server."""
    storage = getattr(_collection(client, name), "storage", None)
    connection = getattr(storage, "storage", None)
    if connection is None or not hasattr(connection, "execute"):
        return
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
    except Exception as exc:  # the ordinary (slower) commits still work
        log.debug("could not tune the local store of %s: %s", name, exc)


Found = list[tuple[Any, float, dict[str, Any], list[float] | None]]


def _live(collection: Any, vector_name: str) -> tuple[int, Any]:
    count = len(collection.payload)
    # Kept as 0/1 integers by the library: made boolean, or numpy would read them as indices.
    deleted = collection.deleted[:count].astype(bool) | collection.deleted_per_vector[vector_name][
        :count
    ].astype(bool)
    return count, deleted


def _top(collection: Any, scores: Any, limit: int, threshold: float | None, dense: str | None) -> Found:
    """The best `limit` of `scores` (-inf: not a candidate), with payloads and, if named, dense vectors."""
    k = min(limit, len(scores))
    if k == 0:
        return []
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    out: Found = []
    for i in top:
        score = float(scores[i])
        if score == -np.inf or (threshold is not None and score < threshold):
            break
        vector = collection.vectors[dense][i].tolist() if dense else None
        out.append((collection.ids_inv[i], score, dict(collection.payload[i]), vector))
    return out


def dense_search(
    client: Any,
    name: str,
    vector_name: str,
    query: Sequence[float],
    limit: int,
    threshold: float | None = None,
    with_vector: bool = False,
) -> Found | None:
    """(id, cosine similarity, payload, vector if asked) of the best `limit` points; None: use the ordinary path."""
    collection = _collection(client, name)
    try:
        count, deleted = _live(collection, vector_name)
        vectors = collection.vectors[vector_name][:count]
    except (AttributeError, KeyError, TypeError):
        return None
    q = np.asarray(query, dtype=vectors.dtype)
    norm = float(np.linalg.norm(q))
    # einsum, not `@`: a matrix-vector product through OpenBLAS measured 3-4x slower here
    # (its threads contend with the embedder's); this is one pass, single-threaded.
    scores = np.einsum("ij,j->i", vectors, q / norm if norm else q)
    scores[deleted] = -np.inf
    return _top(collection, scores, limit, threshold, vector_name if with_vector else None)


class SparseIndexes:
    """Inverted indexes of local collections' sparse vectors, rebuilt when the collection was written.

    The caller names a write generation (bumped on every write it makes); an index of an
    older generation, or of a collection whose size changed, is rebuilt on next use.
    """

    def __init__(self) -> None:
        self._built: dict[tuple[str, str], tuple[Any, dict[int, tuple[Any, Any]]]] = {}

    def _index(self, collection: Any, key: tuple[str, str], stamp: Any) -> dict[int, tuple[Any, Any]]:
        cached = self._built.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        vectors = collection.sparse_vectors[key[1]][: len(collection.payload)]
        lengths = np.fromiter((len(v.indices) for v in vectors), dtype=np.int64, count=len(vectors))
        rows = np.repeat(np.arange(len(vectors)), lengths)
        terms = np.fromiter((t for v in vectors for t in v.indices), dtype=np.int64, count=int(lengths.sum()))
        values = np.fromiter((x for v in vectors for x in v.values), dtype=np.float32, count=len(terms))
        order = np.argsort(terms, kind="stable")
        terms, rows, values = terms[order], rows[order], values[order]
        unique, starts = np.unique(terms, return_index=True)
        ends = np.append(starts[1:], len(terms))
        index = {int(t): (rows[a:b], values[a:b]) for t, a, b in zip(unique, starts, ends, strict=True)}
        self._built[key] = (stamp, index)
        return index

    def search(
        self,
        client: Any,
        name: str,
        sparse_name: str,
        query: tuple[Sequence[int], Sequence[float]],
        limit: int,
        generation: int,
        dense_name: str | None = None,
    ) -> Found | None:
        """As Qdrant scores a sparse vector with the IDF modifier; None: use the ordinary path."""
        collection = _collection(client, name)
        try:
            count, deleted = _live(collection, sparse_name)
            frequencies = collection.sparse_vectors_idf.get(sparse_name, {})
            index = self._index(collection, (name, sparse_name), (generation, count))
        except (AttributeError, KeyError, TypeError):
            return None
        documents = int(count - np.count_nonzero(deleted))
        scores = np.zeros(count, dtype=np.float32)
        touched = np.zeros(count, dtype=bool)
        for term, weight in zip(*query, strict=True):
            rows, values = index.get(int(term), (None, None))
            if rows is None:
                continue
            df = frequencies.get(int(term), 0)
            idf = math.log((documents - df + 0.5) / (df + 0.5) + 1)
            scores[rows] += values * (weight * idf)  # a term appears once per point: rows are distinct
            touched[rows] = True
        scores[~touched | deleted] = -np.inf
        return _top(collection, scores, limit, None, dense_name)
