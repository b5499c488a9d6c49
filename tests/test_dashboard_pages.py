"""The dashboard over HTTP: login, session cookie, CSRF, logout, the open-gateway banner, assets."""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx

from tests.harness import database_url
from tests.ledger_seed import BOTH_DAYS, CONFIG, seed

ADMIN = "admin-secret-for-the-dashboard"


def _gateway(gateway: Any, fake: Any, tmp_path: Any, admin_key: str | None = ADMIN) -> httpx.Client:
    db, _ = database_url("sqlite", tmp_path)
    seed(db)
    gw = gateway(
        CONFIG.format(url=fake().url), database_url=db, admin_key=admin_key, ledger_spool_dir=tmp_path / "s"
    )
    return httpx.Client(base_url=gw.url, timeout=30, follow_redirects=False)


def _hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert found, f"no hidden {name} field"
    return found.group(1)


def _login(browser: httpx.Client, key: str) -> httpx.Response:
    form = browser.get("/admin/login")
    return browser.post("/admin/login", data={"csrf": _hidden(form.text, "csrf"), "key": key})


def test_login_sets_a_strict_http_only_session_and_never_shows_the_key(fake, gateway, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    browser = _gateway(gateway, fake, tmp_path)
    first = browser.get("/admin")
    assert first.status_code == 303 and first.headers["location"] == "/admin/login"
    form = browser.get("/admin/login")
    assert form.status_code == 200 and 'type="password"' in form.text and "<label" in form.text
    assert "HttpOnly" in form.headers["set-cookie"] and "SameSite=strict" in form.headers["set-cookie"]
    done = browser.post("/admin/login", data={"csrf": _hidden(form.text, "csrf"), "key": ADMIN})
    assert done.status_code == 303 and done.headers["location"] == "/admin"
    cookie = done.headers["set-cookie"]
    assert cookie.startswith("gw_session=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Max-Age=43200" in cookie and "Path=/admin" in cookie
    page = browser.get("/admin")
    assert page.status_code == 200 and "Totals" in page.text and "Log out" in page.text
    assert "Authentication is off" not in page.text
    assert (
        page.headers["cache-control"] == "no-store"
        and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    )
    summary = browser.get("/admin/api/summary", params=BOTH_DAYS)  # the session stands in for the key
    assert summary.status_code == 200 and summary.json()["data"]["requests"] == 6
    everything = [form, done, page, summary, browser.get("/admin/requests/gen-2")]
    for response in everything:
        assert (
            ADMIN not in response.text
            and ADMIN not in str(response.headers)
            and ADMIN not in str(response.url)
        )
    assert ADMIN not in caplog.text


def test_virtual_keys_wrong_keys_and_forged_forms_cannot_log_in(fake, gateway, tmp_path):
    browser = _gateway(gateway, fake, tmp_path)
    admin = httpx.Client(base_url=str(browser.base_url), headers={"authorization": f"Bearer {ADMIN}"})
    virtual = admin.post("/admin/api/keys", json={"name": "app"}).json()["key"]
    for key in (virtual, "wrong", ""):
        refused = _login(browser, key)
        assert refused.status_code == 401 and "not the admin key" in refused.text
        assert "gw_session" not in refused.headers.get("set-cookie", "")
        assert key not in refused.text or key == ""
    forged = httpx.post(f"{browser.base_url}/admin/login", data={"csrf": "guess", "key": ADMIN})
    assert forged.status_code == 403 and "gw_session" not in forged.headers.get("set-cookie", "")
    browser.cookies.set("gw_session", "forged.value", path="/admin")
    assert browser.get("/admin").status_code == 303
    assert browser.get("/admin/api/summary").status_code == 401


def test_session_posts_need_the_csrf_token_and_logout_ends_the_session(fake, gateway, tmp_path):
    browser = _gateway(gateway, fake, tmp_path)
    _login(browser, ADMIN)
    page = browser.get("/admin").text
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)
    no_token = browser.post("/admin/api/keys", json={"name": "x"})
    assert no_token.status_code == 403 and no_token.json()["error"]["code"] == "csrf_failed"
    assert (
        browser.post("/admin/api/keys", json={"name": "x"}, headers={"x-csrf-token": "nope"}).status_code
        == 403
    )
    made = browser.post("/admin/api/keys", json={"name": "x"}, headers={"x-csrf-token": token})
    assert made.status_code == 201
    assert browser.post("/admin/logout", data={"csrf": "nope"}).status_code == 403
    assert browser.get("/admin").status_code == 200  # still signed in
    out = browser.post("/admin/logout", data={"csrf": _hidden(page, "csrf")})
    assert out.status_code == 303 and out.headers["location"] == "/admin/login"
    assert 'gw_session=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    assert browser.get("/admin").status_code == 303
    assert browser.get("/admin/api/summary").status_code == 401


def test_open_gateway_opens_the_dashboard_with_a_banner(fake, gateway, tmp_path):
    browser = _gateway(gateway, fake, tmp_path, admin_key=None)
    page = browser.get("/admin")
    assert page.status_code == 200 and "Authentication is off" in page.text and "Log out" not in page.text
    assert browser.get("/admin/login").headers["location"] == "/admin"
    assert browser.get("/admin/api/summary", params=BOTH_DAYS).json()["data"]["requests"] == 6
    script = browser.get("/admin/assets/dashboard.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert browser.get("/admin/vendor/chart.umd.min.js").status_code == 200  # installed by make setup
    assert browser.get("/admin/assets/nope.js").status_code == 404


def test_without_the_chart_library_the_page_says_so(fake, gateway, tmp_path, monkeypatch):
    from gateway.dashboard import pages

    monkeypatch.setattr(pages, "CHART_DIR", tmp_path / "not-installed")
    browser = _gateway(gateway, fake, tmp_path, admin_key=None)
    page = browser.get("/admin").text
    assert "chart library is missing" in page and "/admin/vendor/" not in page
    assert 'id="total-cost"' in page  # everything else is still there
