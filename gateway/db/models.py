"""Tables: virtual keys (with their budget and limits), the request ledger, and the prompt log.

The ledger is append-only and is the single source of spend: admin reports and the
budget counters are both sums of its `cost_usd`. Its indexes follow the admin
queries: a time range, optionally narrowed to one key, model, provider or deployment.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Column, DateTime, Float, Index, Integer, String, Table, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from gateway.db.rollup import FLOAT_SUMS, SUMS, TTFT_COLUMNS


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    """A virtual key. Only the SHA-256 of the secret is stored; `prefix` is for display."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    budget_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    budget_period: Mapped[str | None] = mapped_column(String(8), nullable=True)
    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class LedgerRow(Base):
    """One finished request. `request_id` is the key, so a batch re-sent after a lost ack is harmless."""

    __tablename__ = "ledger"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    kind: Mapped[str] = mapped_column(String(16), default="chat")
    model: Mapped[str] = mapped_column(String(200))
    deployment: Mapped[str | None] = mapped_column(String(300), nullable=True)
    provider: Mapped[str | None] = mapped_column(String(100), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    usage_estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[int] = mapped_column(Integer, default=200)
    finish_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    streamed: Mapped[bool] = mapped_column(Boolean, default=False)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    policy: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempt_log: Mapped[Any] = mapped_column(JSON, nullable=True)
    # RAG: retrieval time and the chunks used ([{id, score, source}]); null without retrieval.
    retrieval_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    rag_chunks: Mapped[Any] = mapped_column(JSON, nullable=True)
    # Response cache: "hit" / "semantic-hit" / "miss" (null: not cacheable); on a hit, what it saved.
    cache: Mapped[str | None] = mapped_column(String(16), nullable=True)
    cost_saved_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Time spent in the gateway itself, upstream waits excluded (`x-gateway-overhead-ms`).
    overhead_ms: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (
        Index("ix_ledger_created_at", "created_at"),
        Index("ix_ledger_key_created", "key_id", "created_at"),
        Index("ix_ledger_model_created", "model", "created_at"),
        Index("ix_ledger_provider_created", "provider", "created_at"),
        Index("ix_ledger_deployment_created", "deployment", "created_at"),
    )


# Hourly and daily sums of the ledger by key, model, provider, deployment and status, kept in
# step with it by the ledger writer; what each column means is in `gateway.db.rollup`.
LEDGER_ROLLUP = Table(
    "ledger_rollup",
    Base.metadata,
    Column("cube", Integer, primary_key=True),
    Column("grain", Integer, primary_key=True),
    Column("hour", Integer, primary_key=True),
    Column("key_id", String(32), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("provider", String(100), primary_key=True),
    Column("deployment", String(300), primary_key=True),
    Column("status", Integer, primary_key=True),
    Column("refused", Boolean, primary_key=True),
    *(Column(name, Float if name in FLOAT_SUMS else Integer, nullable=False, default=0) for name in SUMS),
    *(Column(name, Integer, nullable=False, default=0) for name in TTFT_COLUMNS),
    Index("ix_ledger_rollup_key", "cube", "grain", "key_id", "hour"),
    sqlite_with_rowid=False,  # rows stored in key order: a range of hours is one contiguous read
)


class PromptLogRow(Base):
    """Prompt monitoring (opt-in): one kept request's bodies, redacted and capped, beside its ledger row.

    Kept apart from the ledger so it can be purged on its own schedule (retention) and
    so ledger scans never read large bodies.
    """

    __tablename__ = "prompt_log"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    model: Mapped[str] = mapped_column(String(200))
    messages: Mapped[str | None] = mapped_column(Text, nullable=True)
    augmented: Mapped[str | None] = mapped_column(Text, nullable=True)
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    cap_chars: Mapped[int] = mapped_column(Integer)
    original_chars: Mapped[Any] = mapped_column(JSON, nullable=True)  # body -> length before the cap

    __table_args__ = (Index("ix_prompt_log_created_at", "created_at"),)
