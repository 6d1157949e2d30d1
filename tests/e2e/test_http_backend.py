"""A taskgate server process whose route uses the YAML-described ``http`` provider against a
fake in-house model server running in this test process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_api import submit, wait
from tests.fakes import in_thread
from tests.fakes.http_server import FakeServer

KEY = "in-house-e2e-77aa31"


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    with in_thread(FakeServer()) as server:
        yield server


@pytest.fixture
def server(make_server: Any, fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("RANKER_KEY", KEY)
    route = {
        "name": "ranker",
        "models": ["ranker-*"],
        "provider": "http",
        "kinds": ["rank"],  # a kind of our own: declaring it on the route makes it known
        "instances": [{"name": "r1", "endpoint": fake.base_url, "secret_env": "RANKER_KEY"}],
        "options": {
            "path": "/v1/rank",
            "headers": {"Authorization": "Bearer {secret}"},
            "body": {"model": "{{model}}", "query": "{{input.query}}", "k": "{{params.k}}"},
            "result_path": "echo",
            "usage_path": "usage",
        },
    }
    s: Server = make_server([route])
    s.start()
    return s


def test_an_in_house_server_described_in_yaml_runs_tasks(server: Server, fake: FakeServer) -> None:
    with server.client(server.create_key("acme")) as c:
        task = submit(c, kind="rank", model="ranker-v2", input={"query": "cats"}, params={"k": 3})
        done = wait(c, task["id"])
    assert done["status"] == "SUCCESS", done
    assert done["result"]["output"] == {"model": "ranker-v2", "query": "cats", "k": 3}
    assert done["result"]["usage"] == {"tokens": 3}
    sent = fake.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/rank")
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in server.log.read_text()


def test_a_server_quoting_the_key_in_its_answer_does_not_leak_it(
    server: Server, fake: FakeServer
) -> None:
    quoted = {"you_sent": f"Bearer {KEY}", KEY: [KEY]}
    fake.reply(body={"echo": quoted, "usage": {"tokens": 1, "note": KEY}})
    with server.client(server.create_key("acme")) as c:
        task = submit(c, kind="rank", model="ranker-v2", input={"query": "q"}, params={"k": 1})
        done = wait(c, task["id"])
        shown = [c.get(f"/v1/tasks/{task['id']}").text, c.get("/v1/tasks").text]
    assert done["status"] == "SUCCESS", done
    assert done["result"]["output"] == {"you_sent": "Bearer ***", "***": ["***"]}
    assert done["result"]["usage"] == {"tokens": 1, "note": "***"}
    assert not any(KEY in text for text in shown)
    assert KEY not in server.log.read_text()
