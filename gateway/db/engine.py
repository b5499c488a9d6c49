"""Engines for SQLite (the one-machine default) and PostgreSQL, and running migrations.

URLs are normalised to async drivers (`sqlite+aiosqlite`, `postgresql+asyncpg`) so a
plain `postgresql://…` works. SQLite gets WAL and a busy timeout because the ledger
writer and admin queries run concurrently (and several processes may share the file),
and its pool hands out the connection returned last: every pooled SQLite connection
keeps a page cache (up to 2 MB) and prepared statements of its own, so taking them in
turn warmed every one of them, while the last one returned is usually enough.
Migrations run through Alembic from the installed `migrations` package; concurrent
start-ups are serialised (an advisory lock in PostgreSQL, a file lock beside SQLite).
"""

from __future__ import annotations

import fcntl
import logging
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def normalize_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {url!r}")
    return f"{_DRIVERS.get(scheme, scheme)}://{rest}"


def is_sqlite(url: str) -> bool:
    return normalize_url(url).startswith("sqlite")


def sqlite_path(url: str) -> Path | None:
    database = make_url(normalize_url(url)).database
    if not is_sqlite(url) or not database or database == ":memory:":
        return None
    return Path(database)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; for SQLite the file's directory is created first."""
    url = normalize_url(url)
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("pool_use_lifo", True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("connect_args", {"timeout": 5, "command_timeout": 30})
    return create_async_engine(url, **kwargs)


def sessions(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    import migrations

    # `__path__`, not `__file__`: it also holds when the package resolves as a namespace package.
    here = Path(next(iter(migrations.__path__)))
    config = Config(str(here / "alembic.ini"))
    config.set_main_option("script_location", str(here))
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the schema to `revision`. Blocking: call it from a thread inside an event loop."""
    from alembic import command

    logging.getLogger("alembic").setLevel(logging.WARNING)  # its INFO lines say nothing at start-up
    path = sqlite_path(url)
    if path is None:
        command.upgrade(alembic_config(url), revision)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".migrate-lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            command.upgrade(alembic_config(url), revision)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
