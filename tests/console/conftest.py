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


@pytest.fixture
def console_page(browser):
    """Opens a server's console (its REST URL) in a new page: ``console_page(url)``.
    At the end of the test every page is closed, and none may have raised a
    JavaScript error."""
    opened = []

    def open_page(url: str, height: int = 1000):
        page = browser.new_page(viewport={"width": 1300, "height": height})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        opened.append((page, errors))
        return page

    yield open_page
    raised = []
    for page, errors in opened:
        page.close()
        raised += errors
    assert not raised  # no JavaScript error in any state
