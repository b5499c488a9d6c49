"""Virtual keys: minting, storing (hash only), and looking them up without the database.

A key is `gw-` plus 32 random bytes (URL-safe base64). Only its SHA-256 is stored —
a key this random needs no slow hash — with a short prefix kept for display. Lookups
go through `KeyCache`: a hit costs one dict access and one constant-time compare; a
miss reads one row, and entries expire after a few seconds so a key revoked from the
CLI or another replica stops working soon even without Redis. Revoking through the
admin API invalidates this replica at once and, with Redis, every replica.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.engine import sessions
from gateway.db.models import ApiKey

log = logging.getLogger("gateway.keys")

KEY_PREFIX = "gw-"
PERIODS = ("day", "week", "month", "total")
# Bounds that keep every limit a number the database and the counters can hold.
MAX_RATE = 10**9
MAX_BUDGET_USD = 10**9


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    name: str
    prefix: str
    key_hash: str
    budget_usd: float | None = None
    budget_period: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    models: tuple[str, ...] | None = None
    created_at: datetime | None = None
    revoked_at: datetime | None = None

    @classmethod
    def from_row(cls, row: ApiKey) -> KeyRecord:
        return cls(
            row.id,
            row.name,
            row.prefix,
            row.key_hash,
            row.budget_usd,
            row.budget_period,
            row.rpm,
            row.tpm,
            tuple(row.models) if row.models else None,
            row.created_at,
            row.revoked_at,
        )

    def public(self) -> dict[str, Any]:
        """What the admin API and CLI show: everything but the hash."""
        data = asdict(self)
        del data["key_hash"]
        data["models"] = list(self.models) if self.models else None
        for name in ("created_at", "revoked_at"):
            data[name] = data[name].isoformat() if data[name] else None
        return data


@dataclass(frozen=True, slots=True)
class KeySpec:
    """What an admin asks for when creating a key; validated here, for the CLI and the API alike."""

    name: str
    budget_usd: float | None = None
    budget_period: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    models: tuple[str, ...] | None = None

    def problems(self) -> list[str]:
        found = []
        if not self.name.strip() or len(self.name) > 200:
            found.append("name must be 1-200 characters")
        if self.budget_usd is not None and not 0 <= self.budget_usd <= MAX_BUDGET_USD:  # NaN fails too
            found.append(f"budget_usd must be a number from 0 to {MAX_BUDGET_USD}")
        if self.budget_period is not None and self.budget_period not in PERIODS:
            found.append(f"budget_period must be one of {', '.join(PERIODS)}")
        for field in ("rpm", "tpm"):
            value = getattr(self, field)
            if value is not None and not 1 <= value <= MAX_RATE:
                found.append(f"{field} must be from 1 to {MAX_RATE}")
        if self.models is not None and (not self.models or not all(m.strip() for m in self.models)):
            # An empty allow-list must not quietly mean "every model".
            found.append("models must name at least one model (omit it to allow all)")
        return found


class KeyStore:
    """The `api_keys` table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = sessions(engine)

    async def create(self, spec: KeySpec) -> tuple[KeyRecord, str]:
        """A new key and its secret; the secret is returned once and never stored."""
        secret = new_secret()
        period = spec.budget_period or ("month" if spec.budget_usd is not None else None)
        row = ApiKey(
            id="key_" + uuid.uuid4().hex[:20],
            name=spec.name.strip(),
            prefix=secret[: len(KEY_PREFIX) + 6],
            key_hash=hash_key(secret),
            budget_usd=spec.budget_usd,
            budget_period=period,
            rpm=spec.rpm,
            tpm=spec.tpm,
            models=list(spec.models) if spec.models else None,
            created_at=datetime.now(UTC),
        )
        async with self._sessions() as session, session.begin():
            session.add(row)
        return KeyRecord.from_row(row), secret

    async def list(self, include_revoked: bool = True) -> list[KeyRecord]:
        query = select(ApiKey).order_by(ApiKey.created_at)
        if not include_revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
        async with self._sessions() as session:
            return [KeyRecord.from_row(r) for r in (await session.scalars(query)).all()]

    async def get(self, key_id: str) -> KeyRecord | None:
        async with self._sessions() as session:
            row = await session.get(ApiKey, key_id)
            return KeyRecord.from_row(row) if row else None

    async def by_hash(self, key_hash: str) -> KeyRecord | None:
        async with self._sessions() as session:
            row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
            return KeyRecord.from_row(row) if row else None

    async def revoke(self, key_id: str) -> bool:
        """Marks the key revoked; False if there is no such live key."""
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        return bool(getattr(result, "rowcount", 0))


class KeyUnavailable(Exception):
    """The key is not cached and the database cannot be read."""


class KeyCache:
    """Secret -> live KeyRecord (or None), for `ttl_s`; concurrent misses share one read."""

    def __init__(
        self,
        load: Callable[[str], Awaitable[KeyRecord | None]],
        ttl_s: float = 5.0,
        negative_ttl_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._clock = clock  # injectable so expiry is tested without sleeping
        self._ttl_s = ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._entries: dict[str, tuple[KeyRecord | None, float]] = {}
        self._pending: dict[str, asyncio.Future[KeyRecord | None]] = {}

    async def lookup(self, secret: str) -> KeyRecord | None:
        digest = hash_key(secret)
        entry = self._entries.get(digest)
        if entry is not None and entry[1] > self._clock():
            return self._live(entry[0], digest)
        pending = self._pending.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._fill(digest, entry))
            self._pending[digest] = pending
            pending.add_done_callback(lambda _f: self._pending.pop(digest, None))
        return self._live(await asyncio.shield(pending), digest)

    async def _fill(self, digest: str, stale: tuple[KeyRecord | None, float] | None) -> KeyRecord | None:
        try:
            record = await self._load(digest)
        except Exception as exc:
            if stale is not None:  # the database is away: the last answer beats refusing everyone
                log.warning("key lookup failed (%s); using the cached entry", type(exc).__name__)
                return stale[0]
            raise KeyUnavailable(str(exc)) from exc
        ttl = self._ttl_s if record is not None else self._negative_ttl_s
        if len(self._entries) > 100_000:
            self._entries.clear()
        self._entries[digest] = (record, self._clock() + ttl)
        return record

    @staticmethod
    def _live(record: KeyRecord | None, digest: str) -> KeyRecord | None:
        if record is None or record.revoked_at is not None:
            return None
        return record if hmac.compare_digest(record.key_hash, digest) else None

    def invalidate(self, key_id: str | None = None) -> None:
        if key_id is None:
            self._entries.clear()
            return
        for digest, (record, _) in list(self._entries.items()):
            if record is not None and record.id == key_id:
                del self._entries[digest]
