"""`gateway rag ingest|list|delete|stats`: RAG collections from the command line.

They open the store the gateway would (`QDRANT_PATH` in local mode, or `QDRANT_URL`),
so a collection ingested here is served by the next request that names it, with no
config change. Qdrant's local mode allows one process per directory: while a gateway
runs on the same local store, ingest through its admin API instead
(`POST /admin/api/rag/{collection}/documents`) or point both at a Qdrant server.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from gateway.retrieval import open_store
from gateway.settings import Settings
from rag.documents import KINDS, expand_paths, read_document
from rag.embedders import LocalEmbedder
from rag.errors import DocumentError, RagError

if TYPE_CHECKING:  # rag.ingest and rag.store load numpy; `gateway serve` builds this parser too
    from rag.ingest import FileResult
    from rag.store import Store


def add_commands(commands: Any) -> None:
    rag = commands.add_parser("rag", help="RAG collections: ingest, list, delete, stats").add_subparsers(
        dest="rag_command", required=True
    )
    ingest = rag.add_parser("ingest", help="ingest files or directories into a collection")
    ingest.add_argument("paths", nargs="+", type=Path)
    ingest.add_argument("--collection", required=True)
    ingest.add_argument(
        "--type", choices=KINDS, default=None, help="default: code by extension, else article"
    )
    ingest.add_argument("--author", default="")
    ingest.add_argument("--json", action="store_true", help="print the report as JSON")
    ingest.set_defaults(handler=lambda args: _run(_ingest, args))
    listing = rag.add_parser("list", help="list collections")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=lambda args: _run(_list, args))
    delete = rag.add_parser("delete", help="delete a collection")
    delete.add_argument("collection")
    delete.set_defaults(handler=lambda args: _run(_delete, args))
    stats = rag.add_parser("stats", help="chunks, documents and embedder of a collection")
    stats.add_argument("collection")
    stats.set_defaults(handler=lambda args: _run(_stats, args))


def _run(command: Callable[[Store, argparse.Namespace], Awaitable[int]], args: argparse.Namespace) -> int:
    async def main() -> int:
        store = open_store(Settings())
        try:
            await store.open()
            return await command(store, args)
        except RagError as exc:
            print(f"gateway rag: {exc}", file=sys.stderr)
            return 1
        finally:
            await store.aclose()

    return asyncio.run(main())


def _documents(args: argparse.Namespace) -> list[Any]:
    out: list[Any] = []
    for path in expand_paths(args.paths):
        try:
            out.append(read_document(path, args.type, args.author))
        except DocumentError as exc:
            out.append(exc)
    return out


async def _ingest(store: Store, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rag.ingest import Ingestor

    documents = await asyncio.to_thread(_documents, args)
    embedder = LocalEmbedder()
    bar = tqdm(total=len(documents), unit="doc", desc=f"ingest {args.collection}", file=sys.stderr)

    def progress(result: FileResult) -> None:
        bar.update(1)
        if result.status == "failed":
            bar.write(f"error: {result.source}: {result.error}", file=sys.stderr)

    try:
        report = await Ingestor(store, embedder, args.collection).run(documents, progress)
    finally:
        bar.close()
        embedder.close()
    summary = report.as_dict()
    if args.json:
        print(orjson.dumps(summary).decode())
    else:
        print(
            f"{args.collection}: {summary['added']} added, {summary['updated']} updated, "
            f"{summary['unchanged']} unchanged, {summary['failed']} failed ({summary['chunks_written']} chunks written)"
        )
    return 1 if summary["failed"] else 0


async def _list(store: Store, args: argparse.Namespace) -> int:
    collections = await store.collections()
    if args.json:
        print(orjson.dumps(collections).decode())
    for c in [] if args.json else collections:
        print(f"{c['name']}\t{c['chunks']} chunks\t{c['embedder']}")
    return 0


async def _delete(store: Store, args: argparse.Namespace) -> int:
    if not await store.delete(args.collection):
        print(f"gateway rag: no collection {args.collection!r}", file=sys.stderr)
        return 1
    print(f"deleted {args.collection}")
    return 0


async def _stats(store: Store, args: argparse.Namespace) -> int:
    print(orjson.dumps(await store.stats(args.collection), option=orjson.OPT_INDENT_2).decode())
    return 0
