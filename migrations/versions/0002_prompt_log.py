"""The prompt log: opt-in copies of requests' messages and answers, redacted and capped.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prompt_log",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("messages", sa.Text, nullable=True),
        sa.Column("augmented", sa.Text, nullable=True),
        sa.Column("answer", sa.Text, nullable=True),
        sa.Column("cap_chars", sa.Integer, nullable=False),
        sa.Column("original_chars", sa.JSON, nullable=True),
    )
    op.create_index("ix_prompt_log_created_at", "prompt_log", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_prompt_log_created_at", table_name="prompt_log")
    op.drop_table("prompt_log")
