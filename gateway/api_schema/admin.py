"""Response bodies of the admin API (`/admin/api/*`).

Request bodies are the handlers' own models (`KeyRequest`, `IngestRequest`). Times are
ISO 8601 in UTC (`…Z`); money is USD.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from gateway.api_schema.common import Open


class Budget(Open):
    budget_usd: float
    period: str | None
    spent_usd: float
    remaining_usd: float
    resets_at: str | None


class Key(Open):
    id: str
    name: str
    prefix: str = Field(description="The first characters of the secret, to recognise it")
    budget_usd: float | None
    budget_period: str | None
    rpm: int | None
    tpm: int | None
    models: list[str] | None = Field(description="The allow-list; null allows every model")
    created_at: str | None
    revoked_at: str | None


class KeyWithBudget(Key):
    budget: Budget | None = Field(description="Spend in the current period; null without a budget")


class NewKey(Key):
    key: str = Field(description="The secret, shown this once and never stored")


class KeyList(BaseModel):
    data: list[KeyWithBudget]


class Revoked(BaseModel):
    id: str
    revoked: bool


class SpendRow(Open):
    group: str | None
    bucket: str | None
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


class Spend(BaseModel):
    group_by: str
    bucket: str
    start: str
    end: str
    data: list[SpendRow]


class LedgerEntry(Open):
    request_id: str
    created_at: str
    key_id: str | None
    kind: str
    model: str
    deployment: str | None
    provider: str | None
    attempts: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_ms: float
    ttft_ms: float | None
    status: int
    finish_reason: str | None
    streamed: bool
    cancelled: bool
    error: str | None


class LedgerPage(BaseModel):
    data: list[LedgerEntry]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end")


class RequestDetail(Open):
    """The ledger row, with `attempts` as the list of every deployment tried (outcome, timing)."""

    request_id: str
    created_at: str
    model: str
    status: int
    cost_usd: float
    attempts: list[dict[str, Any]]
    prompt: dict[str, Any] | None = Field(description="The stored prompt, when prompt monitoring kept it")


class Totals(Open):
    requests: int
    refused: int
    errors: int
    error_rate: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    streamed: int
    cancelled: int
    rag_requests: int


class Summary(BaseModel):
    start: str
    end: str
    filters: dict[str, str]
    data: Totals


class Savings(Open):
    start: str
    end: str
    bucket: str
    total: dict[str, Any]
    data: list[dict[str, Any]]


class DeploymentReport(Open):
    deployment: str
    configured: bool
    provider: str
    models: list[str]
    breaker: str | None
    in_flight: int | None
    requests: int
    errors: int
    error_rate: float | None


class Deployments(BaseModel):
    start: str
    end: str
    data: list[DeploymentReport]


class KeyUsageRow(Open):
    id: str | None
    name: str | None
    budget: Budget | None
    usage: dict[str, Any]


class KeyUsage(BaseModel):
    start: str
    end: str
    data: list[KeyUsageRow]


class Collection(Open):
    name: str
    chunks: int
    embedder: Any


class Collections(BaseModel):
    data: list[Collection]


class IngestedDocument(Open):
    source: str
    status: str
    chunks: int
    error: str | None


class IngestReport(Open):
    collection: str
    added: int
    updated: int
    unchanged: int
    failed: int
    chunks_written: int
    documents: list[IngestedDocument]


class CachePurged(Open):
    purged: dict[str, str | bool] = Field(description="What was asked to go: key, group, model, all")
    exact_entries_removed: int


class CacheStats(Open):
    exact: dict[str, Any] | None
    semantic: dict[str, Any] | None
    lookups: dict[str, int]
    hit_rate: float | None
    stored: dict[str, int]
    errors: dict[str, int]
    models: dict[str, Any]
