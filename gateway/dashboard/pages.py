"""`/admin`: the dashboard's pages, login and logout, and its static assets.

The pages are Jinja2 templates that lay out controls and empty tables; the browser fills
them from the admin JSON API (`/admin/api/...`), so the API stays the one source of
numbers. Chart.js comes from the npm registry into `node_modules/` beside this file
(`make setup`), is served from here, and is optional: without it the page says so and
shows everything but the charts. No page or response ever carries the admin key.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from gateway.dashboard.session import (
    csrf_ok,
    csrf_token,
    end_session,
    is_admin_key,
    login_csrf,
    login_csrf_ok,
    session_nonce,
    set_login_csrf,
    start_session,
)
from gateway.runtime import Runtime

log = logging.getLogger("gateway.dashboard")

HERE = Path(__file__).parent
CHART_DIR = HERE / "node_modules" / "chart.js" / "dist"
CHART_FILE = "chart.umd.min.js"
MAX_FORM_BYTES = 8192
HEADERS = {
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
}

templates = Jinja2Templates(directory=str(HERE / "templates"))


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    settings = _runtime(request).settings
    nonce = session_nonce(request, settings)
    base = {
        "auth_off": not settings.auth_enabled,
        "csrf": csrf_token(settings, nonce) if nonce else "",
        "chart_ok": (CHART_DIR / CHART_FILE).is_file(),
    }
    return templates.TemplateResponse(request, name, base | context, status_code=status, headers=HEADERS)


def _logged_in(request: Request) -> bool:
    settings = _runtime(request).settings
    return not settings.auth_enabled or session_nonce(request, settings) is not None


def _to_login() -> Response:
    return RedirectResponse("/admin/login", status_code=303, headers=HEADERS)


async def overview(request: Request) -> Response:
    if not _logged_in(request):
        return _to_login()
    runtime = _runtime(request)
    keys = await runtime.accounts.store.list()
    return _page(
        request,
        "overview.html",
        {
            "models": sorted(runtime.models),
            "providers": sorted(runtime.providers),
            "keys": [{"id": k.id, "name": k.name, "revoked": k.revoked_at is not None} for k in keys],
        },
    )


async def request_page(request: Request) -> Response:
    if not _logged_in(request):
        return _to_login()
    return _page(request, "request.html", {"request_id": request.path_params["request_id"]})


async def _form(request: Request) -> dict[str, str]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def _login_form(request: Request, error: str | None, status: int = 200) -> Response:
    token = login_csrf(request)
    response = _page(request, "login.html", {"error": error, "login_csrf": token}, status)
    set_login_csrf(response, request, token)
    return response


async def login_page(request: Request) -> Response:
    if _logged_in(request):
        return RedirectResponse("/admin", status_code=303, headers=HEADERS)
    return _login_form(request, None)


async def login(request: Request) -> Response:
    settings = _runtime(request).settings
    if not settings.auth_enabled:
        return RedirectResponse("/admin", status_code=303, headers=HEADERS)
    form = await _form(request)
    if not login_csrf_ok(request, form.get("csrf")):
        return _login_form(request, "The form expired. Please try again.", 403)
    if not is_admin_key(settings, form.get("key", "").strip()):
        log.warning("dashboard: failed login from %s", request.client.host if request.client else "?")
        return _login_form(request, "That is not the admin key. Virtual keys cannot sign in here.", 401)
    response = RedirectResponse("/admin", status_code=303, headers=HEADERS)
    start_session(response, request, settings)
    return response


async def logout(request: Request) -> Response:
    settings = _runtime(request).settings
    nonce = session_nonce(request, settings)
    form = await _form(request)
    if nonce is not None and not csrf_ok(settings, nonce, form.get("csrf")):
        return Response("missing or wrong CSRF token", status_code=403, headers=HEADERS)
    response = _to_login()
    end_session(response)
    return response


def dashboard_routes() -> list[BaseRoute]:
    return [
        Route("/admin", overview, methods=["GET"]),
        Route("/admin/", overview, methods=["GET"]),
        Route("/admin/requests/{request_id}", request_page, methods=["GET"]),
        Route("/admin/login", login_page, methods=["GET"]),
        Route("/admin/login", login, methods=["POST"]),
        Route("/admin/logout", logout, methods=["POST"]),
        Mount("/admin/assets", StaticFiles(directory=str(HERE / "static")), name="dashboard-assets"),
        Mount(
            "/admin/vendor", StaticFiles(directory=str(CHART_DIR), check_dir=False), name="dashboard-vendor"
        ),
    ]
