"""Ingestion and retrieval on a real Qdrant local store with the real local embedder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rag.chunking import chunk_article, chunk_code
from rag.documents import expand_paths, make_document, read_document
from rag.errors import DocumentError, EmbedderMismatch
from rag.ingest import Ingestor
from rag.retrieve import RetrievalOptions, retrieve
from rag.store import Store

BEES = "# Bees\n\nVisit the hive every seven days from May to July.\n\n## Honey\n\nEleven kilos in year two."
PRESS = "# Press\n\nOur letterpress is a 1962 Heidelberg platen bought from a newspaper in Lund."


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store(path=tmp_path / "qdrant").open()
    yield opened
    await opened.aclose()


def _docs(path: Path, **files: str) -> list[Any]:
    out: list[Any] = []
    for name, text in files.items():
        (path / name).write_text(text)
    for file in expand_paths([path]):
        try:
            out.append(read_document(file, author="mara"))
        except DocumentError as exc:
            out.append(exc)
    return out


async def test_ingest_is_idempotent_and_replaces_changed_documents(
    store: Store, local_embedder: Any, tmp_path: Path
) -> None:
    docs_dir = tmp_path / "docs"
    docs_dir.mkdir()
    ingestor = Ingestor(store, local_embedder, "c")
    first = await ingestor.run(_docs(docs_dir, **{"bees.md": BEES, "press.md": PRESS}))
    assert (first.count("added"), first.count("failed")) == (2, 0)
    chunks_before = (await store.stats("c"))["chunks"]

    again = await ingestor.run(_docs(docs_dir))
    assert again.count("unchanged") == 2 and again.chunks == 0
    assert (await store.stats("c"))["chunks"] == chunks_before

    changed = await ingestor.run(_docs(docs_dir, **{"press.md": "# Press\n\nWe sold the press in 2024."}))
    assert changed.count("updated") == 1 and changed.count("unchanged") == 1
    hits = (
        await retrieve(store, local_embedder, "c", "what happened to the press?", RetrievalOptions(top_k=5))
    ).hits
    texts = " ".join(h.text for h in hits)
    assert "sold the press" in texts and "Heidelberg" not in texts  # the old version is gone


async def test_a_binary_file_is_a_per_file_error_and_the_rest_go_on(
    store: Store, local_embedder: Any, tmp_path: Path
) -> None:
    docs_dir = tmp_path / "docs"
    docs_dir.mkdir()
    (docs_dir / "image.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00binary")
    report = await Ingestor(store, local_embedder, "c").run(_docs(docs_dir, **{"bees.md": BEES}))
    failed = [r for r in report.results if r.status == "failed"]
    assert len(failed) == 1 and failed[0].source.endswith("image.md") and "binary" in (failed[0].error or "")
    assert report.count("added") == 1


async def test_retrieval_finds_the_answer_and_filters_by_author(store: Store, local_embedder: Any) -> None:
    docs = [
        make_document("bees.md", BEES, author="mara"),
        make_document("press.md", PRESS, author="olle"),
    ]
    await Ingestor(store, local_embedder, "c").run(docs)
    for hybrid in (False, True):
        options = RetrievalOptions(top_k=1, hybrid=hybrid)
        hits = (
            await retrieve(store, local_embedder, "c", "how often should I check my beehive?", options)
        ).hits
        assert hits and hits[0].payload["source"] == "bees.md"
    only_olle = RetrievalOptions(top_k=5, filter={"author": "olle"})
    hits = (
        await retrieve(store, local_embedder, "c", "how often should I check my beehive?", only_olle)
    ).hits
    assert {h.payload["author"] for h in hits} == {"olle"}


async def test_a_collection_made_by_another_embedder_is_refused(store: Store, local_embedder: Any) -> None:
    await store.ensure("other", "gateway:text-embedding", 16)
    with pytest.raises(EmbedderMismatch, match="gateway:text-embedding"):
        await retrieve(store, local_embedder, "other", "anything", RetrievalOptions())


async def test_an_empty_or_missing_collection_gives_no_hits(store: Store, local_embedder: Any) -> None:
    await store.ensure("empty", local_embedder.id, local_embedder.dim)
    assert (await retrieve(store, local_embedder, "empty", "bees", RetrievalOptions())).hits == []
    assert (await retrieve(store, local_embedder, "missing", "bees", RetrievalOptions())).hits == []


def test_chunkers_split_articles_by_heading_and_python_by_definition() -> None:
    article = chunk_article("# A\n\nfirst part\n\n## B\n\nsecond part")
    assert [c.section for c in article] == ["A", "B"] and article[1].text.startswith("B")
    code = "import os\n\n\ndef f():\n    return 1\n\n\nclass K:\n    x = 1\n"
    assert [c.section for c in chunk_code(code, "m.py")] == ["module", "f", "K"]
    long = "\n\n".join(f"paragraph {i} " + "word " * 60 for i in range(10))
    pieces = chunk_article(long, max_chars=500, overlap_chars=100)
    assert len(pieces) > 1 and all(len(p.text) <= 600 for p in pieces)


async def test_side_by_side_sessions_return_each_text_its_own_vector_in_order() -> None:
    """A batch larger than a slice is spread over several sessions and put back in order."""
    from rag.embedders import LocalEmbedder

    texts = [
        f"note {i}: " + ("bees visit the hive " if i % 2 else "the press prints posters ") * (1 + i % 5)
        for i in range(40)
    ]
    side_by_side = LocalEmbedder(document_sessions=2, batch_size=16)
    single = LocalEmbedder(document_sessions=1, batch_size=64)
    try:
        spread = await side_by_side.embed_documents(texts)
        whole = await single.embed_documents(texts)
    finally:
        side_by_side.close()
        single.close()
    assert len(spread) == len(texts) == len(whole)
    for a, b in zip(spread, whole, strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-4


async def test_released_documents_sessions_are_built_again_by_the_next_ingest() -> None:
    """A gateway drops them after seeding; a later ingest must still work and embed the same."""
    from rag.embedders import LocalEmbedder

    texts = [f"post {i}: the press prints posters on Fridays" for i in range(32)]
    embedder = LocalEmbedder(document_sessions=2, batch_size=16)
    try:
        embedder.load()
        assert embedder.document_sessions_loaded == 0  # warming up builds only the questions' session
        first = await embedder.embed_documents(texts)
        assert embedder.document_sessions_loaded >= 1  # one per thread that took a slice
        embedder.release_documents()
        assert embedder.document_sessions_loaded == 0
        again = await embedder.embed_documents(texts)
        assert embedder.document_sessions_loaded >= 1
    finally:
        embedder.close()
    assert all(
        max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-6 for a, b in zip(first, again, strict=True)
    )
