"""A taskgate server process whose route uses the ``ark`` provider against the fake Ark
server running in this test process: chat, Seedream images and Seedance video jobs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_api import submit, wait
from tests.e2e.test_openai_backend import read_events
from tests.fakes import in_thread
from tests.fakes.ark_server import FakeArk
from tests.fakes.shelf import fake_image, fake_video

KEY = "ark-e2e-0b9f6c3d-7a21-4e58-9d40-51c8e2f7a6b3"
SEEDREAM = "doubao-seedream-3-0-t2i-250415"
SEEDANCE = "doubao-seedance-1-0-pro-250528"


@pytest.fixture
def fake() -> Iterator[FakeArk]:
    with in_thread(FakeArk(key=KEY)) as server:
        yield server


def ark_route(fake: FakeArk, **over: Any) -> dict[str, Any]:
    route = {
        "name": "ark",
        "models": ["doubao-*"],
        "provider": "ark",
        "instances": [{"name": "ark-1", "endpoint": fake.base_url, "secret_env": "FAKE_ARK_KEY"}],
        "timeout": 30,
        "retry": {"max_attempts": 3, "backoff_base": 0.05, "backoff_max": 0.2},
        "poll": {"interval": 0.05, "max_interval": 0.2},
        "options": {"output_urls_private": True},  # the fake serves its files on loopback
    }
    return route | over


@pytest.fixture
def server(make_server: Any, fake: FakeArk, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("FAKE_ARK_KEY", KEY)
    s: Server = make_server([ark_route(fake)])
    s.start()
    return s


def assert_no_secret(c: httpx.Client, task_id: str, server: Server) -> None:
    assert KEY not in c.get(f"/v1/tasks/{task_id}").text
    assert KEY not in server.log.read_text()


def only_file(c: httpx.Client, done: dict[str, Any]) -> httpx.Response:
    [f] = done["result"]["files"]
    r = c.get(f["url"])
    assert r.status_code == 200 and r.headers["content-type"] == f["content_type"]
    return r


def test_chat_streams_deltas_and_reasoning(server: Server, key: str, fake: FakeArk) -> None:
    fake.script("hold")
    with server.client(key) as c:
        task = submit(c, model="doubao-seed-1-6-250615", input="one two", params={"stream": True})
        events = read_events(c, task["id"], fake)
        assert_no_secret(c, task["id"], server)
    progress = [data["data"] for name, data in events if name == "progress"]
    assert [p["delta"] for p in progress if "delta" in p] == ["echo: ", "one ", "two"]
    reasoning = [p["reasoning_delta"] for p in progress if "reasoning_delta" in p]
    assert reasoning == ["thinking ", "about: ", "one ", "two"]
    assert events[-1][1]["result"]["output"]["text"] == "echo: one two"
    assert fake.requests[-1].headers["Authorization"] == f"Bearer {KEY}"


def test_a_seedream_image_is_stored_and_downloadable(
    server: Server, key: str, fake: FakeArk
) -> None:
    with server.client(key) as c:
        done = wait(c, submit(c, kind="image", model=SEEDREAM, input="a red fox")["id"])
        assert done["status"] == "SUCCESS", done
        assert only_file(c, done).content == fake_image("a red fox")
        assert_no_secret(c, done["id"], server)
    assert fake.requests[-1].body["watermark"] is False
    assert len(fake.shelf.downloads) == 1


def test_a_429_waits_out_retry_after_then_succeeds(server: Server, key: str, fake: FakeArk) -> None:
    fake.script("rate_limit")
    with server.client(key) as c:
        done = wait(c, submit(c, kind="image", model=SEEDREAM, input="again")["id"])
    assert done["status"] == "SUCCESS"
    first, second = done["history"]
    assert (first["outcome"], first["error"]["type"]) == ("retry", "rate_limited")
    assert first["error"]["provider_code"] == "RateLimitExceeded.EndpointRPMExceeded"
    gap = datetime.fromisoformat(second["started_at"]) - datetime.fromisoformat(first["ended_at"])
    assert gap.total_seconds() >= 0.99  # Retry-After: 1 beat the route's 0.05 s backoff


def test_an_expired_image_url_is_retried_and_the_copy_is_kept(
    server: Server, key: str, fake: FakeArk
) -> None:
    fake.script("expired_url")
    with server.client(key) as c:
        done = wait(c, submit(c, kind="image", model=SEEDREAM, input="a fox")["id"])
        assert done["status"] == "SUCCESS", done
        assert [a["outcome"] for a in done["history"]] == ["retry", "success"]
        assert done["history"][0]["error"]["type"] == "bad_response"
        assert "expired" in done["history"][0]["error"]["message"]
        assert only_file(c, done).content == fake_image("a fox")
    assert len(fake.shelf.downloads) == 2


def test_sensitive_input_fails_at_once(server: Server, key: str, fake: FakeArk) -> None:
    fake.script("sensitive")
    with server.client(key) as c:
        done = wait(c, submit(c, kind="image", model=SEEDREAM, input="no")["id"])
    assert done["status"] == "FAILED" and done["attempts"] == 1
    assert done["error"]["type"] == "content_refused"
    assert done["error"]["provider_code"] == "InputTextSensitiveContentDetected"


def test_a_seedance_video_job_ends_with_a_stored_video(
    server: Server, key: str, fake: FakeArk
) -> None:
    params = {"ratio": "16:9", "duration": 5}
    with server.client(key) as c:
        task = submit(c, kind="video", model=SEEDANCE, input="a cat", params=params)
        done = wait(c, task["id"], seconds=30)
        assert done["status"] == "SUCCESS", done
        [job_id] = fake.tasks
        assert only_file(c, done).content == fake_video(job_id)
        assert done["result"]["output"]["video"]["id"] == job_id
        assert_no_secret(c, done["id"], server)
    text = fake.requests[0].body["content"][0]["text"]
    assert text == "a cat --ratio 16:9 --duration 5 --watermark false"
    assert fake.tasks[job_id].polls >= 2


def test_a_video_refused_by_arks_moderation_fails(server: Server, key: str, fake: FakeArk) -> None:
    fake.script("task_sensitive")
    with server.client(key) as c:
        done = wait(c, submit(c, kind="video", model=SEEDANCE, input="x")["id"], seconds=30)
    assert done["status"] == "FAILED", done
    assert done["error"]["type"] == "content_refused"
    assert done["error"]["provider_code"] == "OutputVideoSensitiveContentDetected"


def test_cancelling_a_task_cancels_its_queued_job(
    make_server: Any, fake: FakeArk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ARK_KEY", KEY)
    server: Server = make_server([ark_route(fake, poll={"interval": 30, "max_interval": 30})])
    server.start()
    key = server.create_key("acme")
    with server.client(key) as c:
        task = submit(c, kind="video", model=SEEDANCE, input="a slow cat")
        deadline = time.monotonic() + 10
        while not submitted(c, task["id"]) and time.monotonic() < deadline:
            time.sleep(0.05)  # the job is kept on the task: cancelling it now must reach Ark
        [job_id] = fake.tasks
        assert c.delete(f"/v1/tasks/{task['id']}").json()["status"] == "CANCELLED"
        while not fake.cancelled and time.monotonic() < deadline:
            time.sleep(0.05)
    assert fake.cancelled == [job_id]
    assert fake.requests[-1].method == "DELETE"


def submitted(c: httpx.Client, task_id: str) -> bool:
    return bool(c.get(f"/v1/tasks/{task_id}").json().get("provider_job"))


def test_a_restart_in_the_middle_of_a_video_job_resumes_it(
    make_server: Any, fake: FakeArk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ARK_KEY", KEY)
    fake.polls_to_finish = None  # the job runs until the test finishes it
    server: Server = make_server(
        [ark_route(fake)], scheduler={"lease_seconds": 600, "poll_interval": 0.2}
    )
    server.start()
    key = server.create_key("acme")
    with server.client(key) as c:
        task = submit(c, kind="video", model=SEEDANCE, input="a long cat")
        deadline = time.monotonic() + 10
        while not submitted(c, task["id"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        [job_id] = fake.tasks
        polled = fake.tasks[job_id].polls
    server.stop(kill=True)  # SIGKILL while the job runs on Ark's side
    server.start()
    with server.client(key) as c:
        deadline = time.monotonic() + 10
        while fake.tasks[job_id].polls <= polled and time.monotonic() < deadline:
            time.sleep(0.05)  # the restarted server polls the stored job again
        fake.finish(job_id)
        done = wait(c, task["id"], seconds=30)
        assert done["status"] == "SUCCESS", done
        assert only_file(c, done).content == fake_video(job_id)
    assert list(fake.tasks) == [job_id]  # never submitted twice
    assert done["provider_job"]["id"] == job_id
    assert [a["outcome"] for a in done["history"]] == ["lost", "success"]
