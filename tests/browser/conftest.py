"""Browser tests: the dashboard in a real Chromium (Debian's ``chromium`` package, which
``.ci/run`` installs; Playwright's own browser download is not used), driven by Playwright
against a server process (the end-to-end tests' ``Server``).

``TASKGATE_CHROMIUM`` names another executable. With ``TASKGATE_SCREENSHOTS=1`` the tests
that show a page also save it to ``docs/screenshots/`` (for the README)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.e2e.conftest import REPO, Server, make_server, mock_route  # noqa: F401  (fixtures)

SCREENSHOTS = REPO / "docs" / "screenshots"


def chromium_path() -> str:
    found = os.environ.get("TASKGATE_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail(
            "no Chromium: install Debian's package (apt-get install chromium) or set "
            "TASKGATE_CHROMIUM to a Chromium executable"
        )
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium for a module's tests. Not for the whole session: Playwright's sync API keeps
    an event loop running while it is open, and the asyncio tests after it could not run."""
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    p = context.new_page()
    yield p
    context.close()


@pytest.fixture
def dashboard(make_server: Any) -> Server:  # noqa: F811  (the e2e fixture)
    """A server with two routes of the mock provider, started."""
    server: Server = make_server([mock_route("alpha"), mock_route("beta")])
    server.start()
    return server


def log_in(page: Page, server: Server, key: str, path: str = "/ui") -> None:
    page.goto(f"{server.url}{path}")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def screenshot(page: Page, name: str) -> None:
    """Keep the page for the README, when asked to (TASKGATE_SCREENSHOTS=1)."""
    if os.environ.get("TASKGATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


__all__ = ["Path", "log_in", "screenshot"]
