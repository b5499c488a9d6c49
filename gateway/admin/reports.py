"""`/admin/api/*` aggregates behind the dashboard: totals, savings, deployments, keys, CSV export.

Every number the dashboard shows comes from one of these endpoints (or `/spend` and
`/ledger` in `gateway.admin.routes`, one request in `gateway.admin.requests`), so a
script sees exactly what a person sees.
Ranges are `start`/`end` (ISO 8601, default the last 7 days); filters `key`, `model`,
`provider`. Definitions (refused, error rate, percentiles, savings) are in
`gateway.ledger.aggregates` and `gateway.admin.savings`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.admin.common import admin_accounts, choice_param, filters, json_response, window
from gateway.admin.routes import ledger_filters, with_budget
from gateway.admin.savings import savings
from gateway.db.models import LedgerRow
from gateway.ledger import ledger_page
from gateway.ledger.aggregates import cache_savings, deployment_stats, key_usage, model_tokens, totals
from gateway.ledger.queries import BUCKETS, iso
from gateway.runtime import Runtime
from router_policies.stats import RateLimitState, ServerLoad

EXPORT_PAGE_ROWS = 1000


def _range(start: datetime, end: datetime) -> dict[str, Any]:
    return {"start": iso(start), "end": iso(end)}


async def summary(request: Request) -> Response:
    accounts = admin_accounts(request)
    start, end = window(request)
    data = await totals(accounts.engine, start, end, filters(request))
    return json_response({**_range(start, end), "filters": filters(request), "data": data})


async def savings_report(request: Request) -> Response:
    accounts = admin_accounts(request)
    runtime: Runtime = request.app.state.runtime
    start, end = window(request)
    bucket = choice_param(request, "bucket", BUCKETS, "day")
    rows = await model_tokens(accounts.engine, bucket, start, end, filters(request))
    hits = await cache_savings(accounts.engine, bucket, start, end, filters(request))
    return json_response({**_range(start, end), "bucket": bucket, **savings(rows, runtime.models, hits)})


def _rate_limit(reading: RateLimitState | None, now: float) -> dict[str, Any] | None:
    """The upstream's last `x-ratelimit-*` reading (this replica's or, with Redis, the newest of any)."""
    if reading is None:
        return None
    info = reading.info
    return {
        "remaining_fraction": reading.remaining_fraction(now),
        "remaining_requests": info.remaining_requests,
        "limit_requests": info.limit_requests,
        "remaining_tokens": info.remaining_tokens,
        "limit_tokens": info.limit_tokens,
        "age_s": round(now - reading.at, 3),
    }


def _server_load(load: ServerLoad | None, now: float) -> dict[str, Any] | None:
    if load is None:
        return None
    return {"waiting": load.waiting, "running": load.running, "kv_cache_usage": load.kv_cache_usage,
            "age_s": round(now - load.at, 3)}  # fmt: skip


def _live(runtime: Runtime) -> dict[str, dict[str, Any]]:
    """Each configured deployment's breaker, in-flight count, upstream rate limit and server load
    right now, from the router's state."""
    store = runtime.routing.store
    now = store.now()
    live: dict[str, dict[str, Any]] = {}
    for group in runtime.models.values():
        for d in group.deployments:
            if d.id in live:
                live[d.id]["models"].append(group.name)
                continue
            state = store.state(d.id)
            live[d.id] = {
                "provider": d.provider,
                "models": [group.name],
                "breaker": state.breaker.state(now),
                "breaker_reason": state.breaker.reason or None,
                "in_flight": state.total_in_flight,
                "rate_limit": _rate_limit(state.rate_limit, now),
                "server_load": _server_load(store.load(d.provider), now),
                "input_price_per_mtok": d.input_price_per_mtok,
                "output_price_per_mtok": d.output_price_per_mtok,
            }
    return live


async def deployments(request: Request) -> Response:
    accounts = admin_accounts(request)
    runtime: Runtime = request.app.state.runtime
    start, end = window(request)
    stats = await deployment_stats(accounts.engine, start, end, filters(request))
    live = _live(runtime)
    data = []
    for ident in sorted(set(live) | set(stats)):
        now = live.get(
            ident, {"provider": ident.partition("/")[0], "models": [], "breaker": None, "in_flight": None}
        )
        empty = {"requests": 0, "errors": 0, "error_rate": None, "ttft_p50_ms": None, "ttft_p95_ms": None,
                 "tokens_per_s": None}  # fmt: skip
        data.append({"deployment": ident, "configured": ident in live, **now, **stats.get(ident, empty)})
    return json_response({**_range(start, end), "data": data})


async def keys_usage(request: Request) -> Response:
    accounts = admin_accounts(request)
    start, end = window(request)
    usage = await key_usage(accounts.engine, start, end, filters(request))
    none = {"requests": 0, "cost_usd": 0.0, "refused": {"402": 0, "403": 0, "429": 0}}
    data = []
    for key in await accounts.store.list():
        if key.revoked_at is not None and key.id not in usage:
            continue
        data.append({**await with_budget(accounts, key), "usage": usage.get(key.id, none)})
    if None in usage:
        data.append({"id": None, "name": None, "budget": None, "usage": usage[None]})
    return json_response({**_range(start, end), "data": data})


_CSV_COLUMNS = [c.name for c in LedgerRow.__table__.columns if c.name != "attempt_log"]


def _csv_line(values: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue()


async def export_csv(request: Request) -> Response:
    """The ledger for a range and filters as CSV, newest first, read and sent a page at a time."""
    accounts = admin_accounts(request)
    start, end = window(request)
    wanted = ledger_filters(request)

    async def rows() -> AsyncIterator[str]:
        yield _csv_line(_CSV_COLUMNS)
        cursor: str | None = None
        while True:
            page = await ledger_page(accounts.engine, wanted, start, end, EXPORT_PAGE_ROWS, cursor)
            yield "".join(_csv_line([r[c] for c in _CSV_COLUMNS]) for r in page["data"])
            cursor = page["next_cursor"]
            if cursor is None:
                return

    stamp = f"{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}"
    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="ledger-{stamp}.csv"'},
    )


def report_routes() -> list[Route]:
    return [
        Route("/admin/api/summary", summary, methods=["GET"]),
        Route("/admin/api/savings", savings_report, methods=["GET"]),
        Route("/admin/api/deployments", deployments, methods=["GET"]),
        Route("/admin/api/key-usage", keys_usage, methods=["GET"]),
        Route("/admin/api/ledger.csv", export_csv, methods=["GET"]),
    ]
