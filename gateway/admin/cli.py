"""`gateway keys create|list|revoke` and `gateway db upgrade`: the admin API's offline twins.

They talk to the database named by DATABASE_URL directly (migrating it first, so a
fresh install works), and announce revocations on Redis when REDIS_URL is set so
running replicas drop the key from their caches at once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from gateway.keys import PERIODS, KeyRecord, KeySpec, KeyStore
from gateway.settings import Settings


def _models(value: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in value.split(",") if m.strip())


def add_commands(commands: Any) -> None:
    keys = commands.add_parser("keys", help="manage virtual keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--name", required=True)
    create.add_argument("--budget-usd", type=float, default=None)
    create.add_argument("--budget-period", choices=PERIODS, default=None)
    create.add_argument("--rpm", type=int, default=None)
    create.add_argument("--tpm", type=int, default=None)
    create.add_argument("--models", type=_models, default=None, help="comma-separated allow-list")
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=lambda args: asyncio.run(_create(args)))
    listing = keys.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=lambda args: asyncio.run(_list(args)))
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=lambda args: asyncio.run(_revoke(args)))
    db = commands.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("upgrade", help="apply migrations up to the latest").set_defaults(handler=_upgrade)


def _upgrade(args: argparse.Namespace) -> int:
    from gateway.db import upgrade

    settings = Settings()
    upgrade(settings.database_url)
    print("database is at the latest revision")
    return 0


async def _with_store(action: Any) -> int:
    from gateway.db import make_engine, upgrade

    settings = Settings()
    await asyncio.to_thread(upgrade, settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        return int(await action(KeyStore(engine), settings))
    finally:
        await engine.dispose()


async def _create(args: argparse.Namespace) -> int:
    spec = KeySpec(args.name, args.budget_usd, args.budget_period, args.rpm, args.tpm, args.models)
    if spec.problems():
        print("gateway: " + "; ".join(spec.problems()), file=sys.stderr)
        return 2

    async def action(store: KeyStore, _settings: Settings) -> int:
        key, secret = await store.create(spec)
        if args.json:
            print(orjson.dumps({**key.public(), "key": secret}).decode())
        else:
            print(f"created key {key.id} ({key.name}); it is shown only once:\n{secret}")
        return 0

    return await _with_store(action)


def _row(key: KeyRecord) -> str:
    budget = f"${key.budget_usd:g}/{key.budget_period}" if key.budget_usd is not None else "-"
    state = "revoked" if key.revoked_at else "live"
    models = ",".join(key.models) if key.models else "*"
    return f"{key.id}  {key.prefix}…  {key.name:<20} {state:<7} budget={budget} rpm={key.rpm or '-'} tpm={key.tpm or '-'} models={models}"


async def _list(args: argparse.Namespace) -> int:
    async def action(store: KeyStore, _settings: Settings) -> int:
        keys = await store.list()
        if args.json:
            print(orjson.dumps([k.public() for k in keys]).decode())
        else:
            for key in keys:
                print(_row(key))
        return 0

    return await _with_store(action)


async def _revoke(args: argparse.Namespace) -> int:
    async def action(store: KeyStore, settings: Settings) -> int:
        if not await store.revoke(args.key_id):
            print(f"gateway: no live key with id {args.key_id}", file=sys.stderr)
            return 1
        if settings.redis_url:
            await _announce(settings.redis_url, args.key_id)
        print(f"revoked {args.key_id}")
        return 0

    return await _with_store(action)


async def _announce(url: str, key_id: str) -> None:
    import redis.asyncio as aioredis

    from gateway.accounts import REVOKED_CHANNEL

    client = aioredis.from_url(url, socket_connect_timeout=2)
    try:
        await client.publish(REVOKED_CHANNEL, key_id)
    except Exception as exc:
        print(
            f"gateway: revoked, but could not tell running replicas ({exc}); they drop it within the cache TTL",
            file=sys.stderr,
        )
    finally:
        await client.aclose()
