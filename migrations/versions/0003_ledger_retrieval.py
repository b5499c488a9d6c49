"""Ledger: retrieval time and the chunks a RAG request put into its prompt.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("retrieval_ms", sa.Float, nullable=True))
        batch.add_column(sa.Column("rag_chunks", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("rag_chunks")
        batch.drop_column("retrieval_ms")
