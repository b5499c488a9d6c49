"""Errors of the retrieval layer.

```
RagError
├── CollectionNotFound   the named collection does not exist (the client named it)
├── EmbedderMismatch     the collection was made by another embedder: its vectors would be garbage
├── EmbedderFailed       the embedder could not embed (model missing, upstream down)
├── StoreUnavailable     Qdrant could not be reached or refused the call
└── DocumentError        one document could not be read (binary, unreadable): ingest goes on
```

The gateway maps them to HTTP statuses in one place; nothing here knows about HTTP.
"""

from __future__ import annotations


class RagError(Exception):
    """Base of every retrieval error; `str(error)` is safe to show a client."""


class CollectionNotFound(RagError):
    def __init__(self, collection: str) -> None:
        super().__init__(f"the RAG collection {collection!r} does not exist")
        self.collection = collection


class EmbedderMismatch(RagError):
    def __init__(self, collection: str, made_by: str, asked: str) -> None:
        super().__init__(
            f"the RAG collection {collection!r} was made with the embedder {made_by!r}, "
            f"not {asked!r}: its vectors cannot be compared; re-ingest it or use {made_by!r}"
        )
        self.collection = collection


class EmbedderFailed(RagError):
    def __init__(self, embedder: str, reason: str) -> None:
        super().__init__(f"the embedder {embedder!r} failed: {reason}")
        self.embedder = embedder


class StoreUnavailable(RagError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"the vector store (Qdrant) is unavailable: {reason}")


class DocumentError(RagError):
    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason
