"""Ingestion: documents in, chunks with vectors and provenance out, idempotently.

Each document is hashed (text and metadata); one whose stored hash matches is
skipped, one that changed is re-chunked and replaced (new chunks written, then the
old ones dropped), a new one added. Chunk ids are stable (`uuid5` of source,
position and chunk hash), so re-writing an unchanged chunk overwrites it in place.
Work goes in batches: one hash look-up, one embedding call and one write per batch.
A document that cannot be read arrives as a `DocumentError` and is reported; the
rest go on.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from rag import sparse
from rag.chunking import chunk
from rag.documents import Document
from rag.embedders import Embedder, vector_name
from rag.errors import DocumentError, RagError
from rag.store import SPARSE, Store

Status = Literal["added", "updated", "unchanged", "failed"]
_NAMESPACE = uuid.UUID("5b0c7c8e-53a1-4f57-9d0c-3e8d0f6f2a11")


@dataclass(slots=True)
class FileResult:
    source: str
    status: Status
    chunks: int = 0
    error: str | None = None


@dataclass(slots=True)
class IngestReport:
    collection: str
    results: list[FileResult] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def chunks(self) -> int:
        return sum(r.chunks for r in self.results if r.status in ("added", "updated"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "added": self.count("added"),
            "updated": self.count("updated"),
            "unchanged": self.count("unchanged"),
            "failed": self.count("failed"),
            "chunks_written": self.chunks,
            "documents": [
                {"source": r.source, "status": r.status, "chunks": r.chunks, "error": r.error}
                for r in self.results
            ],
        }


def chunk_id(source: str, position: int, chunk_hash: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{source}\x1f{position}\x1f{chunk_hash}"))


def _payloads(doc: Document, doc_hash: str) -> list[dict[str, Any]]:
    payloads = []
    for piece in chunk(doc.text, doc.kind, doc.source):
        payloads.append(
            {
                "text": piece.text,
                "source": doc.source,
                "title": doc.title,
                "section": piece.section,
                "url": doc.url,
                "type": doc.kind,
                "author": doc.author,
                "position": piece.position,
                "chunk_hash": hashlib.sha256(piece.text.encode()).hexdigest()[:16],
                "doc_hash": doc_hash,
            }
        )
    return payloads


def embedding_text(payload: dict[str, Any]) -> str:
    """What gets embedded: the chunk with its document's title, which often names the topic."""
    return f"{payload['title']}\n\n{payload['text']}"


class Ingestor:
    """Ingests into one collection of one store with one embedder."""

    def __init__(self, store: Store, embedder: Embedder, collection: str, batch_chunks: int = 256) -> None:
        self.store = store
        self.embedder = embedder
        self.collection = collection
        self.batch_chunks = batch_chunks

    async def run(
        self,
        documents: Iterable[Document | DocumentError],
        progress: Callable[[FileResult], None] | None = None,
    ) -> IngestReport:
        await self.store.ensure(self.collection, self.embedder.id, self.embedder.dim)
        report = IngestReport(self.collection)
        batch: list[Document] = []

        def note(result: FileResult) -> None:
            report.results.append(result)
            if progress is not None:
                progress(result)

        for item in documents:
            if isinstance(item, DocumentError):
                note(FileResult(item.source, "failed", error=item.reason))
                continue
            batch.append(item)
            if len(batch) >= max(1, self.batch_chunks // 4):
                for result in await self._batch(batch):
                    note(result)
                batch = []
        if batch:
            for result in await self._batch(batch):
                note(result)
        return report

    async def _batch(self, docs: list[Document]) -> list[FileResult]:
        latest = {d.source: d for d in docs}  # the same source twice: the last one wins
        try:
            stored = await self.store.document_hashes(self.collection, list(latest))
        except RagError as exc:
            return [FileResult(d.source, "failed", error=str(exc)) for d in latest.values()]
        results: dict[str, FileResult] = {}
        payloads: list[dict[str, Any]] = []
        versions: dict[str, str] = {}
        changed = [d for d in latest.values() if stored.get(d.source) != d.content_hash]
        chunked = await asyncio.to_thread(lambda: {d.source: _payloads(d, d.content_hash) for d in changed})
        for source, doc in latest.items():
            doc_hash = doc.content_hash
            if source not in chunked:
                results[source] = FileResult(source, "unchanged")
                continue
            pieces = chunked[source]
            if not pieces:
                results[source] = FileResult(source, "failed", error="no text to ingest")
                continue
            versions[source] = doc_hash
            payloads += pieces
            results[source] = FileResult(source, "updated" if source in stored else "added", len(pieces))
        if payloads:
            try:
                await self._write(versions, payloads, replacing=any(s in stored for s in versions))
            except RagError as exc:
                for source in versions:
                    results[source] = FileResult(source, "failed", error=str(exc))
        return list(results.values())

    async def _write(self, versions: dict[str, str], payloads: list[dict[str, Any]], replacing: bool) -> None:
        texts = [embedding_text(p) for p in payloads]
        # Embedded shortest first: a batch is padded to its longest text, so mixing a
        # heading with a long paragraph would pay the paragraph's length for both.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        by_length = [texts[i] for i in order]
        embedded: list[list[float]] = []
        for i in range(0, len(by_length), self.batch_chunks):
            embedded += await self.embedder.embed_documents(by_length[i : i + self.batch_chunks])
        vectors: list[list[float]] = [[] for _ in texts]
        for position, vector in zip(order, embedded, strict=True):
            vectors[position] = vector
        # Sparse vectors and point objects are pure-Python work: keep it off the event loop.
        points = await asyncio.to_thread(_points, vector_name(self.embedder.id), payloads, texts, vectors)
        await self.store.replace_documents(self.collection, versions, points, replacing)


def _points(
    dense: str, payloads: list[dict[str, Any]], texts: list[str], vectors: list[list[float]]
) -> list[Any]:
    from qdrant_client import models

    points = []
    for payload, text, vector in zip(payloads, texts, vectors, strict=True):
        indices, values = sparse.document_vector(text)
        points.append(
            models.PointStruct(
                id=chunk_id(payload["source"], payload["position"], payload["chunk_hash"]),
                vector={dense: vector, SPARSE: models.SparseVector(indices=indices, values=values)},
                payload=payload,
            )
        )
    return points
