"""The gateway's database: SQLAlchemy 2 async models, the engine, and running migrations.

Only this package knows table layouts; `migrations/` imports its metadata so Alembic's
versions and the models cannot drift apart silently.
"""

from gateway.db.engine import make_engine, normalize_url, upgrade
from gateway.db.models import ApiKey, Base, LedgerRow

__all__ = ["ApiKey", "Base", "LedgerRow", "make_engine", "normalize_url", "upgrade"]
