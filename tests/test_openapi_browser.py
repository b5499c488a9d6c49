"""`/docs` in real headless Chromium (Debian's): Swagger UI renders every operation under the strict CSP.

The page's only scripts are the gateway's own files; a CSP violation (an inline script
or style Swagger UI would need, an asset from another host) shows as a console error.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import config_for, service_missing, wait_for
from tests.test_dashboard_browser import FLAGS


@pytest.fixture
def chrome(tmp_path: Any) -> Iterator[Any]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        service_missing("chromium and chromedriver (make browser)")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chrome-profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_swagger_ui_renders_the_whole_api_offline_under_the_csp(fake, gateway, chrome):
    gw = gateway(config_for({"a": fake().url}), admin_key="admin-secret")
    chrome.get(f"{gw.url}/docs")
    count = "return document.querySelectorAll('.opblock').length"
    rendered = wait_for(lambda: chrome.execute_script(count), timeout_s=30, interval_s=0.2)
    paths = chrome.execute_script(
        "return [...document.querySelectorAll('.opblock-summary-path')].map(e => e.dataset.path)"
    )
    assert rendered >= 25 and "/v1/chat/completions" in paths and "/admin/api/keys/{key_id}" in paths
    assert chrome.execute_script("return document.querySelector('.btn.authorize') !== null")
    sources = chrome.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert sources and all(src.startswith(gw.url) for src in sources), sources
    errors = [entry for entry in chrome.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], errors
