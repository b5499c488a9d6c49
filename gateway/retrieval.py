"""The RAG middleware step of the chat path, and the retrieval service behind it.

`RagService` is built in the lifespan: one Qdrant `Store` per process (local mode under
`QDRANT_PATH`, or the server at `QDRANT_URL`), opened at start-up when the config names
collections (which are then seeded) and otherwise on the first request that asks for
retrieval; one local embedder, loaded once. Per chat request:

1. `rag_request` (before admission) pops the `rag` object from the body — it never goes
   upstream — validates it (a 400 names the field) and layers it over the model's
   `rag:` defaults;
2. `ground` (after admission, before routing to an upstream) embeds the last user
   turn, retrieves, and puts the context into the messages. A collection that does not
   exist is a 404 naming it; a failing embedder or store is a 502 naming it, unless the
   collection says `on_error: continue`, in which case the request goes on without
   context and the metadata says why.

The returned `Grounding` cites the chunks in the answer and describes the retrieval for
`X-Gateway-Metadata`, `/v1/generation` and the ledger.

rag's store, search, retrieval, ingestion and augmentation modules load numpy (about
13 MB) and, once a store opens, qdrant-client: they are imported by the functions here
that use them, so a gateway whose config names no collection never loads them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from gateway.records import RequestRecord
from gateway.request_body import validation_error
from gateway.retrieval_calls import GatewayEmbedder, GatewayReranker, GatewayRewriter
from gateway.retrieval_config import CollectionConfig, RagRequest
from gateway.settings import Settings
from gateway.telemetry.tracing import child_span
from rag.documents import expand_paths, read_document
from rag.embedders import DEFAULT_LOCAL_MODEL, Embedder, LocalEmbedder, QueryCache
from rag.errors import CollectionNotFound, DocumentError, EmbedderFailed, EmbedderMismatch, RagError

if TYPE_CHECKING:
    from rag.retrieve import RetrievalOptions
    from rag.store import Hit, Store

log = logging.getLogger("gateway.rag")


def open_store(settings: Settings) -> Store:
    from rag.store import Store

    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    return Store(path=settings.qdrant_path, url=settings.qdrant_url, api_key=api_key)


class RagService:
    def __init__(self, settings: Settings, config: GatewayConfig, runtime: Any) -> None:
        self.settings = settings
        self.runtime = runtime
        self.collections = {c.name: c for c in config.rag.collections}
        self.model_defaults = {m.name: m.rag for m in config.models if m.rag is not None}
        self._store: Store | None = None
        self._open_lock = asyncio.Lock()
        self._local: dict[tuple[Any, ...], LocalEmbedder] = {}
        self._query_cache = QueryCache()

    async def start(self) -> None:
        """With collections configured: open the store, load the embedder, ingest seed documents."""
        if not self.collections and not self.model_defaults:
            return
        try:
            await self.store()
        except RagError as exc:  # requests will retry, and fail or go on per `on_error`
            log.error("RAG store not available at start-up: %s", exc)
            return
        for collection in self.collections.values():
            embedder = self.embedder(collection, deny=False)
            if isinstance(embedder, LocalEmbedder):
                await asyncio.to_thread(embedder.load)
            if collection.seed:
                await self.seed(collection, embedder)
                if isinstance(embedder, LocalEmbedder):  # serving needs only the questions' session
                    await asyncio.to_thread(embedder.release_documents)

    async def seed(self, collection: CollectionConfig, embedder: Embedder) -> None:
        def documents() -> list[Any]:
            out: list[Any] = []
            for root in collection.seed:
                for path in expand_paths([root]):
                    # Sources relative to the seed's parent: stable across installs, no server paths shown.
                    source = str(path.relative_to(root.parent))
                    try:
                        out.append(read_document(path, collection.seed_type, collection.seed_author, source))
                    except DocumentError as exc:
                        out.append(exc)
            return out

        from rag.ingest import Ingestor

        try:
            report = await Ingestor(await self.store(), embedder, collection.name).run(
                await asyncio.to_thread(documents)
            )
        except RagError as exc:
            log.error("could not seed RAG collection %s: %s", collection.name, exc)
            return
        log.info(
            "RAG collection %s seeded: %s",
            collection.name,
            {k: v for k, v in report.as_dict().items() if k != "documents"},
        )

    @property
    def may_hold_data(self) -> bool:
        """False when the store is closed and nothing was ever written (no local directory, no server):
        lets maintenance skip opening it (importing and opening Qdrant takes seconds)."""
        return (
            self._store is not None
            or self.settings.qdrant_url is not None
            or self.settings.qdrant_path.exists()
        )

    async def store(self) -> Store:
        async with self._open_lock:
            if self._store is None:
                self._store = await open_store(self.settings).open()
            return self._store

    def collection(self, name: str) -> CollectionConfig:
        """The configured collection, or the defaults a collection made by `gateway rag ingest` has."""
        return self.collections.get(name) or CollectionConfig(name=name)

    def embedder(self, collection: CollectionConfig, deny: bool) -> Embedder:
        if collection.embedder == "gateway":
            assert collection.embedding_model is not None
            return GatewayEmbedder(
                self.runtime, collection.embedding_model, collection.dimensions, self._query_cache, deny
            )
        key = (collection.model_path, collection.tokenizer_path, collection.dimensions)
        if key not in self._local:
            path = collection.model_path
            self._local[key] = LocalEmbedder(
                path,
                collection.tokenizer_path,
                collection.dimensions,
                name=path.stem if path else DEFAULT_LOCAL_MODEL,
            )
        return self._local[key]

    async def aclose(self) -> None:
        for embedder in self._local.values():
            embedder.close()
        if self._store is not None:
            await self._store.aclose()
            self._store = None


@dataclass(slots=True)
class Grounding:
    """What retrieval did for one request."""

    collection: str
    hits: list[Hit] = field(default_factory=list)
    ms: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def chunks(self) -> list[dict[str, Any]]:
        return [
            {"id": h.id, "score": round(h.score, 4), "source": h.payload.get("source")} for h in self.hits
        ]

    def metadata(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "collection": self.collection,
            "retrieval_ms": round(self.ms, 2),
            "chunks": self.chunks(),
        }
        if self.error:
            data["error"] = self.error
            data["continued_without_context"] = True
        if self.notes:
            data["notes"] = self.notes
        return data

    def _citations(self, target: dict[str, Any]) -> None:
        from rag.augment import citation_urls

        existing = target.get("citations")
        urls = list(existing) if isinstance(existing, list) else []
        target["citations"] = urls + [u for u in citation_urls(self.hits) if u not in urls]

    def cite_answer(self, answer: dict[str, Any]) -> None:
        """`message.annotations` on every choice and a top-level `citations` list."""
        if not self.hits:
            return
        from rag.augment import url_annotations

        for choice in answer.get("choices") or []:
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict):
                text = message.get("content")
                message.setdefault("annotations", []).extend(
                    url_annotations(self.hits, text if isinstance(text, str) else "")
                )
        self._citations(answer)

    def cite_chunk(self, chunk: dict[str, Any], answer: str) -> None:
        """The same on a stream's final chunk (the one with `finish_reason`), as a delta."""
        from rag.augment import url_annotations

        choices = chunk.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            delta = choices[0].setdefault("delta", {})
            if isinstance(delta, dict):
                delta.setdefault("annotations", []).extend(url_annotations(self.hits, answer))
        self._citations(chunk)


def rag_request(runtime: Any, body: dict[str, Any], model: str) -> RagRequest | None:
    """Pop and validate the request's `rag`, over the model's defaults; None when retrieval is off."""
    service: RagService = runtime.rag
    raw = body.pop("rag", None)
    defaults = service.model_defaults.get(model)
    if raw is None and defaults is None:
        return None
    try:
        asked = RagRequest.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        raise validation_error(exc, prefix=("rag",)) from None
    merged = (defaults or RagRequest()).model_copy(update=asked.model_dump(exclude_none=True))
    if merged.collection is None:
        raise GatewayError(
            400, "invalid request: rag.collection: a collection is required", param="rag.collection"
        )
    return merged


def _options(collection: CollectionConfig, asked: RagRequest) -> RetrievalOptions:
    from rag.retrieve import RetrievalOptions

    return RetrievalOptions(
        top_k=asked.top_k or collection.top_k,
        score_threshold=asked.score_threshold
        if asked.score_threshold is not None
        else collection.score_threshold,
        filter=dict(asked.filter) if asked.filter else None,
        hybrid=collection.hybrid,
        sparse_weight=collection.sparse_weight,
        expansions=collection.expand.n if collection.expand else 0,
        rerank=collection.rerank is not None,
        candidates=max(
            collection.rerank.candidates if collection.rerank else 20, asked.top_k or collection.top_k
        ),
    )


async def _retrieve(
    service: RagService, collection: CollectionConfig, asked: RagRequest, query: str, deny: bool
) -> Grounding:
    from rag.retrieve import retrieve

    runtime = service.runtime
    store = await service.store()
    embedder = service.embedder(collection, deny)
    if collection.name not in service.collections and await store.embedder_of(collection.name) is None:
        raise CollectionNotFound(collection.name)
    rewriter = GatewayRewriter(runtime, collection.expand.model, deny) if collection.expand else None
    reranker = GatewayReranker(runtime, collection.rerank.model, deny) if collection.rerank else None
    found = await retrieve(
        store, embedder, collection.name, query, _options(collection, asked), rewriter, reranker
    )
    return Grounding(collection.name, found.hits, found.ms, notes=found.notes)


async def ground(
    runtime: Any, asked: RagRequest, body: dict[str, Any], record: RequestRecord, deny: bool
) -> Grounding:
    """Retrieve for the last user turn and put the context into `body["messages"]`; book a refusal."""
    from rag.augment import augment, last_user_text

    service: RagService = runtime.rag
    assert asked.collection is not None
    collection = service.collection(asked.collection)
    try:
        with child_span("gateway.rag", **{"gateway.rag.collection": collection.name}) as span:
            grounding = await _retrieve(
                service, collection, asked, last_user_text(body.get("messages", [])), deny
            )
            if span is not None:
                span.set_attribute("gateway.rag.chunks", len(grounding.hits))
    except CollectionNotFound as exc:
        raise _book(
            runtime,
            record,
            GatewayError(404, str(exc), code="rag_collection_not_found", param="rag.collection"),
        ) from None
    except EmbedderMismatch as exc:
        raise _book(
            runtime, record, GatewayError(409, str(exc), code="rag_embedder_mismatch", param="rag.collection")
        ) from None
    except RagError as exc:
        code = "rag_embedder_failed" if isinstance(exc, EmbedderFailed) else "rag_store_unavailable"
        if collection.on_error != "continue":
            raise _book(
                runtime, record, GatewayError(502, str(exc), code=code, param="rag.collection")
            ) from None
        log.warning("retrieval from %s failed, going on without context: %s", collection.name, exc)
        grounding = Grounding(collection.name, error=str(exc))
    body["messages"] = augment(body.get("messages", []), grounding.hits, collection.template, collection.role)
    if record.prompt is not None:  # prompt monitoring keeps what the upstream is sent, too
        record.prompt["augmented"] = body["messages"]
    record.retrieval_ms = round(grounding.ms, 2)
    record.rag_chunks = grounding.chunks()
    return grounding


def _book(runtime: Any, record: RequestRecord, error: GatewayError) -> GatewayError:
    record.status, record.error = error.status, error.code
    runtime.finish(record)
    return error
