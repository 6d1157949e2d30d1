"""AIFlow's callbacks and clients' media URLs against a real server process.

A callback arrives at a receiver on loopback with the client's ``callback.headers`` and
AIFlow's fields beside taskgate's signed event, and those headers are never shown (task views,
its log, the server's log); headers a client may not set are refused at submit. A
``gpt-image-1`` edit of an image at a URL is downloaded through the address guard for OpenAI's
multipart upload (the fake OpenAI server), within ``media``'s size and time limits; where the
route takes no client URLs the request is refused at submit, in every API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from taskgate.client import verify_webhook
from tests.e2e.conftest import Server, fresh_tenant, mock_route, until
from tests.e2e.test_aiflow_api import created, poll
from tests.fakes import in_thread
from tests.fakes.media_host import LIMIT, PNG, MediaHost
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.shelf import fake_image
from tests.fakes.webhook_receiver import WebhookReceiver

SECRET = "Bearer cb-2f7c9e41d0"  # the receiver's token a client sends along
TRACE = "trace-5a1b"
OPENAI_KEY = "sk-e2e-callbacks-7e0a"
HOOKS = {"allow_private": True, "backoff_base": 0.1, "backoff_max": 0.3, "poll_interval": 0.2}


@pytest.fixture
def hooks() -> Iterator[WebhookReceiver]:
    with in_thread(WebhookReceiver()) as receiver:
        yield receiver


@pytest.fixture
def openai() -> Iterator[FakeOpenAI]:
    with in_thread(FakeOpenAI(key=OPENAI_KEY)) as server:
        yield server


@pytest.fixture
def host() -> Iterator[MediaHost]:
    with in_thread(MediaHost()) as h:
        yield h


@pytest.fixture
def server(make_server: Any, openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("FAKE_OPENAI_KEY", OPENAI_KEY)
    edits = {
        "name": "edits",
        "models": ["gpt-image-1"],
        "provider": "openai",
        "instances": [
            {"name": "fake-1", "endpoint": openai.base_url, "secret_env": "FAKE_OPENAI_KEY"}
        ],
        "retry": {"max_attempts": 2, "backoff_base": 0.05, "backoff_max": 0.1},
        "options": {"client_media_urls": True, "output_urls_private": True},
    }
    routes = [
        mock_route("text", ["gpt-5"]),
        mock_route("slow", ["slow-model"], options={"latency_ms": 20_000}),
        mock_route("strict", ["strict-edit"]),  # takes no client media URLs
        edits,
    ]
    media = {"allow_private": True, "max_download_bytes": LIMIT, "download_timeout": 1}
    s: Server = make_server(routes, webhooks=HOOKS, media=media, log_level="debug")
    s.start()
    return s


@pytest.fixture(scope="module")
def refusing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for every case of the refusals at submit (each case a tenant of its own):
    they never reach a route, so it has the text route only."""
    s = Server(tmp_path_factory.mktemp("refusing"), [mock_route("text", ["gpt-5"])], webhooks=HOOKS)
    s.start()
    yield s
    s.stop(kill=True)


def chat(callback: dict[str, Any] | None = None, model: str = "gpt-5") -> dict[str, Any]:
    body: dict[str, Any] = {
        "task_type": "text-generation",
        "model_spec": {"name": model},
        "payload": {"prompt": "hello"},
    }
    return {**body, "callback": callback} if callback else body


def edit(image: str, model: str = "gpt-image-1") -> dict[str, Any]:
    """AIFlow's gpt-image-1 payload: a list of ``images`` and a ``prompt``."""
    payload = {"images": [image], "prompt": "add a hat"}
    return {"task_type": "gpt-image-1", "model_spec": {"name": model}, "payload": payload}


def test_a_callback_carries_the_clients_headers_and_aiflows_fields_and_shows_them_nowhere(
    server: Server, hooks: WebhookReceiver
) -> None:
    callback = {"url": hooks.url("aiflow"), "headers": {"Authorization": SECRET, "X-Trace": TRACE}}
    with server.client(server.create_key("acme")) as c:
        r = c.post("/api/v1/tasks_json", json=chat(callback))
        task_id = created(r)
        assert r.json()["message"] == "Task created successfully"
        task = poll(c, task_id)
        [req] = hooks.wait_for(1)
        assert req.headers["Authorization"] == SECRET and req.headers["X-Trace"] == TRACE
        secret = c.get("/v1/webhooks/secret").json()["secret"]
        h = req.headers
        assert verify_webhook(
            secret, req.body, h["X-Taskgate-Timestamp"], h["X-Taskgate-Signature"]
        )
        assert h["Content-Type"] == "application/json"
        body = req.json()
        assert (body["task_id"], body["status"], body["error"]) == (task_id, "SUCCESS", None)
        assert body["result"]["output"] == task["result"]["output"]
        assert body["result"]["model"] == "gpt-5" and body["result"]["timestamp"]
        assert body["id"] == h["X-Taskgate-Event-Id"] == f"evt_{task_id}_finished"
        assert body["type"] == "task.finished" and body["data"]["id"] == task_id

        views = [
            c.get(f"/api/v1/tasks/{task_id}"),
            c.get(f"/api/v1/tasks/{task_id}/result"),
            c.get(f"/v1/tasks/{task_id}"),
            c.get(f"/v1/tasks/{task_id}/logs"),
            c.get("/v1/tasks"),
        ]
        assert all(v.status_code == 200 for v in views)
        until(lambda: _delivered(c, task_id), what="the delivery recorded")
        logs = c.get(f"/v1/tasks/{task_id}/logs")
        assert any(e["event"] == "webhook" for e in logs.json()["entries"])
        for seen in [v.text for v in views] + [r.text, logs.text]:
            assert SECRET not in seen and TRACE not in seen
    assert SECRET not in server.log.read_text() and TRACE not in server.log.read_text()


def _delivered(c: httpx.Client, task_id: str) -> bool:
    deliveries = c.get(f"/v1/tasks/{task_id}").json()["webhook"]["deliveries"]
    return [d["status"] for d in deliveries] == ["DELIVERED"]


def test_a_cancelled_tasks_callback_says_failed_with_its_error_type(
    server: Server, hooks: WebhookReceiver
) -> None:
    callback = {"url": hooks.url("aiflow"), "headers": {"Authorization": SECRET}}
    with server.client(server.create_key("acme")) as c:
        task_id = created(c.post("/api/v1/tasks_json", json=chat(callback, "slow-model")))
        assert c.delete(f"/api/v1/tasks/{task_id}").json()["status"] == "FAILED"
        [req] = hooks.wait_for(1)
    body = req.json()
    assert (body["task_id"], body["status"], body["result"]) == (task_id, "FAILED", None)
    assert body["error_type"] == "cancelled" and body["error"]
    assert req.headers["Authorization"] == SECRET


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ({"Host": "evil.test"}, "'Host' may not be set"),
        ({"Content-Length": "5"}, "'Content-Length' may not be set"),
        ({"content-type": "text/plain"}, "'content-type' may not be set"),
        ({"X-Taskgate-Signature": "v1=00"}, "'X-Taskgate-Signature' may not be set"),
        ({"Connection": "close"}, "'Connection' may not be set"),
        ({"Transfer-Encoding": "chunked"}, "'Transfer-Encoding' may not be set"),
        ({f"X-H{i}": "v" for i in range(21)}, "at most 20 headers"),
        ({"X-Long": "v" * 5000}, "'X-Long' is over 4096 characters"),
        ({"X-Bad": f"{SECRET}\r\nX-Injected: 1"}, "printable ASCII on one line"),
        ({"Bad Name": SECRET}, "a header name must"),
    ],
)
def test_headers_a_client_may_not_set_are_refused_at_submit_and_nothing_is_stored(
    refusing: Server, headers: dict[str, str], needle: str
) -> None:
    callback = {"url": "http://127.0.0.1:9/hook", "headers": {**headers, "X-Ok": SECRET}}
    form = {
        "task_type": "text-generation",
        "model_spec": '{"name": "gpt-5"}',
        "callback": json.dumps(callback),
    }
    with refusing.client(refusing.create_key(fresh_tenant())) as c:
        for r in (
            c.post("/api/v1/tasks_json", json=chat(callback)),
            c.post("/api/v1/tasks_form", data=form),
        ):
            assert r.status_code == 400, r.text
            assert needle in r.json()["detail"] and SECRET not in r.text
            assert r.json()["error"]["field"] == "callback.headers"
        assert c.get("/v1/tasks").json()["data"] == []


def test_a_gpt_image_1_edit_of_an_image_url_is_downloaded_for_openais_upload(
    server: Server, openai: FakeOpenAI, host: MediaHost
) -> None:
    with server.client(server.create_key("acme")) as c:
        task = poll(c, created(c.post("/api/v1/tasks_json", json=edit(f"{host.base_url}/cat.png"))))
        assert task["status"] == "SUCCESS", task
        [out] = task["result"]["files"]
        assert c.get(out["url"]).content == fake_image("add a hat")
    form = openai.requests[-1].body
    assert form["image"].data == PNG and form["prompt"] == "add a hat"


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("/sized", f"is over {LIMIT} bytes (media.max_download_bytes)"),
        ("/chunked", f"is over {LIMIT} bytes (media.max_download_bytes)"),
        ("/slow", "was not downloaded within 1s (media.download_timeout)"),
        ("/missing.png", "answered HTTP 404"),
    ],
)
def test_an_image_url_too_big_too_slow_or_missing_fails_the_task_clearly(
    server: Server, openai: FakeOpenAI, host: MediaHost, path: str, needle: str
) -> None:
    with server.client(server.create_key("acme")) as c:
        task_id = created(c.post("/api/v1/tasks_json", json=edit(f"{host.base_url}{path}?s=1")))
        task = poll(c, task_id)
        native = c.get(f"/v1/tasks/{task_id}").json()
    assert task["status"] == "FAILED" and needle in task["error"], task
    assert task["error"].startswith(f"image: {host.base_url}{path} ")  # without its query
    assert task["error_type"] == "invalid_input" and native["attempts"] == 1  # not retried
    assert openai.requests == []  # the backend was never called


def test_media_urls_are_refused_at_submit_where_the_route_takes_none(
    server: Server, host: MediaHost
) -> None:
    url = f"{host.base_url}/cat.png"
    with server.client(server.create_key("acme")) as c:
        r = c.post("/api/v1/tasks_json", json=edit(url, "strict-edit"))
        assert r.status_code == 400 and r.json()["error"]["field"] == "input"
        detail = r.json()["detail"]
        assert "media URLs (http or https) are not accepted for model 'strict-edit'" in detail
        assert "upload the file" in detail and "data: URI" in detail
        native = {"kind": "image_edit", "model": "strict-edit", "input": {"image": url}}
        r = c.post("/v1/tasks", json=native)
        assert r.status_code == 400 and "media URLs" in r.json()["error"]["message"]
        part = {"type": "image_url", "image_url": {"url": url}}
        messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}, part]}]
        r = c.post("/v1/chat/completions", json={"model": "gpt-5", "messages": messages})
        assert r.status_code == 400 and "media URLs" in r.json()["error"]["message"]
        assert c.get("/v1/tasks").json()["data"] == []
    assert host.paths == []  # nothing was fetched
