"""`/admin/api/*`: virtual keys, spend reports, budget status and the ledger.

Only the admin key (or a dashboard session) gets in, see `gateway.admin.common`; the
dashboard's aggregates live in `gateway.admin.reports`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.accounts import Accounts
from gateway.admin.common import admin_accounts, choice_param, filters, json_response, time_param, window
from gateway.admin.requests import request_detail
from gateway.errors import GatewayError
from gateway.keys import MAX_BUDGET_USD, MAX_RATE, KeyRecord, KeySpec
from gateway.ledger import ledger_page, spend
from gateway.ledger.queries import BUCKETS, FILTERS, GROUPS, iso
from gateway.request_body import WHOLE, read_json_object


class KeyRequest(BaseModel):
    """Strict: no strings for numbers, no infinities; the bounds are `KeySpec`'s."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=200)
    budget_usd: float | None = Field(None, ge=0, le=MAX_BUDGET_USD, allow_inf_nan=False)
    budget_period: str | None = None
    rpm: Annotated[int, Field(ge=1, le=MAX_RATE), WHOLE] | None = None
    tpm: Annotated[int, Field(ge=1, le=MAX_RATE), WHOLE] | None = None
    models: list[str] | None = Field(None, min_length=1)


async def with_budget(accounts: Accounts, key: KeyRecord) -> dict[str, Any]:
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
    accounts = admin_accounts(request)
    body = await read_json_object(request, 65536)
    try:
        req = KeyRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise GatewayError(400, f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    models = tuple(req.models) if req.models is not None else None
    spec = KeySpec(req.name, req.budget_usd, req.budget_period, req.rpm, req.tpm, models)
    problems = spec.problems()
    if problems:
        raise GatewayError(400, "; ".join(problems))
    key, secret = await accounts.store.create(spec)
    return json_response({**key.public(), "key": secret}, status=201)


async def list_keys(request: Request) -> Response:
    accounts = admin_accounts(request)
    keys = await accounts.store.list()
    return json_response({"data": [await with_budget(accounts, k) for k in keys]})


async def get_key(request: Request) -> Response:
    accounts = admin_accounts(request)
    key = await accounts.store.get(request.path_params["key_id"])
    if key is None:
        raise GatewayError(404, "no such key", code="key_not_found")
    return json_response(await with_budget(accounts, key))


async def revoke_key(request: Request) -> Response:
    accounts = admin_accounts(request)
    key_id = request.path_params["key_id"]
    if not await accounts.revoke(key_id):
        raise GatewayError(404, f"no live key with id {key_id!r}", code="key_not_found")
    return json_response({"id": key_id, "revoked": True})


async def spend_report(request: Request) -> Response:
    accounts = admin_accounts(request)
    group_by = choice_param(request, "group_by", tuple(GROUPS), "model")
    bucket = choice_param(request, "bucket", BUCKETS, "day")
    start, end = window(request)
    data = await spend(accounts.engine, group_by, bucket, start, end, filters(request))
    return json_response(
        {"group_by": group_by, "bucket": bucket, "start": iso(start), "end": iso(end), "data": data}
    )


def ledger_filters(request: Request) -> dict[str, Any]:
    """The ledger's equality filters: key (`key` or `key_id`), model, provider, deployment, status."""
    params = request.query_params
    wanted: dict[str, Any] = {name: params[name] for name in FILTERS if params.get(name)}
    if params.get("key"):
        wanted["key_id"] = params["key"]
    if "status" in wanted:
        try:
            wanted["status"] = int(wanted["status"])
        except ValueError:
            raise GatewayError(400, "status must be an integer", param="status") from None
    return wanted


async def ledger(request: Request) -> Response:
    accounts = admin_accounts(request)
    params = request.query_params
    wanted = ledger_filters(request)
    try:
        limit = min(1000, max(1, int(params.get("limit", 100))))
        page = await ledger_page(
            accounts.engine,
            wanted,
            time_param(request, "start", None),
            time_param(request, "end", None),
            limit,
            params.get("cursor"),
        )
    except (ValueError, UnicodeDecodeError):
        raise GatewayError(400, "bad status, limit or cursor") from None
    return json_response(page)


def admin_routes() -> list[Route]:
    return [
        Route("/admin/api/keys", create_key, methods=["POST"]),
        Route("/admin/api/keys", list_keys, methods=["GET"]),
        Route("/admin/api/keys/{key_id}", get_key, methods=["GET"]),
        Route("/admin/api/keys/{key_id}", revoke_key, methods=["DELETE"]),
        Route("/admin/api/spend", spend_report, methods=["GET"]),
        Route("/admin/api/ledger", ledger, methods=["GET"]),
        Route("/admin/api/requests/{request_id}", request_detail, methods=["GET"]),
    ]
