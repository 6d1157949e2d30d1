"""The task pages in Chromium: a task ending live on its page, results by kind (a chat
answer with its reasoning apart, an image, a sound, embeddings), retry and cancel, bulk
actions on a filtered list and its pages, a batch and a conversation, and what a tenant key
may not see."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.browser.conftest import log_in, screenshot
from tests.e2e.conftest import Server, mock_route, until
from tests.e2e.test_webhooks import HOOKS, delivered, settled
from tests.fakes import in_thread
from tests.fakes.webhook_receiver import WebhookReceiver


@pytest.fixture
def confirming(page: Page) -> Page:
    """The page, saying yes to every confirmation a button asks for."""

    def accept(dialog: Dialog) -> None:
        dialog.accept()

    page.on("dialog", accept)
    return page


def submit(c: httpx.Client, model: str = "alpha", kind: str = "chat", **body: Any) -> str:
    r = c.post("/v1/tasks", json={"kind": kind, "model": model, "input": "hi", **body})
    assert r.status_code in (200, 201, 202), r.text
    return str(r.json()["id"])


def ended(c: httpx.Client, task_id: str) -> dict[str, Any]:
    task: dict[str, Any] = c.get(f"/v1/tasks/{task_id}", params={"wait": 30}).json()
    assert task["status"] not in ("PENDING", "PROCESSING"), task
    return task


def running(c: httpx.Client, task_id: str) -> None:
    status = lambda: c.get(f"/v1/tasks/{task_id}").json()["status"]  # noqa: E731
    until(lambda: status() == "PROCESSING", what=f"task {task_id} running")


def test_a_task_submitted_through_the_api_ends_on_its_page_live(
    page: Page, dashboard: Server
) -> None:
    key, admin = dashboard.create_key("acme"), dashboard.create_key("ops", admin=True)
    with dashboard.client(admin) as ops:
        ops.post("/v1/routes/alpha/pause")  # so the page is open before the task starts
    with dashboard.client(key) as c:
        params = {"mock_latency_ms": 1500, "stream": True, "mock_reasoning": True}
        task_id = submit(c, input="count to three", params=params)
    log_in(page, dashboard, key, f"/ui/tasks/{task_id}")
    expect(page.locator("#task-status")).to_have_text("PENDING")
    page.evaluate("window.stayed = true")  # gone if the page were loaded again
    events = page.locator("section.events")
    expect(events.locator("li[data-event=queued]")).to_contain_text("number 1 in its queue")
    with dashboard.client(admin) as ops:
        ops.post("/v1/routes/alpha/resume")
    expect(events.locator("li[data-event=started]")).to_contain_text("attempt 1 on alpha-1")
    expect(page.locator("#task-status")).to_have_text("SUCCESS", timeout=20_000)
    expect(events.locator("li[data-event=finished]")).to_contain_text("ended SUCCESS")
    streamed = events.locator(".streamed")
    expect(streamed.locator(".reasoning")).to_contain_text("mock thinking about: count to three")
    expect(streamed.locator(".answer")).to_contain_text("mock reply to: count to three")
    expect(page.locator("#task-body .result .answer")).to_have_text("mock reply to: count to three")
    expect(page.locator("#attempts-table tbody tr")).to_have_count(1)
    expect(page.locator("#log-table")).to_contain_text("ended")
    assert page.evaluate("window.stayed") is True
    assert page.locator("#task-live").get_attribute("hx-trigger") is None  # it stopped asking


def test_a_chat_answer_shows_its_text_and_reasoning_apart(page: Page, dashboard: Server) -> None:
    key = dashboard.create_key("ops", admin=True)
    evil = 'What is 2 + 2? <img src=x onerror="window.hacked = 1">'
    with dashboard.client(key) as c:
        params = {"mock_reasoning": True, "temperature": 0.2}
        task_id = submit(c, input="Which planet is largest?", params=params)
        marked = submit(c, input=evil, params=params)
        ended(c, task_id), ended(c, marked)
    log_in(page, dashboard, key, f"/ui/tasks/{task_id}")
    result = page.locator("#task-body .result")
    expect(result.locator(".answer")).to_have_text("mock reply to: Which planet is largest?")
    expect(result.locator("details.reasoning .text")).to_have_text(
        "mock thinking about: Which planet is largest?"
    )
    expect(page.locator("section.params")).to_contain_text('"temperature": 0.2')
    screenshot(page, "task-chat")
    page.goto(f"{dashboard.url}/ui/tasks/{marked}")  # what a task holds is shown as text
    expect(page.locator("section.input .prompt")).to_have_text(evil)
    expect(result.locator(".answer")).to_have_text(f"mock reply to: {evil}")
    expect(result.locator("details.reasoning .text")).to_have_text(f"mock thinking about: {evil}")
    assert page.locator("main img").count() == 0 and page.evaluate("window.hacked") is None


def test_media_and_embedding_results_show_by_kind(page: Page, dashboard: Server) -> None:
    key = dashboard.create_key("acme")
    with dashboard.client(key) as c:
        image = submit(c, kind="image", input="a lighthouse at dusk", params={"mock_size": 256})
        sound = submit(c, kind="speech", input="Hello there.")
        vectors = submit(c, kind="embedding", input=["one", "two"], params={"dimensions": 16})
        for task_id in (image, sound, vectors):
            ended(c, task_id)
    log_in(page, dashboard, key, f"/ui/tasks/{image}")
    img = page.locator("#task-body figure.file img")
    expect(img).to_have_count(1)
    page.wait_for_function("document.querySelector('figure.file img').complete")
    assert img.evaluate("i => i.naturalWidth") == 256
    screenshot(page, "task-image")
    page.goto(f"{dashboard.url}/ui/tasks/{sound}")
    page.wait_for_function("document.querySelector('figure.file audio').readyState >= 1")
    assert page.locator("figure.file audio").evaluate("a => a.duration") == pytest.approx(0.25)
    page.goto(f"{dashboard.url}/ui/tasks/{vectors}")
    expect(page.locator("p.embeddings")).to_have_text("2 embeddings of 16 dimensions")
    expect(page.locator("ol.vectors li")).to_have_count(2)
    expect(page.locator("ol.vectors li").first).to_contain_text("… 8 more")


def test_an_admin_retries_a_failed_task_and_its_first_attempt_stays(
    confirming: Page, dashboard: Server
) -> None:
    key = dashboard.create_key("ops", admin=True)
    with dashboard.client(key) as c:
        params = {"mock_fail_attempts": 1, "mock_error": "invalid_input"}  # not retried
        task_id = submit(c, params=params)
        assert ended(c, task_id)["status"] == "FAILED"
    page = confirming
    log_in(page, dashboard, key, f"/ui/tasks/{task_id}")
    expect(page.locator(".task-error")).to_contain_text("mock invalid_input on attempt 1")
    expect(page.locator("#cancel-task")).to_have_count(0)
    page.click("#retry-task")
    expect(page.locator(".notice")).to_contain_text("will run again")
    expect(page.locator("#task-status")).to_have_text("SUCCESS", timeout=20_000)
    rows = page.locator("#attempts-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("failed")
    expect(rows.nth(1)).to_contain_text("success")
    expect(page.locator("#log-table")).to_contain_text("run again by an admin")


def test_a_viewer_cancels_a_running_task(confirming: Page, dashboard: Server) -> None:
    key = dashboard.create_key("acme")
    with dashboard.client(key) as c:
        task_id = submit(c, params={"mock_latency_ms": 120_000})
        running(c, task_id)
        page = confirming
        log_in(page, dashboard, key, f"/ui/tasks/{task_id}")
        expect(page.locator("#retry-task")).to_have_count(0)  # not for a tenant key
        page.click("#cancel-task")
        expect(page.locator(".notice")).to_have_text("The task was cancelled.")
        expect(page.locator("#task-status")).to_have_text("CANCELLED")
        expect(page.locator("#cancel-task")).to_have_count(0)
        expect(page.locator("#retry-task")).to_have_count(0)
        assert ended(c, task_id)["status"] == "CANCELLED"


def test_bulk_cancel_and_retry_take_the_filtered_tasks_only(
    confirming: Page, dashboard: Server
) -> None:
    key = dashboard.create_key("ops", admin=True)
    slow: dict[str, Any] = {"params": {"mock_latency_ms": 120_000}}
    with dashboard.client(key) as c:
        done = [submit(c, "beta", input=f"quick {i}") for i in range(2)]
        for task_id in done:
            ended(c, task_id)
        alpha = [submit(c, "alpha", input=f"slow {i}", **slow) for i in range(3)]
        beta = submit(c, "beta", input="slow on beta", **slow)
    page = confirming
    log_in(page, dashboard, key, "/ui/tasks")
    expect(page.locator("#tasks-table tbody tr")).to_have_count(6)
    expect(page.locator("#cancel-these")).to_have_count(0)  # not without a filter
    screenshot(page, "tasks")
    page.select_option("select[name=route]", "alpha")
    page.click("#filters button[type=submit]")
    expect(page.locator("#tasks-table tbody tr")).to_have_count(3)
    page.click("#cancel-these")
    expect(page.locator(".notice")).to_have_text("3 tasks cancelled.")
    expect(page.locator("#tasks-table tbody .badge.CANCELLED")).to_have_count(3)
    with dashboard.client(key) as c:
        assert {ended(c, t)["status"] for t in alpha} == {"CANCELLED"}
        assert c.get(f"/v1/tasks/{beta}").json()["status"] in ("PENDING", "PROCESSING")
        page.check("input[name=status][value=CANCELLED]")
        page.click("#filters button[type=submit]")
        assert "status=CANCELLED" in page.url and "route=alpha" in page.url
        page.click("#retry-these")
        expect(page.locator(".notice")).to_have_text("3 tasks will run again.")
        for t in alpha:
            assert c.get(f"/v1/tasks/{t}").json()["status"] in ("PENDING", "PROCESSING")
        c.post("/v1/tasks/cancel", json={"status": ["PENDING", "PROCESSING"]})


def test_the_list_pages_by_keyset_and_jumps_to_a_task(page: Page, dashboard: Server) -> None:
    key = dashboard.create_key("acme")
    with dashboard.client(key) as c:
        ids = [submit(c, input=f"task {i}", params={"mock_latency_ms": 120_000}) for i in range(53)]
    newest = sorted(ids, reverse=True)
    log_in(page, dashboard, key, "/ui/tasks?status=PENDING&status=PROCESSING")
    rows = page.locator("#tasks-table tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.first).to_have_attribute("data-task", newest[0])
    expect(rows.last).to_have_attribute("data-task", newest[49])
    page.click("#next-page")
    expect(rows).to_have_count(3)
    assert [rows.nth(i).get_attribute("data-task") for i in range(3)] == newest[50:]
    assert "status=PENDING" in page.url and f"cursor={newest[49]}" in page.url
    page.click("#first-page")
    expect(rows).to_have_count(50)
    page.fill("#task-id", ids[7])
    page.click("form.lookup button")
    expect(page).to_have_url(f"{dashboard.url}/ui/tasks/{ids[7]}")
    expect(page.locator("section.input")).to_contain_text("task 7")


def test_a_batch_shows_each_models_answer_side_by_side(page: Page, dashboard: Server) -> None:
    key = dashboard.create_key("acme")
    with dashboard.client(key) as c:
        body = {"kind": "chat", "models": ["alpha", "beta"], "input": "Name a colour."}
        batch = c.post("/v1/batches", json=body).json()
        c.get(f"/v1/batches/{batch['id']}", params={"wait": 30})
    log_in(page, dashboard, key, f"/ui/batches/{batch['id']}")
    expect(page.locator("#batch-status")).to_have_text("SUCCESS")
    cards = page.locator(".answer-card")
    expect(cards).to_have_count(2)
    for i, model in enumerate(["alpha", "beta"]):
        expect(cards.nth(i)).to_have_attribute("data-model", model)
        expect(cards.nth(i).locator(".answer")).to_have_text("mock reply to: Name a colour.")
    boxes = [cards.nth(i).bounding_box() for i in range(2)]
    assert boxes[0] and boxes[1] and boxes[0]["y"] == boxes[1]["y"]  # side by side
    screenshot(page, "batch")
    cards.nth(1).locator("a", has_text="task").click()
    expect(page.locator(".crumbs")).to_contain_text("its batch")


def test_a_conversation_shows_its_turns_in_order(page: Page, dashboard: Server) -> None:
    key = dashboard.create_key("acme")
    with dashboard.client(key) as c:
        conv = c.post("/v1/conversations", json={"title": "Colours"}).json()
        first = submit(c, input="Name a colour.", conversation_id=conv["id"])
        ended(c, first)
        body = {"kind": "chat", "models": ["alpha", "beta"], "input": "And another?"}
        batch = c.post("/v1/batches", json={**body, "conversation_id": conv["id"]}).json()
        c.get(f"/v1/batches/{batch['id']}", params={"wait": 30})
    log_in(page, dashboard, key, "/ui/conversations")
    page.click(f"#conversations-table a[href='/ui/conversations/{conv['id']}']")
    expect(page.locator("h1")).to_contain_text("Colours")
    turns = page.locator("section.turn")
    expect(turns).to_have_count(2)
    expect(turns.nth(0).locator(".prompt .text")).to_have_text("Name a colour.")
    expect(turns.nth(0).locator(".answer-card")).to_have_count(1)
    expect(turns.nth(1).locator(".prompt .text")).to_have_text("And another?")
    second = turns.nth(1).locator(".answer-card")
    expect(second).to_have_count(2)
    expect(second.nth(0)).to_have_attribute("data-model", "alpha")
    expect(second.nth(1).locator(".answer")).to_have_text("mock reply to: And another?")
    screenshot(page, "conversation")


def test_a_tenant_key_sees_neither_another_tenants_task_nor_its_files(
    page: Page, dashboard: Server
) -> None:
    acme, other = dashboard.create_key("acme"), dashboard.create_key("other")
    admin = dashboard.create_key("ops", admin=True)
    with dashboard.client(acme) as c:
        task_id = submit(c, kind="image", input="a secret plan")
        file_id = ended(c, task_id)["result"]["files"][0]["id"]
        body = {"kind": "chat", "models": ["alpha", "beta"], "input": "secret"}
        batch_id = c.post("/v1/batches", json=body).json()["id"]
        conversation_id = c.post("/v1/conversations", json={"title": "secret"}).json()["id"]
    log_in(page, dashboard, other, "/ui/tasks")
    expect(page.locator("#tasks-table")).to_contain_text("No tasks")
    expect(page.locator("input[name=tenant]")).to_have_count(0)
    page.goto(f"{dashboard.url}/ui/tasks?tenant=acme")  # not a filter a tenant key has
    expect(page.locator("#tasks-table")).not_to_contain_text(task_id)
    theirs = [f"/ui/tasks/{task_id}", f"/ui/tasks/{task_id}/live", f"/ui/files/{file_id}"]
    theirs += [f"/ui/batches/{batch_id}", f"/ui/conversations/{conversation_id}"]
    for path in theirs:
        response = page.goto(f"{dashboard.url}{path}")
        assert response is not None and response.status == 404, path
    expect(page.locator("h1")).to_have_text("404 not found")
    page.goto(f"{dashboard.url}/ui/conversations")
    expect(page.locator("#conversations-table")).not_to_contain_text(conversation_id)
    jar = {c["name"]: c["value"] for c in page.context.cookies()}
    forged = httpx.post(f"{dashboard.url}/ui/tasks/{task_id}/cancel", cookies=jar)
    assert forged.status_code == 403  # no CSRF token
    page.context.clear_cookies()
    log_in(page, dashboard, acme, f"/ui/tasks/{task_id}")
    expect(page.locator("#task-status")).to_have_text("SUCCESS")
    response = page.goto(f"{dashboard.url}/ui/files/{file_id}")
    assert response is not None and response.status == 200
    assert response.headers["x-content-type-options"] == "nosniff"
    page.context.clear_cookies()
    log_in(page, dashboard, admin, "/ui/tasks?tenant=acme")
    expect(page.locator(f"#tasks-table tr[data-task='{task_id}']")).to_contain_text("acme")
    page.goto(f"{dashboard.url}/ui/tasks?tenant=other")
    expect(page.locator("#tasks-table")).to_contain_text("No tasks match these filters")


def test_a_tasks_webhook_deliveries_show_on_its_page(page: Page, make_server: Any) -> None:
    server: Server = make_server([mock_route("alpha")], webhooks=HOOKS)
    server.start()
    key = server.create_key("acme")
    with in_thread(WebhookReceiver()) as hooks, server.client(key) as c:
        task_id = submit(c, webhook_url=hooks.url("acme"))
        delivered(c, f"/v1/tasks/{task_id}", settled)
    log_in(page, server, key, f"/ui/tasks/{task_id}")
    expect(page.locator("section.webhook")).to_contain_text(hooks.url("acme"))
    row = page.locator("#deliveries-table tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("DELIVERED")
    expect(row).to_contain_text("task.finished")
