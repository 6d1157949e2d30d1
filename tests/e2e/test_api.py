"""The native API over HTTP against a real server process."""

from __future__ import annotations

import hashlib
import json
import socket
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, mock_route


def deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


def submit(c: httpx.Client, **body: Any) -> dict[str, Any]:
    body = {"kind": "chat", "model": "mock", "input": "hi", **body}
    r = c.post("/v1/tasks", json=body)
    assert r.status_code == 202, r.text
    return r.json()


def wait(c: httpx.Client, task_id: str, seconds: float = 20) -> dict[str, Any]:
    r = c.get(f"/v1/tasks/{task_id}", params={"wait": seconds})
    assert r.status_code == 200, r.text
    return r.json()


def test_task_runs_to_success_with_its_attempt_recorded(server: Server, key: str) -> None:
    with server.client(key) as c:
        task = submit(c, input="hello")
        assert task["status"] in ("PENDING", "PROCESSING")  # (claimed as accepted, if room)
        done = wait(c, task["id"])
    assert done["status"] == "SUCCESS"
    assert done["result"]["output"]["text"] == "mock reply to: hello"
    assert [a["outcome"] for a in done["history"]] == ["success"]
    assert done["history"][0]["instance"] == "mock-1"
    assert done["finished_at"] is not None


def test_health_and_docs(server: Server, key: str) -> None:
    # without an admin key it says only that the server is up: no tenant's counts
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    with server.client(key) as c:
        submit(c)
        assert c.get("/health").json() == {"status": "ok"}
    with server.client(server.create_key("ops", admin=True)) as c:
        assert sum(c.get("/health").json()["tasks"].values()) == 1
    with server.client("tg_not_a_key") as c:
        assert c.get("/health").status_code == 401
    assert httpx.get(f"{server.url}/docs").status_code == 200
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    assert {"/v1/tasks", "/v1/tasks/{task_id}", "/v1/tasks/{task_id}/events"} <= set(paths)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"kind": "chat", "model": "nope"}, 400, "unknown model 'nope'"),
        ({"kind": "painting", "model": "mock"}, 400, "unknown kind 'painting'"),
        ({"kind": "chat", "model": "mock", "priority": "urgent"}, 422, "priority"),
        ({"kind": "chat", "model": "mock", "timeout": "soon"}, 422, "timeout"),
        ({"kind": "chat", "model": "mock", "params": [1, 2]}, 422, "params"),
        ({"kind": "chat"}, 422, "model"),
        ({"kind": "chat", "model": "mock", "surprise": 1}, 422, "surprise"),
        ({"kind": "chat", "model": "mock", "input": deep(300)}, 400, "storable JSON"),
        ({"kind": "chat", "model": "mock", "queue_timeout": 1e20}, 422, "queue_timeout"),
        ({"kind": "chat", "model": "mock", "queue_timeout": "Infinity"}, 422, "queue_timeout"),
        ({"kind": "chat", "model": "mock", "timeout": "NaN"}, 422, "timeout"),
        # not JSON: NaN, Infinity, a number beyond a double
        (b'{"kind": "chat", "model": "mock", "params": {"x": NaN}}', 400, "malformed"),
        (b'{"kind": "chat", "model": "mock", "input": [Infinity]}', 400, "malformed"),
        (b'{"kind": "chat", "model": "mock", "input": [1e400]}', 400, "infinity"),
    ],
)
def test_bad_input_is_a_clear_4xx_and_stores_nothing(
    shared_server: Server, own_key: str, body: dict[str, Any] | bytes, status: int, needle: str
) -> None:
    with shared_server.client(own_key) as c:
        if isinstance(body, bytes):
            r = c.post("/v1/tasks", content=body, headers={"content-type": "application/json"})
        else:
            r = c.post("/v1/tasks", json=body)
        assert r.status_code == status, r.text
        assert needle in r.json()["error"]["message"]
        assert c.get("/v1/tasks").json()["data"] == []


def test_malformed_json_oversized_body_and_unknown_id(make_server: Any) -> None:
    server: Server = make_server(max_body_bytes=10_000)
    server.start()
    key = server.create_key("acme")
    with server.client(key) as c:
        r = c.post(
            "/v1/tasks", content=b'{"kind": "chat", ', headers={"content-type": "application/json"}
        )
        assert r.status_code == 400
        assert r.json()["error"]["type"] == "bad_request"
        r = c.post("/v1/tasks", json={"kind": "chat", "model": "mock", "input": "x" * 20_000})
        assert r.status_code == 413
        assert r.json()["error"]["type"] == "payload_too_large"
        chunked = (b"x" * 4096 for _ in range(5))  # no Content-Length: cut off while read
        r = c.post("/v1/tasks", content=chunked, headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert r.json()["error"]["type"] == "payload_too_large"
        assert c.get("/v1/tasks/doesnotexist").status_code == 404
        assert c.delete("/v1/tasks/doesnotexist").status_code == 404
        assert c.get("/v1/tasks").json()["data"] == []


def test_missing_unknown_and_revoked_keys_are_401(server: Server) -> None:
    assert httpx.get(f"{server.url}/v1/tasks").status_code == 401
    with server.client("tg_not_a_key") as c:
        assert c.get("/v1/tasks").status_code == 401
    key = server.create_key("acme")
    with server.client(key) as c:
        assert c.get("/v1/tasks").status_code == 200
        key_id = json.loads(server.cli("keys", "list", "--tenant", "acme", "--json").stdout)[0][
            "id"
        ]
        server.cli("keys", "revoke", key_id)
        r = c.get("/v1/tasks")
        assert r.status_code == 401
        assert "revoked" in r.json()["error"]["message"]


def test_tenants_cannot_see_each_others_tasks(server: Server) -> None:
    a, b = server.create_key("tenant-a"), server.create_key("tenant-b")
    with server.client(a) as ca, server.client(b) as cb:
        task = submit(ca)
        for r in (
            cb.get(f"/v1/tasks/{task['id']}"),
            cb.get(f"/v1/tasks/{task['id']}", params={"wait": 1}),
            cb.get(f"/v1/tasks/{task['id']}/events"),
            cb.delete(f"/v1/tasks/{task['id']}"),
        ):
            assert r.status_code == 404
        assert cb.get("/v1/tasks").json()["data"] == []
        assert [t["id"] for t in ca.get("/v1/tasks").json()["data"]] == [task["id"]]
        assert wait(ca, task["id"])["status"] == "SUCCESS"


def test_admin_keys_manage_keys_and_tenant_keys_cannot(server: Server) -> None:
    admin, tenant = server.create_key("ops", admin=True), server.create_key("acme")
    with server.client(tenant) as c:
        assert c.post("/v1/keys", json={"tenant": "x"}).status_code == 403
    with server.client(admin) as c:
        made = c.post("/v1/keys", json={"tenant": "newco", "name": "ci"})
        assert made.status_code == 201
        secret, key_id = made.json()["key"], made.json()["id"]
        assert all("key" not in k for k in c.get("/v1/keys").json()["data"])
        with server.client(secret) as new:
            assert new.get("/v1/tasks").status_code == 200
            assert c.delete(f"/v1/keys/{key_id}").status_code == 200
            assert new.get("/v1/tasks").status_code == 401


def test_retryable_errors_are_retried_until_success(server: Server, key: str) -> None:
    with server.client(key) as c:
        task = submit(c, params={"mock_fail_attempts": 2, "mock_error": "overloaded"})
        done = wait(c, task["id"])
    assert done["status"] == "SUCCESS"
    assert [a["outcome"] for a in done["history"]] == ["retry", "retry", "success"]
    assert done["history"][0]["error"]["type"] == "overloaded"


def test_permanent_errors_fail_at_once_with_the_providers_message(server: Server, key: str) -> None:
    with server.client(key) as c:
        task = submit(c, params={"mock_fail_attempts": 5, "mock_error": "invalid_input"})
        done = wait(c, task["id"])
    assert done["status"] == "FAILED"
    assert done["attempts"] == 1
    assert done["error"]["type"] == "invalid_input"
    assert done["error"]["provider_code"] == "mock_invalid_input"
    assert "attempt 1" in done["error"]["message"]


def test_run_timeout_retries_then_ends_as_timeout(server: Server, key: str) -> None:
    with server.client(key) as c:
        task = submit(c, timeout=0.2, params={"mock_latency_ms": 5000})
        done = wait(c, task["id"])
    assert done["status"] == "TIMEOUT"
    assert done["attempts"] == 3
    assert done["error"]["type"] == "timeout"


def test_queue_wait_deadline_times_out_without_running(make_server: Any) -> None:
    route = mock_route(instances=[{"name": "only", "max_concurrency": 1}])
    server: Server = make_server([route])
    server.start()
    with server.client(server.create_key("acme")) as c:
        blocker = submit(c, params={"mock_latency_ms": 3000})
        late = submit(c, queue_timeout=0.3)
        done = wait(c, late["id"])
        assert done["status"] == "TIMEOUT"
        assert done["attempts"] == 0
        assert done["error"]["type"] == "deadline"
        c.delete(f"/v1/tasks/{blocker['id']}")


def test_cancel_stops_a_running_call_and_a_queued_task(make_server: Any) -> None:
    route = mock_route(instances=[{"name": "only", "max_concurrency": 1}])
    server: Server = make_server([route])
    server.start()
    with server.client(server.create_key("acme")) as c:
        running = submit(c, params={"mock_latency_ms": 10_000})
        queued = submit(c)
        for _ in range(100):
            if c.get(f"/v1/tasks/{running['id']}").json()["status"] == "PROCESSING":
                break
        assert c.get(f"/v1/tasks/{queued['id']}").json()["position"] == 1
        assert c.delete(f"/v1/tasks/{queued['id']}").json()["status"] == "CANCELLED"
        assert c.delete(f"/v1/tasks/{running['id']}").json()["status"] == "CANCELLED"
        # the slot is free again at once: a new task runs although the first call had 10 s left
        after = submit(c)
        assert wait(c, after["id"], 5)["status"] == "SUCCESS"
        final = c.get(f"/v1/tasks/{running['id']}").json()
        assert final["status"] == "CANCELLED"
        assert [a["outcome"] for a in final["history"]] == ["cancelled"]
        assert c.delete(f"/v1/tasks/{after['id']}").json()["status"] == "SUCCESS"


def test_idempotency_key_returns_the_same_task(server: Server, key: str) -> None:
    with server.client(key) as c:
        first = submit(c, idempotency_key="order-17")
        again = c.post(
            "/v1/tasks",
            json={"kind": "chat", "model": "mock", "input": "hi", "idempotency_key": "order-17"},
        )
        assert again.status_code == 200
        assert again.json()["id"] == first["id"]
        by_header = c.post(
            "/v1/tasks",
            json={"kind": "chat", "model": "mock", "input": "hi"},
            headers={"Idempotency-Key": "order-17"},
        )
        assert by_header.json()["id"] == first["id"]
        clash = c.post(
            "/v1/tasks",
            json={"kind": "chat", "model": "mock", "input": "other", "idempotency_key": "order-17"},
        )
        assert clash.status_code == 409
        assert len(c.get("/v1/tasks").json()["data"]) == 1


def test_list_filters_and_cursor_pagination(server: Server, key: str) -> None:
    with server.client(key) as c:
        ids = [submit(c, input=f"t{i}")["id"] for i in range(7)]
        emb = submit(c, kind="embedding", input="vec")
        for task_id in [*ids, emb["id"]]:
            wait(c, task_id)
        seen, cursor = [], None
        while True:
            page = c.get(
                "/v1/tasks",
                params={"limit": 3, "kind": "chat", **({"cursor": cursor} if cursor else {})},
            ).json()
            seen += [t["id"] for t in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(ids))
        assert [
            t["id"] for t in c.get("/v1/tasks", params={"kind": "embedding"}).json()["data"]
        ] == [emb["id"]]
        assert c.get("/v1/tasks", params={"status": "FAILED"}).json()["data"] == []
        assert (
            len(c.get("/v1/tasks", params={"status": "SUCCESS", "model": "mock"}).json()["data"])
            == 8
        )
        future = c.get("/v1/tasks", params={"created_after": "2999-01-01T00:00:00Z"}).json()
        assert future["data"] == []
        assert c.get("/v1/tasks", params={"status": "DONE"}).status_code == 422


def test_event_stream_reports_the_life_of_a_task(server: Server, key: str) -> None:
    with server.client(key) as c:
        task = submit(c, input="one two three", params={"stream": True, "mock_latency_ms": 1200})
        events = []
        with c.stream("GET", f"/v1/tasks/{task['id']}/events") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("event:"):
                    events.append(line.split(":", 1)[1].strip())
    assert events[-1] == "finished"
    assert "started" in events
    assert events.count("progress") == 6  # "mock reply to: one two three", word by word


def test_a_stream_is_not_cut_off_by_a_body_it_never_reads(server: Server, key: str) -> None:
    """A request that declares a body over the size limit: the refusal is for a read of the
    body, and the event stream, which never reads it, runs to its end. (httpx will not send
    such a request: a socket does.)"""
    with server.client(key) as c:
        task = submit(c, input="hi", params={"mock_latency_ms": 500})
    request = (
        f"GET /v1/tasks/{task['id']}/events HTTP/1.1\r\nHost: tg\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: 99999999999\r\n\r\n"
    )
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request.encode())
        while b"event: finished" not in received and (chunk := sock.recv(65536)):
            received += chunk
    assert received.startswith(b"HTTP/1.1 200"), received[:200]
    assert b"event: finished" in received


def test_fallback_route_takes_over_when_a_route_keeps_failing(make_server: Any) -> None:
    broken = mock_route(
        "broken",
        options={"failure_rate": 1.0},
        fallbacks=["spare"],
        retry={"max_attempts": 2, "backoff_base": 0.01},
    )
    spare = mock_route("spare")
    server: Server = make_server([broken, spare])
    server.start()
    with server.client(server.create_key("acme")) as c:
        done = wait(c, submit(c, model="broken")["id"])
    assert done["status"] == "SUCCESS"
    assert [(a["route"], a["outcome"]) for a in done["history"]] == [
        ("broken", "retry"),
        ("broken", "failover"),
        ("spare", "success"),
    ]


def test_a_failing_instance_is_avoided_on_retry(make_server: Any) -> None:
    route = mock_route(
        instances=[
            {"name": "bad", "max_concurrency": 4, "options": {"failure_rate": 1.0}, "weight": 10},
            {"name": "good", "max_concurrency": 4},
        ]
    )
    server: Server = make_server([route])
    server.start()
    with server.client(server.create_key("acme")) as c:
        done = wait(c, submit(c)["id"])
    assert done["status"] == "SUCCESS"
    assert [a["instance"] for a in done["history"]] == ["bad", "good"]


def test_a_saturated_route_does_not_delay_another(make_server: Any) -> None:
    slow = mock_route(
        "slow", instances=[{"name": "s", "max_concurrency": 1}], options={"latency_ms": 3000}
    )
    server: Server = make_server([slow, mock_route("fast")])
    server.start()
    with server.client(server.create_key("acme")) as c:
        for _ in range(3):
            submit(c, model="slow")
        fast = submit(c, model="fast")
        assert wait(c, fast["id"], 2)["status"] == "SUCCESS"


def test_a_kind_the_provider_cannot_serve_is_refused_at_submit(make_server: Any) -> None:
    route = {
        "name": "llm",
        "models": ["llm"],
        "provider": "openai",
        "instances": [{"name": "a", "endpoint": "http://127.0.0.1:9/v1"}],
    }
    server: Server = make_server([route])
    server.start()
    with server.client(server.create_key("acme")) as c:
        r = c.post("/v1/tasks", json={"kind": "video", "model": "llm", "input": "x"})
        assert r.status_code == 400
        assert "does not serve kind 'video'" in r.json()["error"]["message"]
        assert c.get("/v1/tasks").json()["data"] == []


def test_image_outputs_are_stored_and_served_to_their_tenant_only(server: Server) -> None:
    a, b = server.create_key("tenant-a"), server.create_key("tenant-b")
    with server.client(a) as ca, server.client(b) as cb:
        done = wait(ca, submit(ca, kind="image", input="a red fox")["id"])
        assert done["status"] == "SUCCESS"
        [f] = done["result"]["files"]
        assert f["content_type"] == "image/png"
        assert f["url"].startswith(f"/v1/files/{f['id']}?expires=")  # a signed link
        r = ca.get(f["url"])
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/png"
        assert r.content.startswith(b"\x89PNG") and len(r.content) == f["size"]
        assert hashlib.sha256(r.content).hexdigest() == f["sha256"]
        assert cb.get(f"/v1/files/{f['id']}").status_code == 404  # by key: its tenant's only
        assert ca.get("/v1/files/nosuchfile").status_code == 404
        again = wait(ca, submit(ca, kind="image", input="a red fox")["id"])
        assert ca.get(again["result"]["files"][0]["url"]).content == r.content  # deterministic


def test_a_rate_limit_retry_waits_at_least_retry_after(server: Server, key: str) -> None:
    params = {"mock_fail_attempts": 1, "mock_error": "rate_limited", "mock_retry_after": 1.0}
    with server.client(key) as c:
        done = wait(c, submit(c, params=params)["id"])
    assert done["status"] == "SUCCESS"
    first, second = done["history"]
    assert first["error"]["type"] == "rate_limited"
    gap = datetime.fromisoformat(second["started_at"]) - datetime.fromisoformat(first["ended_at"])
    assert gap.total_seconds() >= 0.99  # the route's own backoff is 0.05 s: Retry-After won


def test_event_stream_of_a_waiting_task_shows_its_position(make_server: Any) -> None:
    route = mock_route(instances=[{"name": "only", "max_concurrency": 1}])
    server: Server = make_server([route])
    server.start()
    with server.client(server.create_key("acme")) as c:
        submit(c, params={"mock_latency_ms": 1500})
        first_waiting = submit(c, params={"mock_latency_ms": 1500})  # > one SSE tick
        second_waiting = submit(c)
        events = []
        with c.stream("GET", f"/v1/tasks/{second_waiting['id']}/events") as r:
            name = None
            for line in r.iter_lines():
                if line.startswith("event:"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    events.append((name, json.loads(line[5:])))
        assert wait(c, first_waiting["id"])["status"] == "SUCCESS"
    assert events[0][0] == "queued" and events[0][1]["position"] == 2
    assert ("position", {"task_id": second_waiting["id"], "position": 1}) in events
    names = [n for n, _ in events]
    assert names.index("position") < names.index("started") < names.index("finished")
    assert events[-1][1]["status"] == "SUCCESS"
