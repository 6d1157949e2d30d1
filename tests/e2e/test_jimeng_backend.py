"""A taskgate server process whose routes use the ``jimeng`` provider against the fake
Volcengine visual API running in this test process: signed calls, stored output files,
retries, refusals and a video job polled to its end."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_api import submit, wait
from tests.fakes import in_thread
from tests.fakes.jimeng_server import FakeJimeng

AK = "AKLTe2ejimeng5c0ffee"
SK = "ZTJlLWppbWVuZy1zZWNyZXQta2V5LTdkMDBk"
RETRY = {"max_attempts": 3, "backoff_base": 0.05, "backoff_max": 0.2}


@pytest.fixture
def fake() -> Iterator[FakeJimeng]:
    with in_thread(FakeJimeng(access_key=AK, secret_key=SK, polls_to_finish=2)) as server:
        yield server


def route(name: str, models: list[str], endpoint: str, secret_env: str) -> dict[str, Any]:
    instance = {"name": f"{name}-1", "endpoint": endpoint, "secret_env": secret_env}
    return {
        "name": name,
        "models": models,
        "provider": "jimeng",
        "instances": [instance],
        "retry": RETRY,
        "poll": {"interval": 0.05, "max_interval": 0.2},
        "options": {"output_urls_private": True},  # the fake serves its files on loopback
    }


@pytest.fixture
def server(make_server: Any, fake: FakeJimeng, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("FAKE_JIMENG_KEYS", f"{AK}:{SK}")
    monkeypatch.setenv("FAKE_JIMENG_WRONG", f"{AK}:not-{SK}")
    routes = [
        route("jimeng", ["jimeng-*"], fake.base_url, "FAKE_JIMENG_KEYS"),
        route("jimeng-wrong", ["wrong-*"], fake.base_url, "FAKE_JIMENG_WRONG"),
    ]
    s: Server = make_server(routes)
    s.start()
    return s


def no_secret_anywhere(c: httpx.Client, server: Server, *tasks: dict[str, Any]) -> None:
    for task in tasks:
        assert SK not in c.get(f"/v1/tasks/{task['id']}").text
    assert SK not in server.log.read_text()


def test_an_image_is_stored_and_served_as_a_file(
    server: Server, key: str, fake: FakeJimeng
) -> None:
    with server.client(key) as c:
        params = {"size": "512x384"}
        task = submit(c, kind="image", model="jimeng-2.1", input="a red fox", params=params)
        done = wait(c, task["id"])
        assert done["status"] == "SUCCESS", done
        [f] = done["result"]["files"]
        assert f["content_type"] == "image/png" and f["url"].startswith(f"/v1/files/{f['id']}?")
        r = c.get(f["url"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert struct.unpack(">II", r.content[16:24]) == (512, 384)
        assert hashlib.sha256(r.content).hexdigest() == f["sha256"]
        assert done["result"]["output"]["images"] == 1
        no_secret_anywhere(c, server, done)
    assert fake.requests[-1].action == "CVProcess"
    assert fake.requests[-1].headers["Authorization"].startswith(f"HMAC-SHA256 Credential={AK}/")


def test_a_qps_limit_is_retried_then_succeeds(server: Server, key: str, fake: FakeJimeng) -> None:
    fake.script("qps_limit")
    with server.client(key) as c:
        done = wait(c, submit(c, kind="image", model="jimeng-2.1", input="again")["id"])
    assert done["status"] == "SUCCESS", done
    first, second = done["history"]
    assert (first["outcome"], second["outcome"]) == ("retry", "success")
    assert first["error"]["type"] == "rate_limited"
    assert first["error"]["provider_code"] == "50429"


def test_a_refused_prompt_and_a_wrong_key_fail_at_once(
    server: Server, key: str, fake: FakeJimeng
) -> None:
    fake.script("text_risk")
    with server.client(key) as c:
        refused = wait(c, submit(c, kind="image", model="jimeng-2.1", input="no")["id"])
        denied = wait(c, submit(c, kind="image", model="wrong-1", input="a fox")["id"])
        no_secret_anywhere(c, server, refused, denied)
    assert refused["status"] == "FAILED" and refused["attempts"] == 1
    assert refused["error"]["type"] == "content_refused"
    assert refused["error"]["provider_code"] == "50412"
    assert "Text Risk Not Pass" in refused["error"]["message"]
    assert denied["status"] == "FAILED" and denied["attempts"] == 1
    assert denied["error"]["type"] == "auth_failed"
    assert denied["error"]["provider_code"] == "SignatureDoesNotMatch"


def test_a_video_job_is_polled_until_its_file_is_stored(
    server: Server, key: str, fake: FakeJimeng
) -> None:
    with server.client(key) as c:
        body = {"aspect_ratio": "9:16"}
        task = submit(c, kind="video", model="jimeng-video", input="a fox running", params=body)
        done = wait(c, task["id"], seconds=30)
        assert done["status"] == "SUCCESS", done
        [f] = done["result"]["files"]
        assert f["content_type"] == "video/mp4"
        assert c.get(f["url"]).content[4:8] == b"ftyp"
        no_secret_anywhere(c, server, done)
    [task_id] = fake.tasks
    assert done["result"]["output"]["task_id"] == task_id
    actions = [r.action for r in fake.requests]
    assert actions == ["CVSync2AsyncSubmitTask"] + ["CVSync2AsyncGetResult"] * 2
