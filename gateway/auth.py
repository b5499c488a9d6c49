"""Who is calling: the admin key, or a virtual key.

With `GATEWAY_ADMIN_KEY` set every `/v1` call must present it or a live virtual key as
a bearer token; without it the gateway is open (which is why the CLI then refuses to
listen on anything but loopback), though a virtual key presented to an open gateway
is still recognised so its limits apply. Virtual keys are resolved before the route
runs (`gateway.accounts.AccountsMiddleware`, from a cache, constant-time compare) and
left in `request.state.virtual_key`, so this stays synchronous and never touches the
database. The admin key is compared in constant time.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from gateway.errors import GatewayError
from gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller; `key_id` is None for the admin key or an open gateway."""

    key_id: str | None
    name: str
    is_admin: bool
    key: Any = None  # the virtual key's record (gateway.keys.KeyRecord), for limits


OPEN = Principal(None, "anonymous", is_admin=False)
ADMIN = Principal(None, "admin", is_admin=True)


def bearer_token(request: Request) -> str | None:
    """The key from `Authorization: Bearer …`, or from `x-api-key` (what the Anthropic SDK sends)."""
    header = request.headers.get("authorization")
    if not header:
        key = request.headers.get("x-api-key", "").strip()
        return key or None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _virtual(request: Request) -> Principal | None:
    key = getattr(request.state, "virtual_key", None)
    return Principal(key.id, key.name, is_admin=False, key=key) if key is not None else None


def authenticate(request: Request, settings: Settings) -> Principal:
    if not settings.auth_enabled:
        return _virtual(request) or OPEN
    token = bearer_token(request)
    if token is None:
        raise GatewayError(
            401,
            "missing API key: send 'Authorization: Bearer <key>' (or 'x-api-key: <key>')",
            code="missing_api_key",
            headers={"www-authenticate": "Bearer"},
        )
    assert settings.admin_key is not None
    if hmac.compare_digest(token.encode(), settings.admin_key.get_secret_value().encode()):
        return ADMIN
    virtual = _virtual(request)
    if virtual is not None:
        return virtual
    raise GatewayError(
        401, "invalid or revoked API key", code="invalid_api_key", headers={"www-authenticate": "Bearer"}
    )
