"""Dashboard sessions: a signed, expiring cookie that stands in for the admin key in a browser.

The browser posts the admin key once, to the login form; the gateway answers with an
HTTP-only, SameSite=Strict cookie signed by a secret derived from the admin key with
HMAC, so every replica that shares the key accepts every other's sessions, and changing
the key ends them all. The key itself never goes back to the browser, into a URL or a log.

CSRF: the login form carries a random token that must match a short-lived cookie
(double submit); once logged in, every POST (form or admin API) must carry a token bound
to the session (`csrf_token`), in a form field or the `x-csrf-token` header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from gateway.settings import Settings

SESSION_COOKIE = "gw_session"
LOGIN_CSRF_COOKIE = "gw_login_csrf"
SESSION_TTL_S = 12 * 3600
COOKIE_PATH = "/admin"


def _secret(settings: Settings) -> bytes:
    assert settings.admin_key is not None
    key = settings.admin_key.get_secret_value().encode()
    return hmac.new(key, b"gateway dashboard session v1", hashlib.sha256).digest()


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_secret(settings), salt="gateway-dashboard-session")


def is_admin_key(settings: Settings, candidate: str) -> bool:
    """Only the admin key logs in; a virtual key, however valid for /v1, does not."""
    if not settings.auth_enabled or not candidate:
        return False
    assert settings.admin_key is not None
    return hmac.compare_digest(candidate.encode(), settings.admin_key.get_secret_value().encode())


def session_nonce(request: Request, settings: Settings) -> str | None:
    """The nonce of a valid, unexpired session cookie on this request, else None."""
    if not settings.auth_enabled:
        return None
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        data = _serializer(settings).loads(cookie, max_age=SESSION_TTL_S)
    except BadSignature:  # also SignatureExpired
        return None
    nonce = data.get("n") if isinstance(data, dict) else None
    return nonce if isinstance(nonce, str) else None


def csrf_token(settings: Settings, nonce: str) -> str:
    return hmac.new(_secret(settings), b"csrf:" + nonce.encode(), hashlib.sha256).hexdigest()


def csrf_ok(settings: Settings, nonce: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(settings, nonce), presented or "")


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def start_session(response: Response, request: Request, settings: Settings) -> None:
    nonce = secrets.token_urlsafe(16)
    _cookie(response, request, SESSION_COOKIE, _serializer(settings).dumps({"n": nonce}), SESSION_TTL_S)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=COOKIE_PATH)


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


def login_csrf(request: Request) -> str:
    """The login form's CSRF token: the one already in its cookie, or a new one."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)


def set_login_csrf(response: Response, request: Request, token: str) -> None:
    _cookie(response, request, LOGIN_CSRF_COOKIE, token, 3600)


def login_csrf_ok(request: Request, presented: str | None) -> bool:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    return bool(expected and presented) and hmac.compare_digest(expected or "", presented or "")
