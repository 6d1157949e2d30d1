"""Fan-out batches over the native API: one request, a task per model, an aggregate status."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Server, mock_route


def batch_server(make_server: Any) -> Server:
    routes = [
        mock_route("fast"),
        mock_route("slow", options={"latency_ms": 20_000}),
        mock_route("bad", options={"failure_rate": 1.0}, retry={"max_attempts": 1}),
    ]
    server: Server = make_server(routes)
    server.start()
    return server


def test_a_batch_runs_one_task_per_model_and_reports_each(make_server: Any) -> None:
    server = batch_server(make_server)
    with server.client(server.create_key("acme")) as c:
        r = c.post("/v1/batches", json={"kind": "chat", "models": ["fast", "bad"], "input": "hi"})
        assert r.status_code == 202, r.text
        batch = r.json()
        assert batch["status"] == "PROCESSING" and len(batch["task_ids"]) == 2
        assert [r["status"] for r in batch["results"]] == [0, 0]
        done = c.get(f"/v1/batches/{batch['batch_id']}", params={"wait": 20}).json()
        assert done["status"] == "PARTIAL"
        fast, bad = done["results"]
        assert (fast["model_name"], fast["task_status"], fast["status"]) == ("fast", "SUCCESS", 1)
        assert fast["response_text"] == "mock reply to: hi" and fast["cost_time"] >= 0
        assert (bad["model_name"], bad["task_status"], bad["status"]) == ("bad", "FAILED", 2)
        assert bad["error"]["type"] == "overloaded"
        task = c.get(f"/v1/tasks/{fast['task_id']}").json()
        assert task["batch_id"] == batch["batch_id"]
        all_ok = c.post("/v1/batches", json={"kind": "chat", "models": ["fast", "fast-2"]}).json()
        assert c.get(f"/v1/batches/{all_ok['id']}", params={"wait": 20}).json()["status"] == (
            "SUCCESS"
        )


def test_first_wins_cancels_the_rest(make_server: Any) -> None:
    server = batch_server(make_server)
    with server.client(server.create_key("acme")) as c:
        body = {"kind": "chat", "models": ["slow", "fast"], "input": "x", "first_wins": True}
        batch = c.post("/v1/batches", json=body).json()
        done = c.get(f"/v1/batches/{batch['id']}", params={"wait": 10}).json()
        assert done["status"] == "SUCCESS"
        slow, fast = done["results"]
        assert fast["task_status"] == "SUCCESS"
        assert slow["task_status"] == "CANCELLED"
        assert "answered first" in slow["error"]["message"]


def test_a_bad_model_refuses_the_whole_batch_and_batches_are_tenant_scoped(
    make_server: Any,
) -> None:
    server = batch_server(make_server)
    a, b = server.create_key("a"), server.create_key("b")
    with server.client(a) as ca, server.client(b) as cb:
        r = ca.post("/v1/batches", json={"kind": "chat", "models": ["fast", "gpt-9"]})
        assert r.status_code == 400 and "gpt-9" in r.json()["error"]["message"]
        assert ca.get("/v1/tasks").json()["data"] == []
        r = ca.post("/v1/batches", json={"kind": "chat", "models": ["fast", "fast"]})
        assert r.status_code == 400
        assert ca.post("/v1/batches", json={"kind": "chat", "models": []}).status_code == 422
        batch = ca.post("/v1/batches", json={"kind": "chat", "models": ["slow"]}).json()
        assert cb.get(f"/v1/batches/{batch['id']}").status_code == 404
        assert cb.delete(f"/v1/batches/{batch['id']}").status_code == 404
        cancelled = ca.delete(f"/v1/batches/{batch['id']}").json()
        assert cancelled["status"] == "FAILED"
        assert [r["task_status"] for r in cancelled["results"]] == ["CANCELLED"]
