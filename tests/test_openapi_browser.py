"""`/docs` in real headless Chromium (Debian's): Swagger UI renders every operation under the strict CSP.

The page's only scripts are the gateway's own files; a CSP violation (an inline script
or style Swagger UI would need, an asset from another host) shows as a console error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser import start_chrome
from tests.harness import config_for, wait_for


@pytest.fixture
def chrome(tmp_path: Any) -> Iterator[Any]:
    driver = start_chrome(tmp_path / "chrome-profile")
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
