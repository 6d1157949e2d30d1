"""A taskgate server process whose route uses the ``openai`` provider against the fake OpenAI
server running in this test process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_api import submit, wait
from tests.fakes import in_thread
from tests.fakes.openai_server import FakeOpenAI

KEY = "sk-e2e-4b1d7e09c6a2f835"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with in_thread(FakeOpenAI(key=KEY)) as server:
        yield server


@pytest.fixture
def server(make_server: Any, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("FAKE_OPENAI_KEY", KEY)
    instance = {
        "name": "fake-1",
        "endpoint": fake.base_url,
        "secret_env": "FAKE_OPENAI_KEY",
        "max_concurrency": 4,
    }
    route = {
        "name": "upstream",
        "models": ["gpt-*"],
        "provider": "openai",
        "instances": [instance],
        "timeout": 30,
        "retry": {"max_attempts": 3, "backoff_base": 0.05, "backoff_max": 0.2},
    }
    s: Server = make_server([route])
    s.start()
    return s


def chat(c: httpx.Client, text: str, **body: Any) -> dict[str, Any]:
    return submit(c, model="gpt-fake", input=text, **body)


def assert_no_secret(c: httpx.Client, task_id: str, server: Server) -> None:
    assert KEY not in c.get(f"/v1/tasks/{task_id}").text
    assert KEY not in server.log.read_text()


def read_events(c: httpx.Client, task_id: str, fake: FakeOpenAI) -> list[tuple[str, Any]]:
    """The task's server-sent events; the held fake answers once the stream is open."""
    events: list[tuple[str, Any]] = []
    name = ""
    with c.stream("GET", f"/v1/tasks/{task_id}/events") as r:
        for line in r.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.split(":", 1)[1])))
                fake.release()
    return events


def test_chat_task_succeeds_with_the_backends_reply(
    server: Server, key: str, fake: FakeOpenAI
) -> None:
    with server.client(key) as c:
        done = wait(c, chat(c, "hello world")["id"])
        assert done["status"] == "SUCCESS", done
        assert done["result"]["output"]["text"] == "echo: hello world"
        assert done["result"]["usage"] == {"input_tokens": 2, "output_tokens": 3}
        assert_no_secret(c, done["id"], server)
    sent = fake.requests[-1]
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.body["model"] == "gpt-fake"


def test_streamed_chat_sends_deltas_as_progress_events(
    server: Server, key: str, fake: FakeOpenAI
) -> None:
    fake.script("hold")
    with server.client(key) as c:
        task = chat(c, "one two three", params={"stream": True})
        events = read_events(c, task["id"], fake)
    deltas = [data["data"]["delta"] for name, data in events if name == "progress"]
    assert deltas == ["echo: ", "one ", "two ", "three"]
    assert events[-1][0] == "finished"
    assert events[-1][1]["result"]["output"]["text"] == "echo: one two three"


def test_a_500_is_retried_and_succeeds_on_attempt_2(
    server: Server, key: str, fake: FakeOpenAI
) -> None:
    fake.script("server_error")
    with server.client(key) as c:
        done = wait(c, chat(c, "again")["id"])
    assert done["status"] == "SUCCESS"
    assert done["attempts"] == 2
    assert [a["outcome"] for a in done["history"]] == ["retry", "success"]
    assert done["history"][0]["error"]["type"] == "overloaded"
    assert done["result"]["output"]["text"] == "echo: again"


def test_a_400_fails_at_once_with_the_providers_message(
    server: Server, key: str, fake: FakeOpenAI
) -> None:
    bad = {"messages": [{"role": "wizard", "content": "hi"}]}
    with server.client(key) as c:
        done = wait(c, submit(c, model="gpt-fake", input=bad)["id"])
    assert done["status"] == "FAILED"
    assert done["attempts"] == 1
    assert done["error"]["type"] == "invalid_input"
    assert done["error"]["message"] == "Invalid value for 'messages[0].role': 'wizard'."
    assert len(fake.requests) == 1


def test_a_backend_quoting_the_secret_does_not_leak_it(
    server: Server, key: str, fake: FakeOpenAI
) -> None:
    fake.script("revoked")
    with server.client(key) as c:
        done = wait(c, chat(c, "hi")["id"])
        assert done["status"] == "FAILED"
        assert done["error"]["type"] == "auth_failed"
        assert "Incorrect API key provided: ***" in done["error"]["message"]
        assert_no_secret(c, done["id"], server)
