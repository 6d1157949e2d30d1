"""The keys and usage pages in Chromium: a key made on the page shows its secret once and
works; one revoked there is refused at once; a limit set there refuses the request over it;
usage and cost by tenant and model with their chart and the limits' standing; and a tenant
key sees neither page."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.browser.conftest import log_in, screenshot
from tests.e2e.conftest import Server, mock_route

CHAT = {"kind": "chat", "model": "alpha", "input": "hi"}
# mock chat: input tokens are the prompt's words, output tokens the reply's
# ("mock reply to: " and the prompt)
PRICES = [
    {"models": ["alpha*"], "per_request": 0.5, "input_per_million": 1000},
    {"models": ["beta*"], "output_per_million": 2000},
]
TENANT_LIMITS = {
    "acme": {"requests_per_minute": 100, "tokens_per_day": 100000, "cost_per_month": 50}
}


@pytest.fixture
def cached(make_server: Any) -> Server:
    """A server that keeps verified keys for five minutes: a key revoked or changed on the
    page is refused at once only because the page drops it from the cache."""
    server: Server = make_server([mock_route("alpha")], auth_cache_seconds=300)
    server.start()
    return server


def keys_row(page: Page, text: str) -> Any:
    return page.locator("#keys-table tbody tr").filter(has_text=text)


class Confirmations:
    """Accepts the page's confirmation dialogs, keeping what they asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, dialog: Dialog) -> None:
        self.asked.append(dialog.message)
        dialog.accept()


def test_a_key_made_on_the_page_shows_its_secret_once_and_works(
    page: Page, dashboard: Server
) -> None:
    log_in(page, dashboard, dashboard.create_key("ops", admin=True), "/ui/keys")
    before = page.locator("#keys-table tbody tr").count()
    form = page.locator("form.create-key")
    form.locator("[name=tenant]").fill("acme")
    form.locator("[name=name]").fill("ci")
    form.locator("[name=requests_per_minute]").fill("lots")
    page.click("#create-key")
    expect(page.locator(".error")).to_contain_text("requests per minute: Input should be")
    expect(page.locator("#keys-table tbody tr")).to_have_count(before)  # nothing stored
    expect(form.locator("[name=tenant]")).to_have_value("acme")  # the form kept
    form.locator("[name=requests_per_minute]").fill("")
    form.locator("[name=tokens_per_day]").fill("100000")
    with page.expect_response(f"{dashboard.url}/ui/keys") as answer:
        page.click("#create-key")
    assert answer.value.status == 201
    assert answer.value.headers["cache-control"] == "no-store"
    expect(page.locator("#new-key")).to_contain_text("will not be shown again")
    secret = page.locator("#new-secret").inner_text().strip()
    assert re.fullmatch(r"tg_[\w-]{40}", secret)
    row = keys_row(page, "acme")
    expect(row).to_contain_text("ci")
    expect(row.locator("td.tpd")).to_have_text("100,000")
    expect(row).to_contain_text(secret[:10])  # its prefix only
    page.reload()
    expect(page.locator("#keys-table")).to_contain_text("acme")
    expect(page.locator("#new-secret")).to_have_count(0)
    assert secret not in page.content()
    with dashboard.client(secret) as c:
        assert c.post("/v1/tasks", json=CHAT).status_code == 202
        assert c.get("/v1/usage").json()["tenant"] == "acme"  # a key of tenant acme


def test_a_key_revoked_on_the_page_is_refused_at_once(page: Page, cached: Server) -> None:
    admin = cached.create_key("ops", admin=True)
    with cached.client(admin) as a:
        made = [
            a.post("/v1/keys", json={"tenant": t, "name": n, "limits": lim}).json()
            for t, n, lim in [
                ("acme", "old-ci", None),
                ("acme", "app", {"requests_per_minute": 60, "cost_per_month": 25.5}),
                ("globex", "batch-jobs", {"tokens_per_day": 2000000}),
            ]
        ]
    victim = made[0]["key"]
    with cached.client(victim) as c:
        assert c.get("/v1/tasks").status_code == 200  # verified, and kept for 300 s
        log_in(page, cached, admin, "/ui/keys")
        row = keys_row(page, "old-ci")
        expect(row.locator(".badge")).to_have_text("active")
        confirm = Confirmations()
        page.once("dialog", confirm)
        row.locator("button.revoke").click()
        expect(row.locator(".badge")).to_have_text("revoked")
        assert confirm.asked == [
            f"Revoke key {made[0]['id']} of acme? Every request with it is refused from now on."
        ]
        expect(page.locator(".notice")).to_contain_text(f"Key {made[0]['id']} is revoked")
        expect(row.locator("button.revoke")).to_have_count(0)
        refused = c.get("/v1/tasks")
        assert refused.status_code == 401, refused.text
    screenshot(page, "keys")


def test_a_limit_set_on_the_page_refuses_the_request_over_it(page: Page, cached: Server) -> None:
    tenant_key = cached.create_key("acme")
    with cached.client(tenant_key) as c:
        assert c.post("/v1/tasks", json=CHAT).status_code == 202  # no limit, and cached
        log_in(page, cached, cached.create_key("ops", admin=True), "/ui/keys")
        row = keys_row(page, "acme")
        row.locator("details.edit-limits summary").click()
        row.locator("[name=requests_per_minute]").fill("0")
        row.locator("button.save-limits").click()
        expect(page.locator(".error")).to_contain_text("requests per minute: Input should be")
        expect(row.locator("td.rpm")).to_have_text("-")
        row.locator("details.edit-limits summary").click()
        row.locator("[name=requests_per_minute]").fill("1")
        row.locator("button.save-limits").click()
        expect(page.locator(".notice")).to_contain_text("limits")
        expect(row.locator("td.rpm")).to_have_text("1")
        assert c.post("/v1/tasks", json=CHAT).status_code == 202  # a minute's bucket: one
        over = c.post("/v1/tasks", json=CHAT)
        assert over.status_code == 429, over.text
        assert over.json()["error"]["limit"] == "requests_per_minute"


def run(c: httpx.Client, model: str, prompt: str) -> None:
    task = c.post("/v1/tasks", json={"kind": "chat", "model": model, "input": prompt}).json()
    done = c.get(f"/v1/tasks/{task['id']}", params={"wait": 20}).json()
    assert done["status"] == "SUCCESS", done


def test_usage_and_cost_by_tenant_and_model_with_a_chart_and_the_limits(
    page: Page, make_server: Any
) -> None:
    server: Server = make_server(
        [mock_route("alpha"), mock_route("beta")],
        prices=PRICES,
        limits={"tenants": TENANT_LIMITS},
    )
    server.start()
    admin = server.create_key("ops", admin=True)
    with server.client(admin) as a:
        made = a.post(
            "/v1/keys", json={"tenant": "acme", "name": "app", "limits": {"tokens_per_day": 1000}}
        )
    with server.client(made.json()["key"]) as acme, server.client(server.create_key("beta")) as b:
        run(acme, "alpha", "one two")  # 2 in, 5 out: 0.5 + 0.002
        run(acme, "alpha", "three four")  # the same
        run(b, "beta", "one")  # 1 in, 4 out: 0.008
    log_in(page, server, admin, "/ui/usage")
    table = page.locator("#usage-table")
    for group, tasks, cost in [("acme", "2", "1.004"), ("beta", "1", "0.008")]:
        expect(table.locator(f"tr[data-group={group}] td.tasks")).to_have_text(tasks)
        expect(table.locator(f"tr[data-group={group}] td.cost")).to_have_text(cost)
    expect(table.locator("tr.total td.tasks")).to_have_text("3")
    expect(table.locator("tr.total td.cost")).to_have_text("1.012")
    expect(page.locator("#usage-chart g.bar")).to_have_count(2)
    acme_row = page.locator("#tenant-limits tr[data-who=acme]")
    expect(acme_row.locator("td.tpd")).to_have_text("14 of 100,000")
    expect(acme_row.locator("td.cpm")).to_have_text("1.004 of 50")
    key_row = page.locator(f"#key-limits tr[data-who={made.json()['id']}]")
    expect(key_row.locator("td.tpd")).to_have_text("14 of 1,000")
    expect(key_row.locator("td.rpm")).to_have_text("-")
    expect(key_row).to_contain_text("app")

    page.select_option("#group_by", "model")
    page.click("#show-usage")
    expect(page).to_have_url(re.compile(r"group_by=model"))
    for group, tasks, cost in [("alpha", "2", "1.004"), ("beta", "1", "0.008")]:
        expect(table.locator(f"tr[data-group={group}] td.tasks")).to_have_text(tasks)
        expect(table.locator(f"tr[data-group={group}] td.cost")).to_have_text(cost)
    bars = page.locator("#usage-chart g.bar")
    expect(bars).to_have_count(2)
    widths = [float(bars.nth(i).locator("rect").get_attribute("width") or 0) for i in range(2)]
    assert widths[0] > 100 * widths[1] > 0  # drawn to scale, the largest first
    screenshot(page, "usage")

    page.select_option("#measure", "tasks")
    page.click("#show-usage")
    expect(bars.first).to_have_attribute("data-group", "alpha")
    page.goto(f"{server.url}/ui/usage?group_by=week")
    expect(page.locator(".error")).to_contain_text("group by tenant, key, model or day")

    server.configure(limits={"tenants": {"beta": {"cost_per_month": 7}}})
    with server.client(admin) as a:
        assert a.post("/v1/admin/reload").status_code == 200
    page.goto(f"{server.url}/ui/usage")  # the limits in force now
    expect(page.locator("#tenant-limits tr[data-who=acme]")).to_have_count(0)
    expect(page.locator("#tenant-limits tr[data-who=beta] td.cpm")).to_contain_text("of 7")


def test_a_tenant_key_sees_neither_page(page: Page, dashboard: Server) -> None:
    log_in(page, dashboard, dashboard.create_key("acme"), "/ui/keys")
    expect(page.locator("h1")).to_have_text("403 forbidden")
    nav = page.locator("header nav")
    expect(nav).not_to_contain_text("Keys")
    expect(nav).not_to_contain_text("Usage")
    page.goto(f"{dashboard.url}/ui/usage")
    expect(page.locator("h1")).to_have_text("403 forbidden")
    [cookie] = page.context.cookies()
    csrf = json.loads(page.locator("body").get_attribute("hx-headers") or "{}")["X-CSRF-Token"]
    made = httpx.post(
        f"{dashboard.url}/ui/keys",
        data={"tenant": "acme", "admin": "on", "csrf": csrf},
        cookies={cookie["name"]: cookie["value"]},
    )
    assert made.status_code == 403 and "tg_" not in made.text
    with dashboard.client(dashboard.create_key("ops", admin=True)) as a:
        assert "acme" not in [k["tenant"] for k in a.get("/v1/keys").json()["data"] if k["admin"]]
