"""A real headless Chromium (Debian's ``chromium``, driven by Playwright; nothing is
downloaded) for the console's browser tests."""

from __future__ import annotations

import shutil

import pytest

# A plain import: the test extra installs Playwright, and a browser test that skipped
# when it is missing would prove nothing.
from playwright.sync_api import sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        # --no-sandbox: the tests may run as root in a container.
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()
