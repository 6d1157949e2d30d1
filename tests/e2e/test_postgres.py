"""The same server on PostgreSQL, chosen by the store URL alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import PG_URL, reset_postgres
from tests.e2e.conftest import Server

pytestmark = pytest.mark.postgres


def test_a_server_on_postgresql_runs_tasks_and_survives_a_kill(make_server: Any) -> None:
    asyncio.run(reset_postgres())
    server: Server = make_server(store_url=PG_URL)
    server.start()
    key = server.create_key("acme")
    with server.client(key) as c:
        fast = c.post("/v1/tasks", json={"kind": "chat", "model": "mock", "input": "hi"}).json()
        slow = c.post(
            "/v1/tasks",
            json={
                "kind": "chat",
                "model": "mock",
                "input": "slow",
                "params": {"mock_latency_ms": 3000},
            },
        ).json()
        done = c.get(f"/v1/tasks/{fast['id']}", params={"wait": 10}).json()
        assert done["status"] == "SUCCESS"
        assert done["result"]["output"]["text"] == "mock reply to: hi"
        while c.get(f"/v1/tasks/{slow['id']}").json()["status"] != "PROCESSING":
            pass
        server.stop(kill=True)  # the slow task dies with the process...
        server.start()  # ...and the restarted server requeues and finishes it
        after = c.get(f"/v1/tasks/{slow['id']}", params={"wait": 20}).json()
    assert after["status"] == "SUCCESS"
    assert [a["outcome"] for a in after["history"]] == ["lost", "success"]
