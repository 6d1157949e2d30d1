"""Admins' actions over HTTP, against a server process: pausing and resuming routes,
running ended tasks again, cancelling and retrying by filter, and the worker processes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, mock_route, until

Clients = Callable[[Server, str], httpx.Client]


@pytest.fixture
def clients() -> Iterator[Clients]:
    """Clients of a server for a key, closed after the test."""
    made: list[httpx.Client] = []

    def client(server: Server, key: str) -> httpx.Client:
        made.append(server.client(key))
        return made[-1]

    yield client
    for c in made:
        c.close()


@pytest.fixture
def two_routes(make_server: Any) -> Server:
    server: Server = make_server([mock_route("alpha"), mock_route("beta")])
    server.start()
    return server


def submit(c: httpx.Client, model: str, **params: Any) -> str:
    r = c.post("/v1/tasks", json={"kind": "chat", "model": model, "input": "hi", "params": params})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def status(c: httpx.Client, task_id: str) -> str:
    return str(c.get(f"/v1/tasks/{task_id}").json()["status"])


def ended(c: httpx.Client, task_id: str) -> dict[str, Any]:
    task: dict[str, Any] = c.get(f"/v1/tasks/{task_id}", params={"wait": 30}).json()
    assert task["finished_at"], task
    return task


def route(c: httpx.Client, name: str) -> dict[str, Any]:
    found = c.get("/v1/routes")
    assert found.status_code == 200, found.text
    return next(r for r in found.json()["data"] if r["name"] == name)


def test_a_paused_route_holds_its_tasks_while_another_runs_and_resume_starts_them(
    two_routes: Server, clients: Clients
) -> None:
    admin = clients(two_routes, two_routes.create_key("ops", admin=True))
    slow = submit(admin, "alpha", mock_latency_ms=1500)
    until(lambda: status(admin, slow) == "PROCESSING", what="the slow task to start")
    paused = admin.post("/v1/routes/alpha/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    held = [submit(admin, "alpha") for _ in range(3)]
    others = [submit(admin, "beta") for _ in range(3)]
    assert all(ended(admin, t)["status"] == "SUCCESS" for t in others)
    assert ended(admin, slow)["status"] == "SUCCESS"  # a running task finishes
    assert [status(admin, t) for t in held] == ["PENDING"] * 3
    alpha = route(admin, "alpha")
    assert (alpha["paused"], alpha["waiting"], alpha["running"]) == (True, 3, 0)
    assert alpha["capacity"] == 16 and alpha["instances"][0]["name"] == "alpha-1"
    assert route(admin, "beta")["paused"] is False
    resumed = admin.post("/v1/routes/alpha/resume")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    assert all(ended(admin, t)["status"] == "SUCCESS" for t in held)
    assert admin.post("/v1/routes/nope/pause").status_code == 404


def test_retry_brings_a_failed_task_to_success_with_its_first_attempts_kept(
    server: Server, key: str, clients: Clients
) -> None:
    admin = clients(server, server.create_key("ops", admin=True))
    tenant = clients(server, key)
    task_id = submit(tenant, "mock", mock_fail_attempts=3)  # the route allows 3 attempts
    first = ended(tenant, task_id)
    assert (first["status"], first["attempts"]) == ("FAILED", 3)
    assert tenant.post(f"/v1/tasks/{task_id}/retry").status_code == 403
    again = admin.post(f"/v1/tasks/{task_id}/retry")
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "PENDING" and again.json()["max_attempts"] == 6
    done = ended(tenant, task_id)
    assert done["status"] == "SUCCESS" and done["attempts"] == 4
    assert [a["outcome"] for a in done["history"]] == ["retry", "retry", "failed", "success"]
    events = [e["event"] for e in tenant.get(f"/v1/tasks/{task_id}/logs").json()["entries"]]
    assert "admin_retry" in events
    twice = admin.post(f"/v1/tasks/{task_id}/retry")
    assert twice.status_code == 409 and "SUCCESS" in twice.json()["error"]["message"]
    assert admin.post("/v1/tasks/nope/retry").status_code == 404


def test_bulk_cancel_and_retry_take_what_the_filters_name(
    two_routes: Server, clients: Clients
) -> None:
    admin = clients(two_routes, two_routes.create_key("ops", admin=True))
    tenant = clients(two_routes, two_routes.create_key("acme"))
    assert admin.post("/v1/routes/alpha/pause").status_code == 200
    alphas = [submit(tenant, "alpha") for _ in range(4)]
    betas = [submit(admin, "alpha") for _ in range(2)]  # tenant "ops"
    refused = admin.post("/v1/tasks/cancel", json={})
    assert refused.status_code == 400 and "filter" in refused.json()["error"]["message"]
    assert admin.post("/v1/tasks/cancel", json={"route": "nope"}).status_code == 404
    assert admin.post("/v1/tasks/cancel", json={"colour": "red"}).status_code == 422
    cancelled = admin.post("/v1/tasks/cancel", json={"route": "alpha", "tenant": "acme"})
    assert cancelled.status_code == 200 and cancelled.json() == {"cancelled": 4}
    assert [status(admin, t) for t in alphas] == ["CANCELLED"] * 4
    assert [status(admin, t) for t in betas] == ["PENDING"] * 2
    log = tenant.get(f"/v1/tasks/{alphas[0]}/logs").json()["entries"]
    assert any(e["event"] == "admin_cancel" for e in log)
    assert admin.post("/v1/routes/alpha/resume").status_code == 200
    retried = admin.post("/v1/tasks/retry", json={"status": ["CANCELLED"], "model": "alpha"})
    assert retried.status_code == 200 and retried.json() == {"retried": 4}
    assert all(ended(admin, t)["status"] == "SUCCESS" for t in alphas + betas)
    again = admin.post("/v1/tasks/retry", json={"status": ["CANCELLED"]})
    assert again.json() == {"retried": 0}


def test_workers_are_listed_and_one_drains_from_the_api(
    server: Server, key: str, clients: Clients
) -> None:
    admin = clients(server, server.create_key("ops", admin=True))
    tenant = clients(server, key)
    assert tenant.get("/v1/workers").status_code == 403
    [worker] = admin.get("/v1/workers").json()["data"]
    assert worker["state"] == "running" and worker["routes"] == ["mock"]
    assert admin.post("/v1/workers/nobody/drain").status_code == 404
    drained = admin.post(f"/v1/workers/{worker['id']}/drain")
    assert drained.status_code == 200, drained.text

    def stopped() -> bool:
        [w] = admin.get("/v1/workers").json()["data"]
        return bool(w["state"] == "stopped")

    until(stopped, what="the drained worker to stop")
    task_id = submit(tenant, "mock")  # the API still takes tasks; no worker runs them
    assert status(tenant, task_id) == "PENDING"
    assert admin.post(f"/v1/workers/{worker['id']}/drain").status_code == 404


def test_the_cli_pauses_lists_cancels_retries_and_drains(two_routes: Server) -> None:
    env = {"TASKGATE_KEY": two_routes.create_key("ops", admin=True)}
    assert "route alpha: paused, 0 waiting" in two_routes.cli("pause", "alpha", **env).stdout
    task_id = two_routes.cli("submit", "--no-wait", "--model", "alpha", "hi", **env).stdout.strip()
    table = two_routes.cli("routes", **env).stdout.splitlines()
    assert table[0].split()[:3] == ["route", "state", "waiting"] or table[1].split()[:3] == [
        "route",
        "state",
        "waiting",
    ]
    alpha = next(line for line in table if line.strip().startswith("alpha"))
    assert alpha.split()[1:3] == ["paused", "1"], alpha
    routes = json.loads(two_routes.cli("routes", "--json", **env).stdout)["data"]
    assert [r["paused"] for r in routes] == [True, False]
    refused = two_routes.cli("cancel", task_id, "--model", "alpha", check=False, **env)
    assert refused.returncode != 0 and "not both" in refused.stderr
    out = two_routes.cli("cancel", "--route", "alpha", **env).stdout
    assert out.strip() == "cancelled 1 tasks"
    two_routes.cli("resume", "alpha", **env)
    again = json.loads(two_routes.cli("retry", task_id, **env).stdout)
    assert again["id"] == task_id and again["status"] == "PENDING"
    assert json.loads(two_routes.cli("retry", "--status", "CANCELLED", "--json", **env).stdout) == {
        "retried": 0
    }
    workers = json.loads(two_routes.cli("workers", "--json", **env).stdout)["data"]
    assert [w["state"] for w in workers] == ["running"]
    assert "running" in two_routes.cli("workers", **env).stdout
    drained = two_routes.cli("drain", workers[0]["id"], **env).stdout
    assert drained.strip() == f"worker {workers[0]['id']}: draining"
    missing = two_routes.cli("drain", "nobody", check=False, **env)
    assert missing.returncode == 1 and "404" in missing.stderr
    assert "Traceback" not in missing.stderr
