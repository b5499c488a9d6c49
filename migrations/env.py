"""Alembic environment: runs migrations on the async engine built from `gateway.db`.

The app's own metadata is the target, so `alembic revision --autogenerate` compares
against the models. In PostgreSQL a transaction-scoped advisory lock serialises
replicas that start at the same moment; SQLite is serialised by the caller's file lock.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from gateway.db.engine import make_engine
from gateway.db.models import Base

_LOCK_ID = 7_346_221_009  # arbitrary, constant: "the gateway is migrating"


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        context.run_migrations()


async def _online() -> None:
    engine = make_engine(context.config.get_main_option("sqlalchemy.url") or "")
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_online())
