"""Webhooks end to end: the real server process POSTs signed events to a receiver on loopback
(so these servers set ``allow_private``), retries them, shows each delivery on its task or
batch, refuses private URLs by default, and keeps deliveries across a crash."""

from __future__ import annotations

import time
from typing import Any

import httpx

from taskgate.client import verify_webhook
from tests.e2e.conftest import Server, mock_route
from tests.e2e.test_api import submit, wait
from tests.fakes import in_thread
from tests.fakes.webhook_receiver import Received, WebhookReceiver

HOOKS = {
    "allow_private": True,
    "max_attempts": 3,
    "backoff_base": 0.2,
    "backoff_max": 0.5,
    "timeout": 1,
    "poll_interval": 0.2,
}


def hook_server(make_server: Any, **webhooks: Any) -> Server:
    server: Server = make_server(
        [mock_route(), mock_route("slow", options={"latency_ms": 300})],
        webhooks={**HOOKS, **webhooks},
    )
    server.start()
    return server


def delivered(c: httpx.Client, path: str, check: Any, seconds: float = 15) -> dict[str, Any]:
    """GET ``path`` until its ``webhook`` passes ``check``."""
    end = time.monotonic() + seconds
    while True:
        view = c.get(path).json()
        if check(view["webhook"]):
            return view
        assert time.monotonic() < end, view["webhook"]
        time.sleep(0.05)


def settled(hook: dict[str, Any]) -> bool:
    return all(d["status"] != "PENDING" for d in hook["deliveries"]) and bool(hook["deliveries"])


def verify(secret: str, req: Received) -> bool:
    h = req.headers
    return verify_webhook(secret, req.body, h["X-Taskgate-Timestamp"], h["X-Taskgate-Signature"])


def test_a_task_webhook_arrives_signed_with_the_tenant_secret(make_server: Any) -> None:
    server = hook_server(make_server)
    with in_thread(WebhookReceiver()) as hooks, server.client(server.create_key("acme")) as c:
        task = submit(c, input="ping", webhook_url=hooks.url("acme"))
        [req] = hooks.wait_for(1)
        secret = c.get("/v1/webhooks/secret").json()["secret"]
        assert secret.startswith("whsec_") and verify(secret, req)
        event = req.json()
        assert event["id"] == req.event_id == f"evt_{task['id']}_finished"
        assert event["type"] == "task.finished" and event["created_at"].endswith("Z")
        done = wait(c, task["id"])
        assert event["data"]["id"] == task["id"] and event["data"]["status"] == "SUCCESS"
        assert event["data"]["result"] == done["result"]
        view = delivered(c, f"/v1/tasks/{task['id']}", settled)
        assert view["webhook"]["url"] == hooks.url("acme")
        [d] = view["webhook"]["deliveries"]
        assert (d["event_id"], d["status"], d["attempts"]) == (req.event_id, "DELIVERED", 1)
        assert d["last_status"] == 200 and d["delivered_at"] is not None
        rotated = c.post("/v1/webhooks/secret/rotate").json()["secret"]
        assert rotated != secret and c.get("/v1/webhooks/secret").json()["secret"] == rotated
        submit(c, webhook_url=hooks.url("acme"))
        later = hooks.wait_for(2)[1]
        assert verify(rotated, later) and not verify(secret, later)
    with server.client(server.create_key("globex")) as other:
        assert other.get("/v1/webhooks/secret").json()["secret"] not in (secret, rotated)
    log = server.log.read_text()
    assert secret not in log and rotated not in log


def test_a_failing_receiver_gets_the_same_event_until_it_answers(make_server: Any) -> None:
    server = hook_server(make_server)
    with in_thread(WebhookReceiver()) as hooks, server.client(server.create_key("acme")) as c:
        hooks.script("fail", "fail")
        task = submit(c, webhook_url=hooks.url())
        reqs = hooks.wait_for(3)
        assert len({r.event_id for r in reqs}) == 1
        assert reqs[2].json()["id"] == reqs[0].json()["id"]
        view = delivered(c, f"/v1/tasks/{task['id']}", settled)
        [d] = view["webhook"]["deliveries"]
        assert (d["status"], d["attempts"], d["last_status"]) == ("DELIVERED", 3, 200)
        assert d["last_error"] is None
        time.sleep(0.5)
        assert len(hooks.requests) == 3


def test_a_receiver_that_always_fails_ends_failed_after_max_attempts(make_server: Any) -> None:
    server = hook_server(make_server)
    with in_thread(WebhookReceiver()) as hooks, server.client(server.create_key("acme")) as c:
        hooks.default = "fail"
        task = submit(c, webhook_url=hooks.url())
        view = delivered(c, f"/v1/tasks/{task['id']}", settled)
        [d] = view["webhook"]["deliveries"]
        assert (d["status"], d["attempts"], d["last_status"]) == ("FAILED", 3, 500)
        assert "HTTP 500" in d["last_error"] and d["next_attempt_at"] is None
        time.sleep(0.8)  # beyond the longest backoff: nothing more is sent
        assert len(hooks.requests) == 3


def test_a_batch_webhook_fires_once_when_the_last_task_ends(make_server: Any) -> None:
    server = hook_server(make_server)
    with in_thread(WebhookReceiver()) as hooks, server.client(server.create_key("acme")) as c:
        body = {
            "kind": "chat",
            "models": ["mock", "slow"],
            "input": "x",
            "webhook_url": hooks.url(),
        }
        batch = c.post("/v1/batches", json=body).json()
        [req] = hooks.wait_for(1)
        event = req.json()
        assert event["type"] == "batch.finished" and event["id"] == f"evt_{batch['id']}_finished"
        assert event["data"]["status"] == "SUCCESS"
        assert [r["task_status"] for r in event["data"]["results"]] == ["SUCCESS", "SUCCESS"]
        view = delivered(c, f"/v1/batches/{batch['id']}", settled)
        assert [d["status"] for d in view["webhook"]["deliveries"]] == ["DELIVERED"]
        for task_id in batch["task_ids"]:
            assert "webhook" not in c.get(f"/v1/tasks/{task_id}").json()
        time.sleep(0.5)
        assert len(hooks.requests) == 1


def test_private_urls_are_refused_unless_allowed(make_server: Any) -> None:
    server: Server = make_server()  # the default: allow_private false
    server.start()
    with server.client(server.create_key("acme")) as c:
        for url in (
            "http://127.0.0.1:9/hook",
            "http://localhost:9/hook",
            "http://[::ffff:127.0.0.1]/hook",
            "http://169.254.169.254/latest",
            "http://10.0.0.1/hook",
        ):
            r = c.post("/v1/tasks", json={"kind": "chat", "model": "mock", "webhook_url": url})
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error["field"] == "webhook_url" and "allow_private" in error["message"]
        r = c.post("/v1/tasks", json={"kind": "chat", "model": "mock", "webhook_url": "ftp://x/"})
        assert r.status_code == 400 and "http or https" in r.text
        batch = {"kind": "chat", "models": ["mock"], "webhook_url": "http://localhost/"}
        assert c.post("/v1/batches", json=batch).status_code == 400
        assert c.get("/v1/tasks").json()["data"] == []


def test_deliveries_survive_a_crash_before_the_receiver_answered(make_server: Any) -> None:
    server = hook_server(make_server)
    with in_thread(WebhookReceiver()) as hooks, server.client(server.create_key("acme")) as c:
        hooks.script("hang")  # the first attempt is never answered...
        task = submit(c, webhook_url=hooks.url())
        hooks.wait_for(1)
        server.stop(kill=True)  # ...because the server dies while it waits
        server.start()
        reqs = hooks.wait_for(2, timeout=30)  # after the dead claim's lease runs out
        assert reqs[0].event_id == reqs[1].event_id
        view = delivered(c, f"/v1/tasks/{task['id']}", settled)
        [d] = view["webhook"]["deliveries"]
        assert (d["status"], d["attempts"]) == ("DELIVERED", 1)
