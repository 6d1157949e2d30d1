"""The dashboard in Chromium: logging in, the overview and the routes page, and what a
tenant key may not see."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import log_in, screenshot
from tests.e2e.conftest import Server


def test_a_bad_key_is_refused_and_a_good_one_logs_in_with_a_safe_cookie(
    page: Page, dashboard: Server
) -> None:
    log_in(page, dashboard, "tg_not_a_key")
    expect(page.locator(".error")).to_contain_text("not valid")
    screenshot(page, "login")
    log_in(page, dashboard, dashboard.create_key("ops", admin=True))
    expect(page).to_have_url(f"{dashboard.url}/ui/overview")
    [cookie] = page.context.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/ui")
    assert "tg_" not in cookie["value"]  # the session's token, not the key


def test_the_overview_shows_routes_workers_and_what_ended(page: Page, dashboard: Server) -> None:
    key = dashboard.create_key("ops", admin=True)
    with dashboard.client(key) as c:
        for _ in range(3):
            c.post("/v1/tasks", json={"kind": "chat", "model": "alpha", "input": "hi"})
    log_in(page, dashboard, key)
    alpha = page.locator("#routes-table tr[data-route=alpha]")
    expect(alpha).to_contain_text("active")
    expect(alpha.locator(".legend")).to_contain_text("3 ended", timeout=15_000)  # refreshes
    expect(page.locator("#workers-table")).to_contain_text("running")
    screenshot(page, "overview")


def test_routes_pause_and_resume_from_their_buttons(page: Page, dashboard: Server) -> None:
    key = dashboard.create_key("ops", admin=True)
    log_in(page, dashboard, key, "/ui/routes")
    alpha = page.locator("section.route[data-route=alpha]")
    alpha.locator("button.pause").click()
    expect(alpha.locator("h2 .badge")).to_have_text("paused")
    with dashboard.client(key) as c:
        task = c.post("/v1/tasks", json={"kind": "chat", "model": "alpha", "input": "x"}).json()
        assert c.get(f"/v1/tasks/{task['id']}").json()["status"] == "PENDING"
        screenshot(page, "routes")
        alpha.locator("button.resume").click()
        expect(alpha.locator("h2 .badge")).to_have_text("active")
        done = c.get(f"/v1/tasks/{task['id']}", params={"wait": 20}).json()
        assert done["status"] == "SUCCESS"
    page.click("#reload")
    expect(page.locator(".notice")).to_contain_text("reloaded")


def test_a_tenant_key_sees_none_of_the_admin_pages(page: Page, dashboard: Server) -> None:
    log_in(page, dashboard, dashboard.create_key("acme"))
    nav = page.locator("header nav")
    expect(nav).not_to_contain_text("Overview")
    expect(nav).not_to_contain_text("Routes")
    for path in ("/ui/overview", "/ui/routes"):
        page.goto(f"{dashboard.url}{path}")
        expect(page.locator("h1")).to_have_text("403 forbidden")


def test_actions_need_the_sessions_csrf_token(page: Page, dashboard: Server) -> None:
    log_in(page, dashboard, dashboard.create_key("ops", admin=True), "/ui/routes")
    [cookie] = page.context.cookies()
    jar = {cookie["name"]: cookie["value"]}
    forged = httpx.post(f"{dashboard.url}/ui/routes/alpha/pause", cookies=jar)
    assert forged.status_code == 403 and "CSRF" in forged.text
    other_site = httpx.post(
        f"{dashboard.url}/ui/routes/alpha/pause",
        cookies=jar,
        headers={"origin": "https://evil.example", "x-csrf-token": "whatever"},
    )
    assert other_site.status_code == 403
    page.reload()
    expect(page.locator("section.route[data-route=alpha] h2 .badge")).to_have_text("active")
