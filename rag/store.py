"""The Qdrant store: collections of chunks with a dense and a sparse vector each.

One `Store` per process, opened in the app's lifespan (or by the CLI) and closed with
it: Qdrant's local mode holds a file lock on its directory. Local mode under a path by
default; a Qdrant server when a URL is given — the same calls either way. The client
is the synchronous one, driven from a single worker thread: local mode searches in
Python and would otherwise stall the event loop, and one thread also serialises its
access to the on-disk store.

A collection records the embedder that made it twice: its dense vector is named after
the embedder (`vector_name`) and its metadata holds the embedder id and dimension.
Asking it with another embedder raises `EmbedderMismatch` instead of comparing
vectors of different models.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rag.embedders import vector_name
from rag.errors import CollectionNotFound, EmbedderMismatch, RagError, StoreUnavailable
from rag.fusion import Ranked, fuse

log = logging.getLogger("rag")
T = TypeVar("T")
SPARSE = "bm25"
INDEXED_FIELDS = ("source", "type", "author", "doc_hash")


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
    sparse_weight: float = (
        1.0  # the sparse lists' vote in the fusion, against 1 for the question's dense list
    )
    rewrite_weight: float = 1.0  # a rewrite's lists' vote, against 1 for the question's own


def _dense(vector: Any, name: str) -> list[float] | None:
    if isinstance(vector, dict):
        vector = vector.get(name)
    return vector if isinstance(vector, list) else None


def _filter(conditions: dict[str, Any] | None) -> Any:
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


class Store:
    def __init__(self, path: Path | None = None, url: str | None = None, api_key: str | None = None) -> None:
        self._path = path
        self._url = url
        self._api_key = api_key
        self._client: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-store")
        self._embedder_of: dict[str, str] = {}  # collection -> embedder id, once seen

    @property
    def where(self) -> str:
        return self._url or str(self._path)

    @property
    def local(self) -> bool:
        return self._url is None

    def _open_blocking(self) -> None:
        from qdrant_client import QdrantClient

        if self._url:
            self._client = QdrantClient(url=self._url, api_key=self._api_key, timeout=10)
            self._client.get_collections()  # fail now, with a clear message, if it is not there
        else:
            assert self._path is not None
            self._path.mkdir(parents=True, exist_ok=True)
            self._client = QdrantClient(path=str(self._path))

    async def open(self) -> Store:
        try:
            await self._call(self._open_blocking)
        except StoreUnavailable as exc:
            if self.local and "already accessed" in str(exc):
                raise StoreUnavailable(
                    f"the local store {self.where} is in use by another process (a running gateway?); "
                    "stop it, use its admin API, or run a Qdrant server (QDRANT_URL)"
                ) from None
            raise
        return self

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except RagError:
            raise
        except (ValueError, KeyError) as exc:
            if "not found" in str(exc).lower() and args and isinstance(args[0], str):
                raise CollectionNotFound(args[0]) from None
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        if self._client is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._client.close)
            self._client = None
        self._executor.shutdown(wait=False)

    # ----------------------------------------------------------------- collections

    def _embedder_blocking(self, collection: str) -> str | None:
        if collection in self._embedder_of:
            return self._embedder_of[collection]
        if not self._client.collection_exists(collection):
            return None
        info = self._client.get_collection(collection)
        metadata = getattr(info.config, "metadata", None) or {}
        made_by = metadata.get("embedder")
        if not made_by:
            vectors = info.config.params.vectors or {}
            names = [n for n in vectors if n.startswith("dense-")] if isinstance(vectors, dict) else []
            made_by = names[0][len("dense-") :] if names else "unknown"
        self._embedder_of[collection] = str(made_by)
        return str(made_by)

    async def embedder_of(self, collection: str) -> str | None:
        """The id of the embedder that made `collection`, or None if it does not exist."""
        return await self._call(self._embedder_blocking, collection)

    async def check(self, collection: str, embedder_id: str) -> bool:
        """True if the collection exists and was made by `embedder_id`; False if it does not exist."""
        made_by = await self.embedder_of(collection)
        if made_by is None:
            return False
        if made_by != embedder_id:
            raise EmbedderMismatch(collection, made_by, embedder_id)
        return True

    def _create_blocking(self, collection: str, embedder_id: str, dim: int) -> None:
        from qdrant_client import models

        self._client.create_collection(
            collection,
            vectors_config={
                vector_name(embedder_id): models.VectorParams(size=dim, distance=models.Distance.COSINE)
            },
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            metadata={"embedder": embedder_id, "dim": dim},
        )
        if not self.local:  # local mode has no payload indexes (it scans)
            for name in INDEXED_FIELDS:
                self._client.create_payload_index(collection, name, models.PayloadSchemaType.KEYWORD)
        self._embedder_of[collection] = embedder_id

    async def ensure(self, collection: str, embedder_id: str, dim: int) -> None:
        """Create the collection for this embedder on first use; refuse one made by another."""
        if not await self.check(collection, embedder_id):
            await self._call(self._create_blocking, collection, embedder_id, dim)
            log.info("created RAG collection %s (%s, %d dims)", collection, embedder_id, dim)

    def _list_blocking(self) -> list[dict[str, Any]]:
        out = []
        for c in self._client.get_collections().collections:
            count = self._client.count(c.name, exact=True).count
            out.append({"name": c.name, "chunks": count, "embedder": self._embedder_blocking(c.name)})
        return out

    async def collections(self) -> list[dict[str, Any]]:
        return await self._call(self._list_blocking)

    def _delete_blocking(self, collection: str) -> bool:
        self._embedder_of.pop(collection, None)
        return (
            bool(self._client.delete_collection(collection))
            if self._client.collection_exists(collection)
            else False
        )

    async def delete(self, collection: str) -> bool:
        return await self._call(self._delete_blocking, collection)

    def _stats_blocking(self, collection: str) -> dict[str, Any]:
        made_by = self._embedder_blocking(collection)
        if made_by is None:
            raise CollectionNotFound(collection)
        sources: dict[str, int] = {}
        offset = None
        while True:
            points, offset = self._client.scroll(
                collection, limit=1000, offset=offset, with_payload=["source"], with_vectors=False
            )
            for p in points:
                key = str((p.payload or {}).get("source"))
                sources[key] = sources.get(key, 0) + 1
            if offset is None:
                break
        return {
            "name": collection,
            "embedder": made_by,
            "chunks": sum(sources.values()),
            "documents": len(sources),
            "where": "local" if self.local else "server",
        }

    async def stats(self, collection: str) -> dict[str, Any]:
        return await self._call(self._stats_blocking, collection)

    # ----------------------------------------------------------------- documents

    def _hashes_blocking(self, collection: str, sources: list[str]) -> dict[str, str]:
        hashes: dict[str, str] = {}
        offset = None
        while True:
            points, offset = self._client.scroll(
                collection,
                scroll_filter=_filter({"source": sources}),
                limit=1000,
                offset=offset,
                with_payload=["source", "doc_hash"],
            )
            for p in points:
                hashes[str(p.payload.get("source"))] = str(p.payload.get("doc_hash"))
            if offset is None:
                return hashes

    async def document_hashes(self, collection: str, sources: list[str]) -> dict[str, str]:
        """The stored content hash of each of `sources` that the collection holds."""
        return await self._call(self._hashes_blocking, collection, sources) if sources else {}

    def _replace_blocking(
        self, collection: str, versions: dict[str, str], points: Sequence[Any], replacing: bool
    ) -> None:
        from qdrant_client import models

        sources = models.FieldCondition(key="source", match=models.MatchAny(any=list(versions)))
        new = models.FieldCondition(key="doc_hash", match=models.MatchAny(any=list(versions.values())))
        try:
            self._client.upsert(collection, points=list(points), wait=True)
        except Exception:
            # Leave no half-written version: drop what this attempt wrote; the old one stays.
            written = models.Filter(must=[sources, new])
            self._client.delete(collection, points_selector=models.FilterSelector(filter=written), wait=True)
            raise
        if replacing:  # new documents have no old chunks: skip the scan
            old = models.Filter(must=[sources], must_not=[new])
            self._client.delete(collection, points_selector=models.FilterSelector(filter=old), wait=True)

    async def replace_documents(
        self, collection: str, versions: dict[str, str], points: Sequence[Any], replacing: bool = True
    ) -> None:
        """Write new chunks of documents (source -> new content hash), then drop their old ones.

        Readers never see a document missing; a failed write removes what it wrote.
        `replacing=False` says none of them was stored before.
        """
        await self._call(self._replace_blocking, collection, versions, points, replacing)

    # ----------------------------------------------------------------- search

    def _search_blocking(self, collection: str, embedder_id: str, query: Query) -> list[Hit]:
        from qdrant_client import models

        dense_name = vector_name(embedder_id)
        flt = _filter(query.filter)
        sparse = [(i, w) for i, w in query.sparse if i]
        if len(query.dense) == 1 and not sparse:
            result = self._client.query_points(
                collection,
                query=query.dense[0],
                using=dense_name,
                limit=query.limit,
                score_threshold=query.score_threshold,
                query_filter=flt,
                with_payload=True,
            )
            return [
                Hit(str(p.id), float(p.score), dict(p.payload or {}), float(p.score)) for p in result.points
            ]
        # Several lists: one batched call, fused here (weighted RRF; see rag.fusion). Each
        # candidate comes with its dense vector, so the threshold can judge its similarity.
        requests = [
            models.QueryRequest(
                query=v,
                using=dense_name,
                limit=query.limit,
                filter=flt,
                with_payload=True,
                with_vector=[dense_name],
            )
            for v in query.dense
        ] + [
            models.QueryRequest(
                query=models.SparseVector(indices=i, values=w),
                using=SPARSE,
                limit=query.limit,
                filter=flt,
                with_payload=True,
                with_vector=[dense_name],
            )
            for i, w in sparse
        ]
        responses = self._client.query_batch_points(collection, requests)
        weights = [1.0] + [query.rewrite_weight] * (len(query.dense) - 1)
        weights += [query.sparse_weight] + [query.sparse_weight * query.rewrite_weight] * (len(sparse) - 1)
        lists = [
            Ranked(
                [(str(p.id), dict(p.payload or {}), _dense(p.vector, dense_name)) for p in r.points], weight
            )
            for r, weight in zip(responses, weights, strict=True)
        ]
        fused = fuse(lists, query.dense, query.limit, query.score_threshold)
        return [Hit(point_id, score, payload, similarity) for point_id, score, payload, similarity in fused]

    async def search(self, collection: str, embedder_id: str, query: Query) -> list[Hit]:
        return await self._call(self._search_blocking, collection, embedder_id, query)

    # ----------------------------------------------------------------- raw points

    def _upsert_blocking(self, collection: str, points: Sequence[Any]) -> None:
        self._client.upsert(collection, points=list(points), wait=True)

    async def upsert(self, collection: str, points: Sequence[Any]) -> None:
        """Write points as they are (callers that keep their own records, such as a response cache)."""
        await self._call(self._upsert_blocking, collection, points)

    def _delete_points_blocking(self, collection: str, selector: Any) -> None:
        from qdrant_client import models

        if not self._client.collection_exists(collection):
            return
        self._client.delete(collection, points_selector=models.FilterSelector(filter=selector), wait=True)

    async def delete_where(self, collection: str, selector: Any) -> None:
        """Delete the points a Qdrant `Filter` selects; nothing if the collection does not exist."""
        await self._call(self._delete_points_blocking, collection, selector)

    def _names_blocking(self) -> list[str]:
        return [c.name for c in self._client.get_collections().collections]

    async def names(self) -> list[str]:
        """Every collection's name (no counts: cheap)."""
        return await self._call(self._names_blocking)
