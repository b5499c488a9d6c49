"""The time RAG adds to a request, and ingest throughput, in Qdrant local mode.

    python -m bench.rag_latency [--sizes 1000,10000,100000] [--queries 200] [--ingest 500] [--query-threads 1]

Ingest: real documents through the real pipeline (chunk, local embedder, sparse
vector, write), reported as chunks/s, with a 5 ms timer on the event loop meanwhile
and, as a control, for as long with nothing running (on a shared machine the
operating system delays the timer too). Added time: for a collection of N chunks, the
retrieval step as the chat path runs it — embed the question (uncached: every question
is new), search, build the augmented prompt — p50/p99 over distinct questions, with the
embedding's share and the process CPU per question (steadier than wall time when the
machine is shared). Then dense retrieval again while another collection is being
ingested: what other requests see during an ingest. To reach large N without hours of
embedding, the collection past the first ingested chunks is filled with copies of
their vectors plus noise: search cost depends on the number and size of vectors, not
on what they say.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
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


async def _ticking(work: Any) -> list[float]:
    """How late a 5 ms timer on the event loop fires while `work` (an awaitable) runs."""
    lateness: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            due = time.perf_counter() + 0.005
            await asyncio.sleep(0.005)
            lateness.append((time.perf_counter() - due) * 1000)

    tick = asyncio.create_task(ticker())
    try:
        await work
    finally:
        done.set()
        await tick
    return lateness


async def ingest_throughput(
    store: Store, embedder: LocalEmbedder, chunks: int
) -> tuple[float, list[float], list[float]]:
    """Chunks/s; how late a 5 ms timer fired during ingest, and for as long with nothing running.

    The second list is the control: on a shared machine the operating system delays the
    timer too, and only the difference is the ingest's doing.
    """
    rng = random.Random(1)
    docs = [make_document(f"doc-{i}.md", sentence(rng, 24), kind="post") for i in range(chunks)]
    started = time.perf_counter()
    lateness = await _ticking(Ingestor(store, embedder, "ingest").run(docs))
    elapsed = time.perf_counter() - started
    control = await _ticking(asyncio.sleep(min(elapsed, 10.0)))
    return chunks / elapsed, lateness, control


async def fill(store: Store, embedder: LocalEmbedder, name: str, size: int, seed: list[Any]) -> None:
    import numpy as np
    from qdrant_client import models

    await store.ensure(name, embedder.id, embedder.dim)
    rng = np.random.default_rng(size)
    dense = vector_name(embedder.id)
    base = np.array([p.vector[dense] for p in seed], dtype=np.float32)
    for start in range(0, size, 2000):
        count = min(size, start + 2000) - start
        picks = rng.integers(0, len(seed), count)
        vectors = base[picks] + rng.normal(0, 0.02, (count, base.shape[1])).astype(np.float32)
        points = [
            models.PointStruct(
                id=str(uuid.uuid4()),
                vector={dense: vector.tolist(), SPARSE: seed[pick].vector[SPARSE]},
                payload={**seed[pick].payload, "source": f"filler-{(start + i) // 4}", "doc_hash": "f"},
            )
            for i, (pick, vector) in enumerate(zip(picks, vectors, strict=True))
        ]
        await store._call(lambda p=points: store._client.upsert(name, points=p, wait=True))


async def added_ms(
    store: Store, embedder: LocalEmbedder, name: str, queries: int, hybrid: bool, salt: str = ""
) -> tuple[list[float], list[float], float]:
    """Per question: the whole step (embed + search + prompt) and its embedding part; CPU ms per question."""
    rng = random.Random(f"{name}-{hybrid}-{salt}")  # questions new to this run: none is cached
    totals, embeds = [], []
    messages: list[Any] = [{"role": "user", "content": ""}]
    cpu = time.process_time()
    for i in range(queries):
        question = f"{sentence(rng, 8)} #{i} {rng.random()}"
        messages[0]["content"] = question
        started = time.perf_counter()
        await embedder.embed_query(question)  # uncached: a new question (then cached for the search)
        embedded = time.perf_counter()
        found = await retrieve(store, embedder, name, question, RetrievalOptions(top_k=4, hybrid=hybrid))
        augment(messages, found.hits, DEFAULT_TEMPLATE)
        totals.append((time.perf_counter() - started) * 1000)
        embeds.append((embedded - started) * 1000)
    return totals, embeds, (time.process_time() - cpu) * 1000 / queries


async def during_ingest(store: Store, embedder: LocalEmbedder, name: str, queries: int) -> list[float]:
    """The added time of dense retrieval from `name` while another collection is being ingested."""
    rng = random.Random(7)
    docs = [make_document(f"busy-{i}.md", sentence(rng, 24), kind="post") for i in range(100_000)]
    ingest = asyncio.create_task(Ingestor(store, embedder, "busy").run(docs))
    await asyncio.sleep(1.0)  # let it get going
    try:
        totals, _, _ = await added_ms(store, embedder, name, queries, hybrid=False, salt="during ingest")
    finally:
        ingest.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ingest
    return totals


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _line(label: str, times: list[float], extra: str = "") -> str:
    return f"{label}: added p50 {statistics.median(times):6.1f} ms  p99 {pct(times, 0.99):6.1f} ms{extra}"


async def run(args: argparse.Namespace) -> None:
    embedder = LocalEmbedder(query_threads=args.query_threads)
    embedder.load(documents=True)
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store(path=Path(tmp)).open()
        rate, lateness, control = await ingest_throughput(store, embedder, args.ingest)
        print(f"ingest: {rate:.0f} chunks/s ({args.ingest} posts of ~24 words, local embedder, local mode)")
        for label, late in (("during ingest", lateness), ("idle (control)", control)):
            print(
                f"event loop {label}: a 5 ms timer fired late by p50 {statistics.median(late):.1f} ms, "
                f"p99 {pct(late, 0.99):.1f} ms, max {max(late):.1f} ms ({len(late)} ticks)"
            )
        seed, _ = await store._call(
            lambda: store._client.scroll("ingest", limit=args.ingest, with_vectors=True, with_payload=True)
        )
        for size in args.sizes:
            name = f"c{size}"
            started = time.perf_counter()
            await fill(store, embedder, name, size, seed)
            print(f"{size:>7} chunks written in {time.perf_counter() - started:.1f} s")
            for hybrid in (False, True) if size <= args.hybrid_max else (False,):
                times, embeds, cpu = await added_ms(store, embedder, name, args.queries, hybrid)
                rest = [t - e for t, e in zip(times, embeds, strict=True)]
                extra = (
                    f"  (embedding p50 {statistics.median(embeds):5.1f} ms, search + prompt p50"
                    f" {statistics.median(rest):5.1f} ms; CPU {cpu:5.1f} ms/question)"
                )
                print(_line(f"{size:>7} chunks {'hybrid' if hybrid else 'dense ':6}", times, extra))
        if args.sizes and args.during_ingest:
            name = f"c{args.sizes[0]}"
            times = await during_ingest(store, embedder, name, args.queries)
            print(_line(f"{args.sizes[0]:>7} chunks dense while another collection is ingested", times))
        await store.aclose()
    embedder.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ingest", type=int, default=500)
    parser.add_argument("--hybrid-max", type=int, default=10_000, help="largest size to also run hybrid on")
    parser.add_argument("--no-during-ingest", dest="during_ingest", action="store_false")
    parser.add_argument("--query-threads", type=int, default=1, help="ONNX threads embedding a question")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
