"""The semantic cache: the last user turn, embedded, looked up among earlier ones.

Reuses retrieval's parts (`gateway.retrieval.RagService`): its local embedder and its one
Qdrant store (local mode, or the server at `QDRANT_URL`). Each namespace has a
collection of its own, so one tenant's entries are never searched for another's. A
point holds the embedded question and the answer entry; a hit needs

- the same *context*: a hash of everything but the last user turn (model, earlier
  messages, parameters) — a hard filter, never a similarity;
- similarity ≥ the threshold (cosine on normalised vectors);
- an entry that has not expired;
- questions that do not name different things (`gateway.cache.guard`).

Expired points are deleted in passing, every `SWEEP_EVERY` writes to a collection.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from gateway.cache.exact import CacheUnavailable
from gateway.cache.guard import compatible
from gateway.cache.keys import short
from rag.errors import RagError

SWEEP_EVERY = 200


@dataclass(slots=True)
class SemanticHit:
    entry: bytes
    score: float


class SemanticIndex:
    def __init__(self, rag: Any, prefix: str) -> None:
        self._rag = rag  # gateway.retrieval.RagService
        self._prefix = f"{prefix}-cache-"
        self._ready: set[str] = set()
        self._writes: dict[str, int] = {}
        self._embedder: Any = None

    def collection(self, namespace: str) -> str:
        return self._prefix + short(namespace)

    def embedder(self) -> Any:
        if self._embedder is None:
            from gateway.retrieval_config import CollectionConfig

            self._embedder = self._rag.embedder(CollectionConfig(name="cache"), deny=False)
        return self._embedder

    async def _store(self, collection: str | None = None) -> Any:
        store = await self._rag.store()
        if collection is not None and collection not in self._ready:
            embedder = self.embedder()
            await store.ensure(collection, embedder.id, embedder.dim)
            self._ready.add(collection)
        return store

    async def lookup(self, namespace: str, context: str, text: str, threshold: float) -> SemanticHit | None:
        collection = self.collection(namespace)
        try:
            store = await self._rag.store()
            embedder = self.embedder()
            if collection not in self._ready and not await store.check(collection, embedder.id):
                return None  # nothing was ever stored for this namespace
            self._ready.add(collection)
            vector = await embedder.embed_query(text)
            from rag.store import Query  # numpy and qdrant-client: only once the semantic cache is used

            query = Query(dense=[vector], limit=3, score_threshold=threshold, filter={"ctx": context})
            hits = await store.search(collection, embedder.id, query)
        except RagError as exc:
            raise CacheUnavailable(f"semantic: {exc}") from exc
        now = time.time()
        for hit in hits:
            if float(hit.payload.get("exp", 0)) > now and compatible(str(hit.payload.get("text", "")), text):
                return SemanticHit(str(hit.payload["entry"]).encode(), hit.score)
        return None

    async def put(
        self, namespace: str, model: str, key: str, context: str, text: str, entry: bytes, ttl_s: int
    ) -> None:
        collection = self.collection(namespace)
        try:
            store = await self._store(collection)  # imports qdrant_client off the event loop first
            from qdrant_client import models

            embedder = self.embedder()
            vector = await embedder.embed_query(text)
            payload = {
                "ctx": context,
                "model": model,
                "exp": time.time() + ttl_s,
                "text": text,
                "entry": entry.decode(),
            }
            point = models.PointStruct(
                id=str(uuid.UUID(hex=key[:32])), vector={_vector_name(embedder.id): vector}, payload=payload
            )
            await store.upsert(collection, [point])
            self._writes[collection] = self._writes.get(collection, 0) + 1
            if self._writes[collection] % SWEEP_EVERY == 0:
                expired = models.Filter(
                    must=[models.FieldCondition(key="exp", range=models.Range(lt=time.time()))]
                )
                await store.delete_where(collection, expired)
        except RagError as exc:
            raise CacheUnavailable(f"semantic: {exc}") from exc

    async def purge(self, namespace: str | None = None, model: str | None = None) -> None:
        """Forget a namespace's entries, a model's (in every namespace), or everything."""
        if not self._rag.may_hold_data:
            return
        try:
            store = await self._rag.store()
            from qdrant_client import models

            names = [self.collection(namespace)] if namespace else await self._collections(store)
            for name in names:
                if model is None:
                    await store.delete(name)
                    self._ready.discard(name)
                else:
                    match = models.FieldCondition(key="model", match=models.MatchValue(value=model))
                    await store.delete_where(name, models.Filter(must=[match]))
        except RagError as exc:
            raise CacheUnavailable(f"semantic: {exc}") from exc

    async def _collections(self, store: Any) -> list[str]:
        return [n for n in await store.names() if n.startswith(self._prefix)]

    async def stats(self) -> dict[str, Any]:
        if not self._rag.may_hold_data:
            return {"collections": 0}
        try:
            store = await self._rag.store()
            names = await self._collections(store)
        except RagError as exc:
            raise CacheUnavailable(f"semantic: {exc}") from exc
        return {"collections": len(names)}


def _vector_name(embedder_id: str) -> str:
    from rag.embedders import vector_name

    return vector_name(embedder_id)
