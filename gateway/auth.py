"""Who is calling: the admin key today, virtual keys once they exist.

With `GATEWAY_ADMIN_KEY` set every `/v1` call must present it as a bearer token;
without it the gateway is open, which is why the CLI then refuses to listen on
anything but loopback. Keys are compared in constant time.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from starlette.requests import Request

from gateway.errors import GatewayError
from gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller; `key_id` is None for the admin key or an open gateway."""

    key_id: str | None
    name: str
    is_admin: bool


OPEN = Principal(None, "anonymous", is_admin=False)
ADMIN = Principal(None, "admin", is_admin=True)


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate(request: Request, settings: Settings) -> Principal:
    if not settings.auth_enabled:
        return OPEN
    token = bearer_token(request)
    if token is None:
        raise GatewayError(
            401,
            "missing API key: send 'Authorization: Bearer <key>'",
            code="missing_api_key",
            headers={"www-authenticate": "Bearer"},
        )
    assert settings.admin_key is not None
    if hmac.compare_digest(token.encode(), settings.admin_key.get_secret_value().encode()):
        return ADMIN
    raise GatewayError(401, "invalid API key", code="invalid_api_key", headers={"www-authenticate": "Bearer"})
