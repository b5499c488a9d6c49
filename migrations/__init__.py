"""Alembic environment and versions for the models in `gateway.db` (run by `gateway db upgrade`)."""
