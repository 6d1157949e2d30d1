"""A taskgate server process whose route uses the ``gemini`` provider against the fake
Gemini server running in this test process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_api import submit, wait
from tests.fakes import in_thread
from tests.fakes.gemini_server import FakeGemini

KEY = "AIza-e2e-5c0ffee7d00d"


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    with in_thread(FakeGemini(key=KEY)) as server:
        yield server


@pytest.fixture
def server(make_server: Any, fake: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("FAKE_GEMINI_KEY", KEY)
    route = {
        "name": "gemini",
        "models": ["gemini-*"],
        "provider": "gemini",
        "instances": [{"name": "g1", "endpoint": fake.base_url, "secret_env": "FAKE_GEMINI_KEY"}],
        "retry": {"max_attempts": 3, "backoff_base": 0.05, "backoff_max": 0.2},
    }
    s: Server = make_server([route])
    s.start()
    return s


def test_gemini_chat_runs_through_the_scheduler(server: Server, key: str, fake: FakeGemini) -> None:
    with server.client(key) as c:
        done = wait(c, submit(c, model="gemini-2.5-flash", input="hello there")["id"])
        assert done["status"] == "SUCCESS", done
        assert done["result"]["output"]["text"] == "echo: hello there"
        assert KEY not in c.get(f"/v1/tasks/{done['id']}").text
    assert fake.requests[-1].model == "gemini-2.5-flash"


def test_a_gemini_500_is_retried_and_a_safety_stop_fails_at_once(
    server: Server, key: str, fake: FakeGemini
) -> None:
    with server.client(key) as c:
        fake.script("server_error")
        retried = wait(c, submit(c, model="gemini-pro", input="again")["id"])
        fake.script("safety")
        refused = wait(c, submit(c, model="gemini-pro", input="no")["id"])
    assert retried["status"] == "SUCCESS"
    assert [a["outcome"] for a in retried["history"]] == ["retry", "success"]
    assert refused["status"] == "FAILED" and refused["attempts"] == 1
    assert refused["error"]["type"] == "content_refused"
    assert KEY not in server.log.read_text()
