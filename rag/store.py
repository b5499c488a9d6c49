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
from pathlib import Path
from typing import Any, TypeVar

from rag import local_mode
from rag.embedders import vector_name
from rag.errors import CollectionNotFound, EmbedderMismatch, RagError, StoreUnavailable
from rag.search import SPARSE, Hit, Query, qdrant_filter, search_points

log = logging.getLogger("rag")
__all__ = ["SPARSE", "Hit", "Query", "Store"]  # Hit, Query and SPARSE live in rag.search
T = TypeVar("T")
INDEXED_FIELDS = ("source", "type", "author", "doc_hash")


class Store:
    def __init__(self, path: Path | None = None, url: str | None = None, api_key: str | None = None) -> None:
        self._path = path
        self._url = url
        self._api_key = api_key
        self._client: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-store")
        self._embedder_of: dict[str, str] = {}  # collection -> embedder id, once seen
        self._writes: dict[str, int] = {}  # collection -> writes made (local mode's sparse index follows it)
        self._sparse_indexes = local_mode.SparseIndexes()

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
            for c in self._client.get_collections().collections:
                local_mode.tune_storage(self._client, c.name)

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
        known = self._embedder_of.get(collection)  # the request path: no thread hop once seen
        return known if known is not None else await self._call(self._embedder_blocking, collection)

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
        local_mode.tune_storage(self._client, collection)
        self._wrote(collection)
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

    def _wrote(self, collection: str) -> None:
        self._writes[collection] = self._writes.get(collection, 0) + 1

    def _delete_blocking(self, collection: str) -> bool:
        self._wrote(collection)
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
                scroll_filter=qdrant_filter({"source": sources}),
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

        self._wrote(collection)
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
        local = (self._sparse_indexes, self._writes.get(collection, 0)) if self.local else None
        return search_points(self._client, collection, vector_name(embedder_id), query, local)

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
