"""Ledger roll-ups: hourly and daily sums by key, model, provider, deployment and status.

Creates `ledger_rollup` (see `gateway.db.rollup`) and fills it from the rows the ledger
already holds, with the statement the ledger writer runs for each batch
(`gateway.db.rollup_sql.backfill`, a day of rows at a time, inside the database).

Both the table and its fill come from the current code rather than a frozen copy: the
roll-ups are derived data, entirely recomputable from the ledger, and the backfill reads
only ledger columns that exist at revision 0004. A later migration that changes the
roll-up layout must therefore freeze this one's table and statement as they are then
(or rebuild the roll-ups itself), so that upgrading from 0004 stays reproducible.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

from gateway.db.models import LEDGER_ROLLUP
from gateway.db.rollup_sql import backfill

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

__all__ = ["backfill", "downgrade", "upgrade"]


def upgrade() -> None:
    LEDGER_ROLLUP.create(op.get_bind())
    backfill(op.get_bind())


def downgrade() -> None:
    op.drop_table("ledger_rollup")
