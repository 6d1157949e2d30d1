"""The distributed mode as users run it: ``taskgate api`` and ``taskgate worker`` processes on
the real PostgreSQL, a fake OpenAI-compatible backend that counts the calls in flight."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PG_URL, REDIS_URL, drop_postgres_connections, reset_postgres
from tests.e2e.conftest import Server, until
from tests.fakes import in_thread
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.postgres

CAPACITY = 4


class Cluster:
    """Gateways and workers on one PostgreSQL store, one shared files folder and one
    backend of ``CAPACITY`` slots."""

    def __init__(self, root: Path, backend: str, **settings: Any) -> None:
        self.root = root
        route = {
            "name": "gpt",
            "models": ["gpt-*"],
            "provider": "openai",
            "instances": [
                {
                    "name": "b1",
                    "endpoint": backend,
                    "max_concurrency": CAPACITY,
                    "secret_env": "FAKE_KEY",
                }
            ],
            "timeout": 30,
            "retry": {"max_attempts": 3, "backoff_base": 0.05, "backoff_max": 0.2},
        }
        self.settings = {
            "store_url": PG_URL,
            "files_url": f"file://{root}/files",
            "routes": [route],
            **settings,
        }
        self.apis: list[Server] = []
        self.workers: list[Server] = []

    def _server(self, name: str) -> Server:
        root = self.root / name
        root.mkdir()
        settings = dict(self.settings)
        return Server(root, settings.pop("routes"), **settings)

    def api(self) -> Server:
        s = self._server(f"api{len(self.apis)}")
        s.start("api")
        self.apis.append(s)
        return s

    def worker(self, *args: str, grace: float = 1.0) -> Server:
        s = self._server(f"worker{len(self.workers)}")
        s.grace = grace
        s.start("worker", *args)
        self.workers.append(s)
        return s

    def stop(self) -> None:
        for s in [*self.apis, *self.workers]:
            s.stop(kill=True)


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    monkeypatch.setenv("FAKE_KEY", "sk-fake-key")
    with in_thread(FakeOpenAI(latency=0.05)) as fake:
        yield fake


@pytest.fixture
def cluster(tmp_path: Path, backend: FakeOpenAI) -> Iterator[Any]:
    asyncio.run(reset_postgres())
    made: list[Cluster] = []

    def make(**settings: Any) -> Cluster:
        c = Cluster(tmp_path / f"cluster{len(made)}", backend.base_url, **settings)
        c.root.mkdir()
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def prompts(backend: FakeOpenAI) -> list[str]:
    """The prompts the backend was sent, sorted."""
    return sorted(r.body["messages"][-1]["content"] for r in backend.requests)


def chat(prompt: str) -> dict[str, Any]:
    return {"kind": "chat", "model": "gpt-4o", "input": prompt}


def wait_done(client: httpx.Client, task_id: str, timeout: float = 30) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        task = client.get(f"/v1/tasks/{task_id}", params={"wait": 5}).json()
        if task["status"] not in ("PENDING", "PROCESSING") or time.monotonic() > end:
            return task


def test_tasks_from_two_gateways_run_once_each_within_capacity(
    cluster: Any, backend: FakeOpenAI
) -> None:
    c = cluster()
    a, b = c.api(), c.api()
    c.worker()
    c.worker()
    key = a.create_key("acme")
    with a.client(key) as ca, b.client(key) as cb:
        ids = [
            (ca if i % 2 else cb).post("/v1/tasks", json=chat(f"task {i}")).json()["id"]
            for i in range(80)
        ]
        # waited on the other gateway: a worker's finish wakes it across processes
        done = [wait_done(cb if i % 2 else ca, tid) for i, tid in enumerate(ids)]
    assert [t["status"] for t in done] == ["SUCCESS"] * 80
    assert [t["result"]["output"]["text"] for t in done] == [f"echo: task {i}" for i in range(80)]
    assert prompts(backend) == sorted(f"task {i}" for i in range(80))  # each exactly once
    assert backend.peak == CAPACITY  # full, never more, with two workers claiming


def test_a_wait_and_a_stream_on_a_gateway_are_woken_by_a_worker_elsewhere(
    cluster: Any, backend: FakeOpenAI
) -> None:
    c = cluster()
    api = c.api()
    c.worker()
    key = api.create_key("acme")
    with api.client(key) as client:
        tid = client.post("/v1/tasks", json=chat("hi")).json()["id"]
        started = time.monotonic()
        task = client.get(f"/v1/tasks/{tid}", params={"wait": 20}).json()
        assert task["status"] == "SUCCESS"
        assert time.monotonic() - started < 5  # woken by the event, not the slow re-read
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "one two three"}]}
        with client.stream(
            "POST", "/openai/v1/chat/completions", json={**body, "stream": True}
        ) as r:
            chunks = [line for line in r.iter_lines() if line.startswith("data: {")]
    assert len(chunks) >= 3  # the backend's deltas, relayed from the worker's process


@pytest.mark.redis
def test_cancel_on_one_gateway_stops_the_call_on_the_worker_over_redis(
    cluster: Any, backend: FakeOpenAI
) -> None:
    c = cluster(events_url=REDIS_URL)
    a, b = c.api(), c.api()
    c.worker()
    key = a.create_key("acme")
    backend.script("hold")
    with a.client(key) as ca, b.client(key) as cb:
        tid = ca.post("/v1/tasks", json=chat("held")).json()["id"]
        until(lambda: backend.in_flight > 0)
        cancelled = cb.delete(f"/v1/tasks/{tid}").json()
        assert cancelled["status"] == "CANCELLED"
        until(lambda: backend.cut_off > 0)  # the call on the worker was stopped
        assert ca.get(f"/v1/tasks/{tid}").json()["status"] == "CANCELLED"
    backend.release()


def test_a_worker_killed_mid_task_loses_nothing(cluster: Any, backend: FakeOpenAI) -> None:
    backend.latency = 1.0
    c = cluster(scheduler={"lease_seconds": 5, "poll_interval": 0.2})
    api = c.api()
    doomed = c.worker()
    key = api.create_key("acme")
    with api.client(key) as client:
        ids = [client.post("/v1/tasks", json=chat(f"t{i}")).json()["id"] for i in range(6)]
        until(lambda: backend.in_flight >= CAPACITY)
        doomed.stop(kill=True)  # SIGKILL with four calls under way
        c.worker()
        done = [wait_done(client, tid) for tid in ids]
    assert [t["status"] for t in done] == ["SUCCESS"] * 6
    outcomes = [[h["outcome"] for h in t["history"]] for t in done]
    assert outcomes.count(["lost", "success"]) == CAPACITY
    assert all(t["attempts"] == len(t["history"]) for t in done)


def test_sigterm_drains_a_worker(cluster: Any, backend: FakeOpenAI) -> None:
    """The call outlasts the lease (2 s): the draining worker keeps renewing it, so the other
    worker neither takes the task over nor runs it again; and it claims nothing new."""
    backend.latency = 3.0
    c = cluster(scheduler={"lease_seconds": 2, "poll_interval": 0.2})
    api = c.api()
    draining = c.worker(grace=8)
    key = api.create_key("acme")
    with api.client(key) as client:
        tid = client.post("/v1/tasks", json=chat("finish me")).json()["id"]
        until(lambda: backend.in_flight > 0)
        c.worker()
        assert draining.proc is not None
        draining.proc.send_signal(signal.SIGTERM)
        later = client.post("/v1/tasks", json=chat("not yours")).json()["id"]
        assert draining.proc.wait(10) == 0
        task = client.get(f"/v1/tasks/{tid}").json()
        assert task["status"] == "SUCCESS"  # finished within the grace period
        assert [h["outcome"] for h in task["history"]] == ["success"]
        other = wait_done(client, later)
    assert other["status"] == "SUCCESS"
    assert prompts(backend) == ["finish me", "not yours"]  # each run once


def test_gateways_and_workers_ride_out_postgresql_dropping_every_connection(
    cluster: Any, backend: FakeOpenAI
) -> None:
    c = cluster()
    api = c.api()
    c.worker()
    key = api.create_key("acme")
    accepted: list[str] = []
    refused: list[int] = []
    with api.client(key) as client:
        for i in range(40):
            if i == 20:  # what clients and workers see of a restart: every connection gone
                asyncio.run(drop_postgres_connections())
            try:
                r = client.post("/v1/tasks", json=chat(f"t{i}"))
            except httpx.HTTPError:
                continue
            if r.is_success:
                accepted.append(r.json()["id"])
            else:
                refused.append(r.status_code)
        done = [wait_done(client, tid) for tid in accepted]
    assert len(accepted) >= 38, refused  # only requests caught in the drop fail, with a 5xx
    assert [t["status"] for t in done] == ["SUCCESS"] * len(accepted)


def test_an_admin_drains_one_worker_process_and_the_other_runs_on(cluster: Any) -> None:
    c = cluster()
    api = c.api()
    one, two = c.worker(), c.worker()
    with api.client(api.create_key("ops", admin=True)) as admin:
        workers = admin.get("/v1/workers").json()["data"]
        assert len(workers) == 2 and {w["state"] for w in workers} == {"running"}
        first = workers[-1]["id"]  # the first started (newest first)
        assert admin.post(f"/v1/workers/{first}/drain").status_code == 200
        drained = next(w for w in (one, two) if w.proc and str(w.proc.pid) in first)
        assert drained.proc is not None
        drained.proc.wait(timeout=30)  # the process drains and exits
        states = {w["id"]: w["state"] for w in admin.get("/v1/workers").json()["data"]}
        assert states[first] == "stopped" and list(states.values()).count("running") == 1
        task = admin.post("/v1/tasks", json=chat("after the drain")).json()
        assert wait_done(admin, task["id"])["status"] == "SUCCESS"
