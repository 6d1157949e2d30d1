"""Live configuration in the distributed mode: a reload on a gateway reaches a ``taskgate
worker``, and a registered instance joins the worker's route, over PostgreSQL's
LISTEN/NOTIFY and over Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REDIS_URL, reset_postgres
from tests.e2e.conftest import Server, mock_route, until
from tests.e2e.test_distributed import Cluster, chat, wait_done
from tests.fakes import in_thread
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.postgres

# long: what a worker learns promptly, it learns from the events
SLOW_REREAD = {"reread_seconds": 60}


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    monkeypatch.setenv("FAKE_KEY", "sk-fake-key")
    with in_thread(FakeOpenAI(latency=0.05)) as fake:
        yield fake


@pytest.fixture(params=["postgres", pytest.param("redis", marks=pytest.mark.redis)])
def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, backend: FakeOpenAI
) -> Iterator[Cluster]:
    asyncio.run(reset_postgres())
    events = {"events_url": REDIS_URL} if request.param == "redis" else {}
    c = Cluster(tmp_path / "cluster", backend.base_url, registration=SLOW_REREAD, **events)
    c.root.mkdir()
    yield c
    c.stop()


def add_route(servers: list[Server], route: dict[str, Any]) -> None:
    for s in servers:
        routes = yaml.safe_load(s.config.read_text())["routes"]
        s.configure(routes=[*routes, route])


def test_one_reload_reaches_the_worker(cluster: Cluster) -> None:
    api = cluster.api()
    worker = cluster.worker()
    with api.client(api.create_key("ops", admin=True)) as c:
        add_route([api, worker], mock_route("extra"))
        resp = c.post("/v1/admin/reload")
        assert resp.status_code == 200, resp.text
        assert resp.json()["routes"]["added"] == ["extra"]
        task_id = c.post("/v1/tasks", json={**chat("new"), "model": "extra"}).json()["id"]
        task = wait_done(c, task_id)  # only the reloaded worker has a lane for "extra"
        assert task["status"] == "SUCCESS"
        assert task["history"][0]["route"] == "extra"
    assert b"(a reload on another process): routes added: extra" in worker.log.read_bytes()


def test_a_refused_reload_changes_no_process(cluster: Cluster) -> None:
    api = cluster.api()
    worker = cluster.worker()
    with api.client(api.create_key("ops", admin=True)) as c:
        api.configure(routes=[{"name": "broken"}])
        add_route([worker], mock_route("extra"))  # the worker's file would load
        assert c.post("/v1/admin/reload").status_code == 400
        assert wait_done(c, c.post("/v1/tasks", json=chat("old")).json()["id"])["status"] == (
            "SUCCESS"
        )
    assert b"reload" not in worker.log.read_bytes()  # it was never asked


def test_a_registered_instance_joins_the_workers_route(
    cluster: Cluster, backend: FakeOpenAI
) -> None:
    api = cluster.api()
    cluster.worker()
    with api.client(api.create_key("ops", admin=True)) as c:

        def runs_on(instance: str) -> bool:
            task = wait_done(c, c.post("/v1/tasks", json=chat("which")).json()["id"])
            assert task["status"] == "SUCCESS"
            return bool(task["history"][0]["instance"] == instance)

        joined = {
            "name": "b2",
            "endpoint": backend.base_url,
            "secret_env": "FAKE_KEY",  # a variable the route's configured instance names
            "max_concurrency": 2,
            "weight": 1000,
            "ttl": 60,
        }
        resp = c.post("/v1/routes/gpt/instances", json=joined)
        assert resp.status_code == 201, resp.text
        assert "sk-fake-key" not in resp.text
        # the worker hears of it (its own reread is a minute away) and picks it: it weighs most
        until(lambda: runs_on("b2"), what="a task on the registered instance")
        assert backend.requests[-1].headers["Authorization"] == "Bearer sk-fake-key"
        assert c.delete("/v1/routes/gpt/instances/b2").status_code == 200
        until(lambda: runs_on("b1"), what="the worker to drop it")
        assert runs_on("b1")
