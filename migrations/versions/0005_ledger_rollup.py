"""Ledger roll-ups: hourly and daily sums by key, model, provider, deployment and status.

Creates `ledger_rollup` (see `gateway.db.rollup`) and fills it from the rows the ledger
already holds, read in time order a batch at a time and summed by the same code the
ledger writer uses.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.db.models import LEDGER_ROLLUP, LedgerRow
from gateway.db.rollup import Rollup, upsert

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BACKFILL_ROWS = 100_000
_READ = ("created_at", "key_id", "model", "provider", "deployment", "status", "attempts", "input_tokens",
         "output_tokens", "cost_usd", "streamed", "cancelled", "retrieval_ms", "usage_estimated",
         "latency_ms", "ttft_ms", "cache", "cost_saved_usd")  # fmt: skip


def backfill(connection: sa.Connection) -> None:
    ledger = LedgerRow.__table__
    query = sa.select(*(ledger.c[name] for name in _READ)).order_by(ledger.c.created_at)
    result = connection.execute(query.execution_options(yield_per=BACKFILL_ROWS))
    for part in result.mappings().partitions():
        deltas = Rollup()
        deltas.extend(part)
        upsert(connection, deltas.rows())


def upgrade() -> None:
    LEDGER_ROLLUP.create(op.get_bind())
    backfill(op.get_bind())


def downgrade() -> None:
    op.drop_table("ledger_rollup")
