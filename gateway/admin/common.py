"""What every admin API handler shares: who may call it, and reading its query parameters.

The admin key as a bearer token gets in; so does a dashboard session cookie, and then
anything but a GET must also carry the session's CSRF token in `x-csrf-token`. A
virtual key gets 403. On an open gateway (no admin key, loopback only) the API is open.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.accounts import Accounts
from gateway.auth import authenticate, bearer_token
from gateway.dashboard.session import csrf_ok, session_nonce
from gateway.errors import GatewayError
from gateway.ledger.queries import DIMENSIONS

MAX_RANGE = timedelta(days=400)
SAFE_METHODS = ("GET", "HEAD")


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _session_admin(request: Request) -> bool:
    settings = request.app.state.runtime.settings
    nonce = session_nonce(request, settings)
    if nonce is None:
        return False
    if request.method not in SAFE_METHODS and not csrf_ok(
        settings, nonce, request.headers.get("x-csrf-token")
    ):
        raise GatewayError(403, "missing or wrong x-csrf-token for this session", code="csrf_failed")
    return True


def admin_accounts(request: Request) -> Accounts:
    """The accounts (keys, limits, ledger engine), once the caller is known to be the admin."""
    runtime = request.app.state.runtime
    if bearer_token(request) is None and _session_admin(request):
        accounts: Accounts = runtime.accounts
        return accounts
    principal = authenticate(request, runtime.settings)
    if not principal.is_admin and (runtime.settings.auth_enabled or principal.key_id is not None):
        raise GatewayError(403, "the admin API needs the admin key", code="admin_only")
    accounts = runtime.accounts
    return accounts


def time_param(request: Request, name: str, default: datetime | None) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return default
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise GatewayError(400, f"{name} must be an ISO 8601 time, got {raw!r}", param=name) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def choice_param(request: Request, name: str, options: Any, default: str) -> str:
    value = request.query_params.get(name, default)
    if value not in options:
        raise GatewayError(400, f"{name} must be one of {', '.join(options)}", param=name)
    return value


def window(request: Request, default: timedelta = timedelta(days=7)) -> tuple[datetime, datetime]:
    """[start, end) from `start`/`end` (ISO 8601), by default the last `default` up to now."""
    now = datetime.now(UTC)
    end = time_param(request, "end", now) or now
    start = time_param(request, "start", end - default) or end
    if end <= start or end - start > MAX_RANGE:
        raise GatewayError(400, "need start < end, at most 400 days apart", param="start")
    return start, end


def filters(request: Request) -> dict[str, str]:
    """Equality filters on the ledger: `key` (or `key_id`), `model`, `provider`."""
    params = request.query_params
    out = {name: params[name] for name in DIMENSIONS if params.get(name)}
    if params.get("key"):
        out["key_id"] = params["key"]
    return out
