"""The time RAG adds to a request, and ingest throughput, in Qdrant local mode.

    python -m bench.rag_latency [--sizes 1000,10000] [--queries 200]

Ingest: real documents through the real pipeline (chunk, local embedder, sparse
vector, write), reported as chunks/s. Added time: for a collection of N chunks, the
retrieval step as the chat path runs it — embed the question (uncached: every question
is new), search, build the augmented prompt — p50/p99 over distinct questions. To
reach large N without hours of embedding, the collection past the first ingested
chunks is filled with copies of their vectors plus noise: search cost depends on the
number and size of vectors, not on what they say.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rag.augment import DEFAULT_TEMPLATE, augment
from rag.documents import make_document
from rag.embedders import LocalEmbedder, vector_name
from rag.ingest import Ingestor
from rag.retrieve import RetrievalOptions, retrieve
from rag.store import SPARSE, Store

WORDS = [
    "bee",
    "hive",
    "press",
    "paper",
    "ink",
    "ride",
    "tyre",
    "gravel",
    "wind",
    "notes",
    "backup",
    "garden",
    "tomato",
    "shop",
    "letter",
    "type",
]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


async def ingest_throughput(store: Store, embedder: LocalEmbedder, chunks: int) -> tuple[float, list[float]]:
    """Chunks/s, and how late a 5 ms timer on the event loop fired meanwhile (the stall others would see)."""
    rng = random.Random(1)
    docs = [make_document(f"doc-{i}.md", sentence(rng, 24), kind="post") for i in range(chunks)]
    lateness: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            due = time.perf_counter() + 0.005
            await asyncio.sleep(0.005)
            lateness.append((time.perf_counter() - due) * 1000)

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    report = await Ingestor(store, embedder, "ingest").run(docs)
    elapsed = time.perf_counter() - started
    done.set()
    await tick
    return report.chunks / elapsed, lateness


async def fill(store: Store, embedder: LocalEmbedder, name: str, size: int, seed: list[Any]) -> None:
    from qdrant_client import models

    await store.ensure(name, embedder.id, embedder.dim)
    rng = random.Random(size)
    dense = vector_name(embedder.id)
    for start in range(0, size, 1000):
        points = []
        for i in range(start, min(size, start + 1000)):
            base = seed[i % len(seed)]
            vector = [x + rng.gauss(0, 0.02) for x in base.vector[dense]]
            points.append(
                models.PointStruct(
                    id=str(uuid.uuid4()),
                    vector={dense: vector, SPARSE: base.vector[SPARSE]},
                    payload={**base.payload, "source": f"filler-{i // 4}", "doc_hash": "f"},
                )
            )
        await store._call(lambda p=points: store._client.upsert(name, points=p, wait=True))


async def added_ms(
    store: Store, embedder: LocalEmbedder, name: str, queries: int, hybrid: bool
) -> tuple[list[float], list[float]]:
    """Per question: the whole step (embed + search + prompt), and the embedding part of it."""
    rng = random.Random(f"{name}-{hybrid}")  # questions new to this run: none is cached
    totals, embeds = [], []
    messages: list[Any] = [{"role": "user", "content": ""}]
    for i in range(queries):
        question = f"{sentence(rng, 8)} #{i}"
        messages[0]["content"] = question
        started = time.perf_counter()
        await embedder.embed_query(question)  # uncached: a new question (then cached for the search)
        embedded = time.perf_counter()
        found = await retrieve(store, embedder, name, question, RetrievalOptions(top_k=4, hybrid=hybrid))
        augment(messages, found.hits, DEFAULT_TEMPLATE)
        totals.append((time.perf_counter() - started) * 1000)
        embeds.append((embedded - started) * 1000)
    return totals, embeds


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace) -> None:
    embedder = LocalEmbedder()
    embedder.load()
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store(path=Path(tmp)).open()
        rate, lateness = await ingest_throughput(store, embedder, args.ingest)
        print(f"ingest: {rate:.0f} chunks/s ({args.ingest} posts of ~24 words, local embedder, local mode)")
        print(
            f"event loop during ingest: a 5 ms timer fired late by p50 {statistics.median(lateness):.1f} ms, "
            f"p99 {pct(lateness, 0.99):.1f} ms, max {max(lateness):.1f} ms ({len(lateness)} ticks)"
        )
        seed, _ = await store._call(
            lambda: store._client.scroll("ingest", limit=args.ingest, with_vectors=True, with_payload=True)
        )
        for size in args.sizes:
            name = f"c{size}"
            await fill(store, embedder, name, size, seed)
            for hybrid in (False, True):
                times, embeds = await added_ms(store, embedder, name, args.queries, hybrid)
                print(
                    f"{size:>7} chunks {'hybrid' if hybrid else 'dense ':6}: added p50 {statistics.median(times):6.1f} ms"
                    f"  p99 {pct(times, 0.99):6.1f} ms  (embedding p50 {statistics.median(embeds):5.1f} ms;"
                    f" {args.queries} distinct questions)"
                )
        await store.aclose()
    embedder.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ingest", type=int, default=500)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
