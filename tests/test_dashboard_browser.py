"""The dashboard in real headless Chromium (Debian's), against a real gateway on a seeded ledger.

Signs in with the keyboard, checks the totals on screen against the ledger, changes the
range, follows a request to its attempts, tabs to a request and opens it with Enter,
checks that every control has a label, that the page fits 390 px, that it refreshes by
itself without reloading, that times are in the browser's zone, and that the console
stays clean. Screenshots go to the test's tmp directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.browser import start_chrome
from tests.harness import database_url, wait_for
from tests.ledger_seed import CONFIG, insert, row, seed

ADMIN = "admin-secret-for-the-browser"
ZONE = "America/New_York"


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    url, drop = database_url(request.param, tmp_path)
    yield url
    drop()


@pytest.fixture
def chrome(tmp_path: Any) -> Iterator[Any]:
    driver = start_chrome(tmp_path / "chrome-profile")
    driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ZONE})
    try:
        yield driver
    finally:
        driver.quit()


def loaded(driver: Any, more_than: int = 0) -> int:
    """Wait until the page has rendered data from the API more than `more_than` times."""

    def count() -> int | None:
        value = driver.execute_script("return Number(document.body.dataset.loaded || 0)")
        return value if value > more_than else None

    return int(wait_for(count, timeout_s=20))


def text(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def value(driver: Any, css: str) -> str:
    return str(driver.execute_script("return document.querySelector(arguments[0]).dataset.value", css))


def screenshot(driver: Any, path: Any, width: int) -> None:
    """The whole page at `width` CSS pixels, however tall it is."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    driver.save_screenshot(str(path))


def local_time(iso: datetime) -> str:
    """How en-US Chromium writes a time with dateStyle short, timeStyle medium, in ZONE."""
    t = iso.astimezone(ZoneInfo(ZONE))
    return f"{t.month}/{t.day}/{t:%y}, {t.hour % 12 or 12}:{t:%M:%S} {'AM' if t.hour < 12 else 'PM'}"


def test_dashboard_in_chromium(db, chrome, fake, gateway, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=26)
    seed(db, t0=t0)  # gen-1..gen-5 26 h ago; gen-6 2 h ago
    config = CONFIG.format(url=fake().url) + "prompt_log:\n  enabled: true\n"
    gw = gateway(config, database_url=db, admin_key=ADMIN, ledger_spool_dir=tmp_path / "s")
    driver = chrome

    # Sign in with the keyboard alone: the key field has focus; Enter submits.
    driver.get(f"{gw.url}/admin")
    assert driver.current_url.endswith("/admin/login")
    driver.save_screenshot(str(tmp_path / "login.png"))
    active = driver.switch_to.active_element
    assert active.get_attribute("id") == "key"
    active.send_keys(ADMIN, Keys.ENTER)
    wait_for(lambda: driver.current_url.endswith("/admin"), timeout_s=20)
    loaded(driver)
    assert "gw_session" not in driver.execute_script("return document.cookie")  # HTTP-only

    # Last 24 hours (the default): only gen-6 — the ledger's $0.003 and one request.
    assert (value(driver, "#total-cost"), text(driver, "#total-cost")) == ("0.003", "$0.0030")
    assert (value(driver, "#total-requests"), value(driver, "#total-refused")) == ("1", "0")
    assert text(driver, "#tz") == ZONE
    assert local_time(t0 + timedelta(days=1)) in text(driver, "#recent-body")

    # Last 7 days: all six rows.
    shown = loaded(driver)
    Select(driver.find_element(By.ID, "range")).select_by_value("7d")
    loaded(driver, shown)
    assert (value(driver, "#total-cost"), text(driver, "#total-cost")) == ("0.017", "$0.0170")
    assert (value(driver, "#total-requests"), value(driver, "#total-refused")) == ("6", "2")
    assert value(driver, "#total-rag") == "1"  # gen-1 went through retrieval
    assert value(driver, "#total-error-rate") == "0.25"  # one error in the 4 requests not refused
    assert value(driver, "#saved-dearest") == "0.01"  # 0.027 at p2's prices, 0.017 paid
    assert "team-a" in text(driver, "#keys-body") and "1 / 0 / 1" in text(driver, "#keys-body")
    assert "closed" in text(driver, "#deployments-body")
    assert "range=7d" in driver.current_url
    screenshot(driver, tmp_path / "overview-1280.png", 1280)
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # Auto-refresh: a new ledger row shows up without a reload.
    driver.execute_script("window.notReloaded = true")
    insert(db, [row("gen-live", datetime.now(UTC) - timedelta(seconds=5), None, "p2/m1-up", cost_usd=0.00009,
                    input_tokens=10, output_tokens=10, ttft_ms=5.0, latency_ms=50.0)])  # fmt: skip
    wait_for(lambda: value(driver, "#total-requests") == "7", timeout_s=30)
    assert driver.execute_script("return window.notReloaded") is True

    # Click through to a request with a failover: its two attempts.
    driver.find_element(By.CSS_SELECTOR, "a[aria-label^='Request gen-2 ']").click()
    wait_for(lambda: "/admin/requests/gen-2" in driver.current_url, timeout_s=20)
    loaded(driver)
    attempts = driver.find_elements(By.CSS_SELECTOR, "#attempts-body tr")
    assert [a.find_elements(By.TAG_NAME, "td")[2].text for a in attempts] == ["server_error", "ok"]
    assert "upstream said 500" in text(driver, "#attempts-body")
    assert "$0.0120" in text(driver, "#fields")
    driver.save_screenshot(str(tmp_path / "request-1280.png"))

    # Keyboard only: the skip link comes first; Tab reaches a request link; Enter opens it.
    driver.get(f"{gw.url}/admin?range=7d")
    loaded(driver)
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    assert driver.switch_to.active_element.get_attribute("class") == "skip"
    for _ in range(80):
        focused = driver.switch_to.active_element
        if focused.get_attribute("aria-label") and "Request gen-" in focused.get_attribute("aria-label"):
            break
        focused.send_keys(Keys.TAB)
    else:
        pytest.fail("Tab never reached a request link")
    focused.send_keys(Keys.ENTER)
    wait_for(lambda: "/admin/requests/gen-" in driver.current_url, timeout_s=20)
    loaded(driver)

    # A real request, its prompt kept by prompt monitoring, shown on its page.
    admin = httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {ADMIN}"}, timeout=30)
    message = {"role": "user", "content": "hello from the browser test"}
    request_id = admin.post("/v1/chat/completions", json={"model": "m1", "messages": [message]}).json()["id"]
    wait_for(
        lambda: (
            (r := admin.get(f"/admin/api/requests/{request_id}")).status_code == 200 and r.json()["prompt"]
        )
    )
    driver.get(f"{gw.url}/admin/requests/{request_id}")
    loaded(driver)
    assert "hello from the browser test" in text(driver, "#prompt")
    assert [row.text.split()[2] for row in driver.find_elements(By.CSS_SELECTOR, "#attempts-body tr")] == [
        "ok"
    ]
    screenshot(driver, tmp_path / "request-prompt-1280.png", 1280)
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # Every control is labelled.
    driver.get(f"{gw.url}/admin")
    loaded(driver)
    unlabelled = driver.execute_script(
        """return [...document.querySelectorAll('input:not([type=hidden]), select, button, a[href]')]
             .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
             .map(e => e.outerHTML)"""
    )
    assert unlabelled == []

    # A 390-px-wide phone: nothing wider than the screen.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
    )
    driver.get(f"{gw.url}/admin?range=7d")
    loaded(driver)
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 390
    screenshot(driver, tmp_path / "overview-390.png", 390)
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    print(f"screenshots in {tmp_path}")
