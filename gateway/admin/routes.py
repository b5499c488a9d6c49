"""`/admin/api/*`: virtual keys, spend reports, budget status and the ledger.

Only the admin key gets in (a virtual key gets 403); on an open gateway — no admin
key, loopback only — the admin API is open too, like everything else there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.accounts import Accounts
from gateway.auth import authenticate
from gateway.errors import GatewayError
from gateway.keys import KeyRecord, KeySpec
from gateway.ledger import ledger_page, spend
from gateway.ledger.queries import BUCKETS, FILTERS, GROUPS, iso
from gateway.request_body import read_json_object

MAX_RANGE = timedelta(days=400)


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _accounts(request: Request) -> Accounts:
    runtime = request.app.state.runtime
    principal = authenticate(request, runtime.settings)
    if not principal.is_admin and (runtime.settings.auth_enabled or principal.key_id is not None):
        raise GatewayError(403, "the admin API needs the admin key", code="admin_only")
    accounts: Accounts = runtime.accounts
    return accounts


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    budget_usd: float | None = Field(None, ge=0)
    budget_period: str | None = None
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    models: list[str] | None = None


async def _with_budget(accounts: Accounts, key: KeyRecord) -> dict[str, Any]:
    data = key.public()
    if key.budget_usd is None:
        data["budget"] = None
        return data
    spent, resets = await accounts.limiter.spent(key)
    data["budget"] = {
        "budget_usd": key.budget_usd,
        "period": key.budget_period,
        "spent_usd": round(spent, 10),
        "remaining_usd": round(max(0.0, key.budget_usd - spent), 10),
        "resets_at": iso(resets),
    }
    return data


async def create_key(request: Request) -> Response:
    accounts = _accounts(request)
    body = await read_json_object(request, 65536)
    try:
        req = KeyRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise GatewayError(400, f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    spec = KeySpec(
        req.name, req.budget_usd, req.budget_period, req.rpm, req.tpm, tuple(req.models or ()) or None
    )
    problems = spec.problems()
    if problems:
        raise GatewayError(400, "; ".join(problems))
    key, secret = await accounts.store.create(spec)
    return _json({**key.public(), "key": secret}, status=201)


async def list_keys(request: Request) -> Response:
    accounts = _accounts(request)
    keys = await accounts.store.list()
    return _json({"data": [await _with_budget(accounts, k) for k in keys]})


async def get_key(request: Request) -> Response:
    accounts = _accounts(request)
    key = await accounts.store.get(request.path_params["key_id"])
    if key is None:
        raise GatewayError(404, "no such key", code="key_not_found")
    return _json(await _with_budget(accounts, key))


async def revoke_key(request: Request) -> Response:
    accounts = _accounts(request)
    key_id = request.path_params["key_id"]
    if not await accounts.revoke(key_id):
        raise GatewayError(404, f"no live key with id {key_id!r}", code="key_not_found")
    return _json({"id": key_id, "revoked": True})


def _time(request: Request, name: str, default: datetime | None) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return default
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise GatewayError(400, f"{name} must be an ISO 8601 time, got {raw!r}", param=name) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _choice(request: Request, name: str, options: Any, default: str) -> str:
    value = request.query_params.get(name, default)
    if value not in options:
        raise GatewayError(400, f"{name} must be one of {', '.join(options)}", param=name)
    return value


async def spend_report(request: Request) -> Response:
    accounts = _accounts(request)
    group_by = _choice(request, "group_by", tuple(GROUPS), "model")
    bucket = _choice(request, "bucket", BUCKETS, "day")
    now = datetime.now(UTC)
    end = _time(request, "end", now) or now
    start = _time(request, "start", end - timedelta(days=7)) or end
    if end <= start or end - start > MAX_RANGE:
        raise GatewayError(400, "need start < end, at most 400 days apart", param="start")
    data = await spend(accounts.engine, group_by, bucket, start, end)
    return _json({"group_by": group_by, "bucket": bucket, "start": iso(start), "end": iso(end), "data": data})


async def ledger(request: Request) -> Response:
    accounts = _accounts(request)
    params = request.query_params
    filters: dict[str, Any] = {name: params[name] for name in FILTERS if params.get(name)}
    if "key" in params:
        filters["key_id"] = params["key"]
    try:
        if "status" in filters:
            filters["status"] = int(filters["status"])
        limit = min(1000, max(1, int(params.get("limit", 100))))
        page = await ledger_page(
            accounts.engine,
            filters,
            _time(request, "start", None),
            _time(request, "end", None),
            limit,
            params.get("cursor"),
        )
    except (ValueError, UnicodeDecodeError):
        raise GatewayError(400, "bad status, limit or cursor") from None
    return _json(page)


def admin_routes() -> list[Route]:
    from gateway.admin.requests import request_detail  # built on this module's helpers

    return [
        Route("/admin/api/keys", create_key, methods=["POST"]),
        Route("/admin/api/keys", list_keys, methods=["GET"]),
        Route("/admin/api/keys/{key_id}", get_key, methods=["GET"]),
        Route("/admin/api/keys/{key_id}", revoke_key, methods=["DELETE"]),
        Route("/admin/api/spend", spend_report, methods=["GET"]),
        Route("/admin/api/ledger", ledger, methods=["GET"]),
        Route("/admin/api/requests/{request_id}", request_detail, methods=["GET"]),
    ]
