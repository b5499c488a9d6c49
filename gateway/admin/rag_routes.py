"""`/admin/api/rag/*`: ingest documents into a collection, list collections (admin key only).

The running gateway's twin of `gateway rag ingest`: it uses the gateway's own store
and the collection's configured embedder, so it works while the gateway holds the
local store's lock, and with a `gateway` embedder.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.common import admin_accounts, json_response
from gateway.errors import GatewayError
from gateway.request_body import read_json_object, validation_error
from gateway.retrieval import RagService
from rag.documents import make_document
from rag.errors import EmbedderMismatch, RagError


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, max_length=2000)
    text: str
    title: str = ""
    url: str = ""
    type: Literal["article", "post", "code"] | None = None
    author: str = ""


class IngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    documents: list[DocumentIn] = Field(min_length=1, max_length=10_000)


def _service(request: Request) -> RagService:
    admin_accounts(request)  # admin only
    service: RagService = request.app.state.runtime.rag
    return service


async def ingest_documents(request: Request) -> Response:
    service = _service(request)
    name = request.path_params["collection"]
    body = await read_json_object(request, service.settings.max_body_bytes)
    try:
        parsed = IngestRequest.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None
    collection = service.collection(name)
    documents = await asyncio.to_thread(  # parsing (HTML, front matter) is CPU work: off the loop
        lambda: [
            make_document(d.source, d.text, kind=d.type, author=d.author, title=d.title, url=d.url)
            for d in parsed.documents
        ]
    )
    from rag.ingest import Ingestor  # loads numpy: only when documents are ingested

    try:
        store = await service.store()
        report = await Ingestor(store, service.embedder(collection, deny=False), name).run(documents)
    except EmbedderMismatch as exc:
        raise GatewayError(409, str(exc), code="rag_embedder_mismatch") from None
    except RagError as exc:
        raise GatewayError(502, str(exc), code="rag_unavailable") from None
    return json_response(report.as_dict())


async def list_collections(request: Request) -> Response:
    service = _service(request)
    try:
        return json_response({"data": await (await service.store()).collections()})
    except RagError as exc:
        raise GatewayError(502, str(exc), code="rag_unavailable") from None


def rag_admin_routes() -> list[Route]:
    return [
        Route("/admin/api/rag", list_collections, methods=["GET"]),
        Route("/admin/api/rag/{collection}/documents", ingest_documents, methods=["POST"]),
    ]
