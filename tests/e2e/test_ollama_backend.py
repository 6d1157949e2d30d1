"""A taskgate server process with one ``ollama`` route that discovers its models (no model
named in the config) against the fake Ollama server running in this test process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_api import submit, wait
from tests.e2e.test_openai_backend import read_events
from tests.fakes import in_thread
from tests.fakes.ollama_server import FakeOllama

KEY = "ollama-e2e-proxy-9d2c4b7a15e3"  # the instance sits behind an authenticating proxy


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with in_thread(FakeOllama(models=["llama3.2:latest", "deepseek-r1:7b"], key=KEY)) as server:
        yield server


@pytest.fixture
def server(make_server: Any, fake: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("FAKE_OLLAMA_KEY", KEY)
    instance = {"name": "o1", "endpoint": fake.base_url, "secret_env": "FAKE_OLLAMA_KEY"}
    route = {
        "name": "ollama",
        "provider": "ollama",
        "instances": [instance],
        "options": {"discover": True, "discover_interval": 0.2},
        "timeout": 30,
        "retry": {"max_attempts": 3, "backoff_base": 0.05, "backoff_max": 0.2},
    }
    s: Server = make_server([route])
    s.start()
    return s


def assert_no_secret(c: httpx.Client, task_id: str, server: Server) -> None:
    assert KEY not in c.get(f"/v1/tasks/{task_id}").text
    assert KEY not in server.log.read_text()


def chats(fake: FakeOllama) -> list[Any]:
    return [r.body for r in fake.requests if r.path == "/api/chat"]


def test_a_listed_model_streams_through_the_scheduler_to_success(
    server: Server, key: str, fake: FakeOllama
) -> None:
    fake.script("hold")
    with server.client(key) as c:
        task = submit(c, model="llama3.2", input="one two three", params={"stream": True})
        assert task["route"] == "ollama"
        events = read_events(c, task["id"], fake)
        assert_no_secret(c, task["id"], server)
    deltas = [data["data"]["delta"] for name, data in events if name == "progress"]
    assert deltas == ["echo: ", "one ", "two ", "three"]
    name, done = events[-1]
    assert (name, done["status"]) == ("finished", "SUCCESS")
    assert done["result"]["output"]["text"] == "echo: one two three"
    assert done["result"]["usage"] == {"input_tokens": 3, "output_tokens": 4}
    assert [a["outcome"] for a in done["history"]] == ["success"]
    assert fake.requests[-1].headers["Authorization"] == f"Bearer {KEY}"
    assert chats(fake)[-1]["model"] == "llama3.2"


def test_a_reasoning_model_keeps_its_thinking_apart(
    server: Server, key: str, fake: FakeOllama
) -> None:
    with server.client(key) as c:
        done = wait(c, submit(c, model="deepseek-r1:7b", input="why")["id"])
    assert done["status"] == "SUCCESS", done
    output = done["result"]["output"]
    assert (output["text"], output["reasoning"]) == ("echo: why", "thinking about: why")


def test_a_model_the_backend_does_not_list_is_refused_at_submit(
    server: Server, key: str, fake: FakeOllama
) -> None:
    with server.client(key) as c:
        r = c.post("/v1/tasks", json={"kind": "chat", "model": "mistral:7b", "input": "hi"})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "unknown model 'mistral:7b': no route serves it"
    assert chats(fake) == []


def test_a_500_is_retried_and_a_vanished_model_fails_at_once(
    server: Server, key: str, fake: FakeOllama
) -> None:
    with server.client(key) as c:
        fake.script("server_error")
        retried = wait(c, submit(c, model="llama3.2:latest", input="again")["id"])
        fake.script("not_found")  # deleted from Ollama since the last refresh
        gone = wait(c, submit(c, model="llama3.2", input="hi")["id"])
        assert_no_secret(c, gone["id"], server)
    assert retried["status"] == "SUCCESS"
    assert [a["outcome"] for a in retried["history"]] == ["retry", "success"]
    assert retried["history"][0]["error"]["type"] == "overloaded"
    assert retried["result"]["output"]["text"] == "echo: again"
    assert gone["status"] == "FAILED" and gone["attempts"] == 1
    assert gone["error"]["type"] == "invalid_input"
    assert gone["error"]["message"] == "model 'llama3.2' not found"


def test_a_newly_pulled_model_routes_after_the_next_refresh(
    server: Server, key: str, fake: FakeOllama
) -> None:
    with server.client(key) as c:
        body = {"kind": "chat", "model": "mistral:7b", "input": "hi"}
        assert c.post("/v1/tasks", json=body).status_code == 400
        fake.models.append("mistral:7b")  # `ollama pull mistral:7b`
        deadline = time.monotonic() + 10
        while (r := c.post("/v1/tasks", json=body)).status_code == 400:
            assert time.monotonic() < deadline, "the new model never routed"
            time.sleep(0.1)
        assert r.status_code == 202
        assert wait(c, r.json()["id"])["status"] == "SUCCESS"
        listed = c.get("/v1/models").json()
    assert listed["object"] == "list"
    assert {(m["id"], m["owned_by"], m["source"]) for m in listed["data"]} == {
        ("deepseek-r1:7b", "ollama", "discovered"),
        ("llama3.2:latest", "ollama", "discovered"),
        ("mistral:7b", "ollama", "discovered"),
    }
