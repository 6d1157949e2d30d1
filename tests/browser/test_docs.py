"""``/docs`` in Chromium: Swagger UI renders taskgate's operations from files the server
itself serves (no request leaves its origin, no Content-Security-Policy complaint), and its
Authorize button makes "Try it out" send the key."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from playwright.sync_api import Page, expect

from tests.e2e.conftest import Server


def test_docs_render_offline_and_authorize_sends_the_key(page: Page, dashboard: Server) -> None:
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    complaints: list[str] = []
    page.on("console", lambda m: complaints.append(m.text) if m.type == "error" else None)
    page.goto(f"{dashboard.url}/docs")
    listing = page.locator("#operations-tasks-list_tasks_v1_tasks_get")
    expect(listing).to_be_visible()
    assert {urlsplit(u).netloc for u in requested} == {urlsplit(dashboard.url).netloc}

    def try_listing(status: int) -> None:
        if not listing.locator(".try-out__btn").is_visible():
            listing.locator(".opblock-summary").click()
        button = listing.locator(".try-out__btn")
        if button.inner_text().strip() == "Try it out":
            button.click()
        listing.locator(".execute").click()
        code = listing.locator(".live-responses-table tr.response td.response-col_status")
        expect(code).to_have_text(re.compile(rf"^{status}\b"))

    try_listing(401)
    page.click(".auth-wrapper .authorize")
    page.fill(".auth-container input", dashboard.create_key("acme"))
    page.click(".auth-btn-wrapper .authorize")
    page.click(".btn-done")
    try_listing(200)
    assert not [c for c in complaints if "Content Security Policy" in c], complaints
