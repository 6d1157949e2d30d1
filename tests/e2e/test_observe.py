"""Observing a running server as an operator would: /metrics after a scripted workload,
JSON log lines with their fields and no secrets, a task's own log, /v1/stats and the
``logs`` and ``stats`` commands, and the queue gauges following a backlog."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest

from tests.conftest import PG_URL, allow_connections, reset_postgres
from tests.e2e.conftest import Server, free_port, mock_route, until

SECRET = "sk-mock-SECRET-0b5e"  # the instance's secret: it must never be shown or logged
FAST_RETRY = {"max_attempts": 3, "backoff_base": 0.05, "backoff_max": 0.1}


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series in a Prometheus text exposition (0 if absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def observed(make_server: Any, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("MOCK_SECRET", SECRET)
    routes = [
        mock_route(
            name,
            retry=FAST_RETRY,
            instances=[{"name": f"{name}-1", "max_concurrency": 1, "secret_env": "MOCK_SECRET"}],
        )
        for name in ("flaky", "doomed", "slow")
    ]
    # every transition, and the access log
    s: Server = make_server(routes, log_level="debug", log_format="json", access_log=True)
    s.configure(log_file=str(s.root / "taskgate.log"))
    s.start()
    return s


def chat(model: str, **params: Any) -> dict[str, Any]:
    return {"kind": "chat", "model": model, "input": "hello", "params": params}


def test_a_scripted_workload_shows_in_metrics_logs_and_the_task_log(observed: Server) -> None:
    admin_key = observed.create_key("ops", admin=True)
    key = observed.create_key("acme")
    with observed.client(key) as c:
        flaky = c.post("/v1/tasks", json=chat("flaky", mock_fail_attempts=2)).json()["id"]
        doomed = c.post("/v1/tasks", json=chat("doomed", mock_fail_attempts=3)).json()["id"]
        assert c.post("/v1/tasks", json={"kind": "chat"}).status_code == 422  # refused
        blocker = c.post("/v1/tasks", json=chat("slow", mock_latency_ms=60_000)).json()["id"]
        ended = {t: c.get(f"/v1/tasks/{t}", params={"wait": 30}).json() for t in (flaky, doomed)}
        assert ended[flaky]["status"] == "SUCCESS" and ended[doomed]["status"] == "FAILED"
        assert c.delete(f"/v1/tasks/{blocker}").json()["status"] == "CANCELLED"
        entries = c.get(f"/v1/tasks/{flaky}/logs").json()["entries"]
    text = httpx.get(f"{observed.url}/metrics").text  # a scraper sends no key

    # two retries and one success on the flaky route's instance
    at = {"route": "flaky", "instance": "flaky-1"}
    assert sample(text, "taskgate_retries_total", **at) == 2
    assert sample(text, "taskgate_attempts_total", **at, outcome="success") == 1
    assert sample(text, "taskgate_attempts_total", **at, outcome="retry") == 2
    assert sample(text, "taskgate_tasks_ended_total", route="flaky", status="SUCCESS") == 1
    failed = {"route": "doomed", "status": "FAILED", "error_type": "overloaded"}
    assert sample(text, "taskgate_tasks_ended_total", **failed) == 1
    assert sample(text, "taskgate_tasks_ended_total", route="slow", status="CANCELLED") == 1
    assert sample(text, "taskgate_tasks_submitted_total", route="flaky", kind="chat") == 1
    assert sample(text, "taskgate_tokens_total", route="flaky", model="flaky", direction="in") > 0
    assert sample(text, "taskgate_queue_wait_seconds_count", route="flaky") == 3
    refused = {"api": "native", "method": "POST", "path": "/v1/tasks", "status": "422"}
    assert sample(text, "taskgate_http_request_seconds_count", **refused) == 1
    assert sample(text, "taskgate_instance_capacity", route="slow", instance="slow-1") == 1
    assert flaky not in text and SECRET not in text

    # the task's own log: every attempt, with the backend's message, and the retries
    ends = [e for e in entries if e["event"] in ("retry", "success")]
    assert [(e["event"], e["attempt"], e["instance"]) for e in ends] == [
        ("retry", 1, "flaky-1"),
        ("retry", 2, "flaky-1"),
        ("success", 3, "flaky-1"),
    ]
    assert [e["message"] for e in ends[:2]] == [f"mock overloaded on attempt {n}" for n in (1, 2)]
    assert all("retry_in" in e["data"] for e in ends[:2])
    assert entries[0]["event"] == "submitted" and entries[-1]["event"] == "ended"
    assert sum(e["event"] == "started" for e in entries) == 3

    # the commands show the same
    shown = observed.cli("logs", flaky, TASKGATE_KEY=key).stdout
    assert "mock overloaded on attempt 2" in shown and "success" in shown
    table = observed.cli("stats", TASKGATE_KEY=admin_key).stdout
    assert "flaky" in table and "slow-1" in table
    assert observed.cli("stats", check=False, TASKGATE_KEY=key).returncode != 0  # admins only

    # log lines: JSON, one per transition, with the task's fields; no secret anywhere
    observed.stop()  # its last lines written
    log_text = (observed.root / "taskgate.log").read_text()
    for secret in (SECRET, key, admin_key):
        assert secret not in log_text and secret not in observed.log.read_text()
    lines = [json.loads(line) for line in log_text.splitlines()]
    mine = [ln for ln in lines if ln.get("task_id") == flaky]
    assert [ln["message"] for ln in mine] == [
        "task submitted",
        "task started",
        "retry scheduled",
        "task started",
        "retry scheduled",
        "task started",
        "task ended",
    ]
    for ln in mine:
        assert ln["tenant"] == "acme" and ln["route"] == "flaky" and ln["model"] == "flaky"
        assert ln["logger"] == "taskgate.tasks" and "time" in ln
    levels = {ln["message"]: ln["level"] for ln in mine}  # INFO: what an operator acts on
    assert levels == {
        "task submitted": "DEBUG",
        "task started": "DEBUG",
        "retry scheduled": "INFO",
        "task ended": "INFO",
    }
    started = [ln for ln in mine if ln["message"] == "task started"]
    assert [(ln["attempt"], ln["instance"]) for ln in started] == [
        (n, "flaky-1") for n in (1, 2, 3)
    ]
    assert mine[-1]["status"] == "SUCCESS" and mine[-1]["duration"] > 0
    assert 0 <= mine[-1]["queue_wait"] <= mine[-1]["duration"] and mine[-1]["attempt"] == 3
    assert {"delay", "reason", "error_type"} <= set(mine[2])
    access = [ln for ln in lines if ln["logger"] == "taskgate.access"]
    assert any(ln["status"] == 422 and ln["api"] == "native" for ln in access)


def test_queue_gauges_follow_a_backlog(observed: Server) -> None:
    key = observed.create_key("acme")
    admin_key = observed.create_key("ops", admin=True)
    with observed.client(key) as c, observed.client(admin_key) as a:
        blocker = c.post("/v1/tasks", json=chat("slow", mock_latency_ms=60_000)).json()["id"]
        for _ in range(4):
            c.post("/v1/tasks", json=chat("slow"))

        def gauge(name: str, **labels: str) -> float:
            return sample(httpx.get(f"{observed.url}/metrics").text, name, **labels)

        waiting = {"route": "slow", "priority": "default"}
        until(lambda: gauge("taskgate_queue_waiting", **waiting) == 4, what="a backlog of 4")
        assert gauge("taskgate_running", route="slow", instance="slow-1") == 1
        lane = next(
            ln
            for ln in a.get("/v1/stats").json()["lanes"]
            if (ln["route"], ln["priority"]) == ("slow", "default")
        )
        assert lane["waiting"] == 4 and lane["running"] == 1
        assert 0 < lane["oldest_wait_seconds"] < 120  # since it was submitted, moments ago
        oldest = gauge("taskgate_queue_oldest_wait_seconds", route="slow")
        assert 0 < oldest < 120
        c.delete(f"/v1/tasks/{blocker}")
        until(lambda: gauge("taskgate_queue_waiting", **waiting) == 0, what="the backlog drained")
        assert gauge("taskgate_running", route="slow", instance="slow-1") == 0  # not gone
        stats = a.get("/v1/stats").json()
        lane = next(
            ln for ln in stats["lanes"] if (ln["route"], ln["priority"]) == ("slow", "default")
        )
        assert lane["ended_last_minute"] == 5 and lane["run_seconds_p50"] is not None
        [inst] = [i for i in stats["instances"] if i["instance"] == "slow-1"]
        assert inst["state"] == "healthy" and inst["capacity"] == 1


def test_health_answers_without_a_key_and_without_counts(observed: Server) -> None:
    live = httpx.get(f"{observed.url}/health/live")
    ready = httpx.get(f"{observed.url}/health/ready")
    assert live.status_code == 200 and live.json() == {"status": "alive"}
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"store": True, "events": True, "dispatch": True},
    }


@pytest.mark.postgres
def test_ready_turns_not_ready_while_postgresql_is_away_and_back_after(
    make_server: Any,
) -> None:
    asyncio.run(reset_postgres())
    s: Server = make_server([mock_route()], store_url=PG_URL)
    s.start()

    def ready() -> int:
        return httpx.get(f"{s.url}/health/ready", timeout=10).status_code

    assert ready() == 200
    try:
        asyncio.run(allow_connections(False))
        until(lambda: ready() == 503, what="not ready while the database refuses connections")
        answer = httpx.get(f"{s.url}/health/ready", timeout=10).json()
        assert answer["status"] == "not ready" and answer["checks"]["store"] is False
        assert httpx.get(f"{s.url}/health/live").status_code == 200  # alive all the while
    finally:
        asyncio.run(allow_connections(True))
    until(lambda: ready() == 200, what="ready again once the database is back")


@pytest.mark.postgres
def test_a_worker_serves_metrics_and_health_on_its_metrics_port(make_server: Any) -> None:
    asyncio.run(reset_postgres())
    port = free_port()
    api: Server = make_server([mock_route()], store_url=PG_URL, metrics={"enabled": False})
    worker: Server = make_server([mock_route()], store_url=PG_URL, metrics={"port": port})
    api.start("api")
    worker.start("worker")
    key = api.create_key("acme")
    with api.client(key) as c:
        assert c.get("/metrics").status_code == 404  # metrics are off on this one
        tid = c.post("/v1/tasks", json=chat("mock")).json()["id"]
        assert c.get(f"/v1/tasks/{tid}", params={"wait": 30}).json()["status"] == "SUCCESS"
    ops = f"http://127.0.0.1:{port}"
    text = httpx.get(f"{ops}/metrics").text
    assert sample(text, "taskgate_attempts_total", route="mock", outcome="success") == 1
    assert sample(text, "taskgate_instance_state", instance="mock-1", state="healthy") == 1
    ready = httpx.get(f"{ops}/health/ready").json()
    assert ready == {"status": "ready", "checks": {"store": True, "events": True, "dispatch": True}}
