"""Every operation of the API as a typed stub, never called: FastAPI reads the signatures only.

The real handlers are Starlette routes on the raw request (`gateway.app`); these stubs
give the generator what it needs — path and query parameters, the request body model,
the response models per status and the security schemes — so `/openapi.json` comes out
of FastAPI's own `get_openapi`, with no request ever passing through FastAPI's
validation or dependency solving.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Security
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.admin.rag_routes import IngestRequest
from gateway.admin.routes import KeyRequest
from gateway.api_schema import admin as a
from gateway.api_schema import v1
from gateway.api_schema.common import (
    ADMIN_KEY,
    ANTHROPIC_KEY,
    METRICS_TOKEN,
    VIRTUAL_KEY,
    AnthropicError,
    Deleted,
    errors,
)
from gateway.request_body import (
    ChatCompletionRequest,
    CompletionsRequest,
    EmbeddingsRequest,
    MessagesRequest,
    ResponsesRequest,
)

CLIENT = [Security(VIRTUAL_KEY), Security(ADMIN_KEY)]
ADMIN = [Security(ADMIN_KEY)]
ROUTED = (400, 401, 402, 403, 404, 413, 429, 502, 503, 504)  # what a routed request can end in
ADMIN_ERRORS = (400, 401, 403)


class Window(BaseModel):
    """A time range and equality filters over the ledger (range: the last 7 days by default)."""

    model_config = ConfigDict(extra="forbid")
    start: datetime | None = Field(None, description="Start (inclusive); default `end` minus 7 days")
    end: datetime | None = Field(
        None, description="End (exclusive), after `start`, at most 400 days later; default now"
    )
    key: str | None = Field(None, description="Only this key's requests (a key id)")
    model: str | None = None
    provider: str | None = None


class LedgerQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: datetime | None = Field(None, description="Start (inclusive)")
    end: datetime | None = Field(None, description="End (exclusive)")
    key: str | None = Field(None, description="A key id")
    key_id: str | None = None
    model: str | None = None
    provider: str | None = None
    deployment: str | None = None
    status: int | None = Field(None, description="HTTP status the client got")


v1_router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"], dependencies=CLIENT)
admin_router = APIRouter(prefix="/admin/api", tags=["Admin"], dependencies=ADMIN)
ops_router = APIRouter(tags=["Operations"])


@v1_router.post(
    "/chat/completions",
    response_model=v1.ChatCompletion,
    responses={200: {"content": v1.SSE}, **errors(*ROUTED)},
)
def create_chat_completion(body: ChatCompletionRequest) -> None:
    """Routed to the best deployment of `model` (or of `models`, in order), with failover.

    Unknown fields pass through to the upstream. `provider` holds routing preferences
    (order, only, ignore, max_price, data_collection, …)."""


@v1_router.post(
    "/completions", response_model=v1.TextCompletion, responses={200: {"content": v1.SSE}, **errors(*ROUTED)}
)
def create_completion(body: CompletionsRequest) -> None:
    """Legacy text completions, run as a one-message chat."""


@v1_router.post("/embeddings", response_model=v1.EmbeddingList, responses=errors(*ROUTED))
def create_embeddings(body: EmbeddingsRequest) -> None:
    """Routed like chat: same failover and costing."""


@v1_router.post(
    "/responses", response_model=v1.ResponseObject, responses={200: {"content": v1.SSE}, **errors(*ROUTED)}
)
def create_response(body: ResponsesRequest) -> None:
    """The Responses API, translated to chat; `previous_response_id` continues a stored conversation."""


@v1_router.get("/responses/{response_id}", response_model=v1.ResponseObject, responses=errors(400, 401, 404))
def get_response(response_id: str) -> None:
    """A stored response of the caller's own."""


@v1_router.delete("/responses/{response_id}", response_model=Deleted, responses=errors(400, 401, 404))
def delete_response(response_id: str) -> None:
    """Forget a stored response of the caller's own."""


@v1_router.post(
    "/messages",
    response_model=v1.AnthropicMessage,
    responses={200: {"content": v1.SSE}, **errors(*ROUTED, model=AnthropicError)},
    dependencies=[Security(ANTHROPIC_KEY)],
)
def create_message(body: MessagesRequest) -> None:
    """Anthropic's Messages API over any routed model; errors in Anthropic's shape."""


@v1_router.get("/models", response_model=v1.ModelList, responses=errors(401))
def list_models() -> None:
    """Every model, its deployments and their prices."""


@v1_router.get("/generation", response_model=v1.Generation, responses=errors(400, 401, 404))
def get_generation(id: Annotated[str, Query(min_length=1, description="The request id (`gen-…`)")]) -> None:
    """The record of a finished request: the caller's own (the admin key sees all)."""


@ops_router.get("/health", response_model=v1.Health)
def health() -> None:
    """Liveness: the process answers."""


@ops_router.get("/ready", response_model=v1.Readiness, responses={503: {"model": v1.Readiness}})
def ready() -> None:
    """Readiness: started, not shutting down, and its configured services answer."""


@ops_router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **errors(401)},
    dependencies=[Security(ADMIN_KEY), Security(METRICS_TOKEN)],
)
def metrics() -> None:
    """Prometheus metrics (the admin key or `GATEWAY_METRICS_TOKEN` when either is set)."""


@admin_router.post("/keys", status_code=201, response_model=a.NewKey, responses=errors(*ADMIN_ERRORS, 415))
def create_key(body: KeyRequest) -> None:
    """Mint a virtual key; its secret is in the answer, once."""


@admin_router.get("/keys", response_model=a.KeyList, responses=errors(*ADMIN_ERRORS))
def list_keys() -> None:
    """Every key (revoked ones too), with its budget status."""


@admin_router.get("/keys/{key_id}", response_model=a.KeyWithBudget, responses=errors(*ADMIN_ERRORS, 404))
def get_key(key_id: str) -> None:
    """One key and its budget status."""


@admin_router.delete("/keys/{key_id}", response_model=a.Revoked, responses=errors(*ADMIN_ERRORS, 404))
def revoke_key(key_id: str) -> None:
    """Revoke a key: refused from the next request on, on every replica."""


@admin_router.get("/spend", response_model=a.Spend, responses=errors(*ADMIN_ERRORS))
def spend(
    window: Annotated[Window, Query()],
    group_by: Literal["provider", "model", "deployment", "key"] = "model",
    bucket: Literal["hour", "day"] = "day",
) -> None:
    """Spend and tokens per group and time bucket."""


@admin_router.get("/ledger", response_model=a.LedgerPage, responses=errors(*ADMIN_ERRORS))
def ledger(
    query: Annotated[LedgerQuery, Query()],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> None:
    """Ledger rows, newest first, a page at a time."""


@admin_router.get(
    "/ledger.csv",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}, **errors(*ADMIN_ERRORS)},
)
def ledger_csv(query: Annotated[LedgerQuery, Query()]) -> None:
    """The ledger of a range as CSV (an attachment), streamed a page at a time."""


@admin_router.get(
    "/requests/{request_id}", response_model=a.RequestDetail, responses=errors(*ADMIN_ERRORS, 404)
)
def request_detail(request_id: str) -> None:
    """One request in full: its ledger row, every attempt, and the stored prompt if kept."""


@admin_router.get("/summary", response_model=a.Summary, responses=errors(*ADMIN_ERRORS))
def summary(window: Annotated[Window, Query()]) -> None:
    """Totals over a range: requests, refusals, errors, tokens, cost."""


@admin_router.get("/savings", response_model=a.Savings, responses=errors(*ADMIN_ERRORS))
def savings(window: Annotated[Window, Query()], bucket: Literal["hour", "day"] = "day") -> None:
    """What routing saved against the most expensive deployment, and paid over the cheapest."""


@admin_router.get("/deployments", response_model=a.Deployments, responses=errors(*ADMIN_ERRORS))
def deployments(window: Annotated[Window, Query()]) -> None:
    """Each deployment's breaker, load, error rate, latency and throughput."""


@admin_router.get("/key-usage", response_model=a.KeyUsage, responses=errors(*ADMIN_ERRORS))
def key_usage(window: Annotated[Window, Query()]) -> None:
    """Each key's requests, spend and refusals over a range."""


@admin_router.get("/rag", response_model=a.Collections, responses=errors(*ADMIN_ERRORS, 502))
def list_collections() -> None:
    """RAG collections and their chunk counts."""


@admin_router.post(
    "/rag/{collection}/documents",
    response_model=a.IngestReport,
    responses=errors(*ADMIN_ERRORS, 409, 413, 415, 502),
)
def ingest_documents(collection: str, body: IngestRequest) -> None:
    """Ingest documents into a collection: unchanged ones are skipped, changed ones replaced."""


@admin_router.delete("/cache", response_model=a.CachePurged, responses=errors(*ADMIN_ERRORS, 503))
def purge_cache(
    key: Annotated[str | None, Query(description="One virtual key's namespace (a key id)")] = None,
    group: Annotated[str | None, Query(description="A shared namespace; not with `key`")] = None,
    model: Annotated[
        str | None, Query(description="One model's entries (in every namespace, or the one named)")
    ] = None,
    all: Annotated[Literal["true"] | None, Query(description="Everything")] = None,
) -> None:
    """Purge the response cache (exact and semantic entries): say what, at least one of the four."""


@admin_router.get("/cache/stats", response_model=a.CacheStats, responses=errors(*ADMIN_ERRORS))
def cache_stats() -> None:
    """The cache's stores, and the lookups this process counted."""


ROUTERS = (v1_router, admin_router, ops_router)
