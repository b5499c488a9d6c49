"""Debian's headless Chromium through selenium, for the browser tests (dashboard, /docs).

`make browser` installs `chromium` and `chromedriver`; without them the tests skip, or
fail under GATEWAY_REQUIRE_SERVICES=1 (CI). Console messages are kept so a test can
assert that a page logged no error (a CSP violation shows there).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.harness import service_missing

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--lang=en-US", "--window-size=1280,1000"]  # fmt: skip


def start_chrome(profile_dir: Path) -> Any:
    """A fresh headless Chromium with its own profile; the caller quits it."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        service_missing("chromium and chromedriver (make browser)")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in [*FLAGS, f"--user-data-dir={profile_dir}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    return driver
