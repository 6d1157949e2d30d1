"""The Volcengine AI Server API against a real server: every request example of its
README (with a taskgate key added), images and videos made by the jimeng provider against the
fake Volcengine visual API, the ``{success, data, message}`` envelope on every answer, and
``user_id`` as a label inside the caller's tenant, never identity."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, mock_route
from tests.e2e.test_api import wait
from tests.fakes import in_thread
from tests.fakes.jimeng_server import FakeJimeng

AK = "AKLTe2evolcapi0ffee"
SK = "ZTJlLXZvbGMtYXBpLXNlY3JldC1rZXlz"
README_IMAGE = {
    "prompt": "一只可爱的小猫咪在花园里玩耍",
    "user_id": "user123",
    "provider": "volcengine",
    "model": "doubao-seedream-3-0-t2i-250415",
    "size": "1024x1024",
}


@pytest.fixture
def fake() -> Iterator[FakeJimeng]:
    with in_thread(FakeJimeng(access_key=AK, secret_key=SK, polls_to_finish=1)) as server:
        yield server


@pytest.fixture
def server(make_server: Any, fake: FakeJimeng, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("VOLC_JIMENG_KEYS", f"{AK}:{SK}")
    jimeng = {
        "name": "jimeng",
        "models": ["jimeng_*"],
        "provider": "jimeng",
        "instances": [
            {"name": "volc", "endpoint": fake.base_url, "secret_env": "VOLC_JIMENG_KEYS"}
        ],
        "poll": {"interval": 0.05, "max_interval": 0.2},
        "options": {"output_urls_private": True},  # the fake serves its files on loopback
    }
    routes = [
        mock_route("doubao", ["doubao-seedream-3-0-t2i-250415", "doubao-pro-4k"]),
        mock_route("slow", ["slow-model"], options={"latency_ms": 20_000}),
        jimeng,
    ]
    s: Server = make_server(routes)
    s.start()
    return s


def create(c: httpx.Client, task_type: str, **body: Any) -> dict[str, Any]:
    r = c.post(f"/api/v1/ai/{task_type}/task", json=body)
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["success"] is True and reply["message"] == "任务创建成功"
    data: dict[str, Any] = reply["data"]
    assert data["status"] == "pending"
    assert (data["provider"], data["model"]) == (body["provider"], body["model"])
    return data


def result(c: httpx.Client, task_id: str, seconds: float = 30) -> dict[str, Any]:
    """Poll the result as the Volcengine AI Server's clients do, until completed or failed."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        reply = c.get(f"/api/v1/ai/task/result/{task_id}").json()
        assert reply["success"] is True
        if reply["data"]["status"] in ("completed", "failed"):
            assert reply["message"] == (
                "任务完成" if reply["data"]["status"] == "completed" else "任务失败"
            )
            return dict(reply["data"])
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not end")


def test_the_readme_image_example_ends_with_an_absolute_image_url(server: Server) -> None:
    with server.client(server.create_key("acme")) as c:
        data = create(c, "image", **README_IMAGE)
        done = result(c, data["task_id"])
        assert (done["type"], done["status"], done["user_id"]) == ("image", "completed", "user123")
        assert done["image_url"].startswith(f"{server.url}/v1/files/")
        assert done["video_url"] is None and done["text_result"] is None
        assert done["created"] <= done["updated"]
        image = c.get(done["image_url"])
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        native = c.get(f"/v1/tasks/{data['task_id']}").json()
        assert native["params"] == {"size": "1024x1024"} and native["kind"] == "image"


def test_jimeng_images_and_videos_and_doubao_text(server: Server, fake: FakeJimeng) -> None:
    with server.client(server.create_key("acme")) as c:
        video = create(
            c,
            "video",
            prompt="a fox running in the snow",
            user_id="user123",
            provider="volcengine",
            model="jimeng_vgfm_t2v_l20",
            aspect_ratio="16:9",
            seed=-1,
        )
        image = create(
            c,
            "image",
            prompt="a red fox",
            user_id="user123",
            provider="volcengine",
            model="jimeng_high_aes_general_v21_L",
            size="512x512",
        )
        text = create(
            c,
            "text",
            prompt="写一首诗",
            user_id="user123",
            provider="volcengine",
            model="doubao-pro-4k",
            max_tokens=1000,
            temperature=0.7,
        )
        done = result(c, video["task_id"])
        assert done["type"] == "video" and done["image_url"] is None
        assert c.get(done["video_url"]).headers["content-type"] == "video/mp4"
        assert c.get(result(c, image["task_id"])["image_url"]).content.startswith(b"\x89PNG")
        said = result(c, text["task_id"])
        assert (said["type"], said["text_result"]) == ("text", "mock reply to: 写一首诗")
        params = c.get(f"/v1/tasks/{text['task_id']}").json()["params"]
        assert params == {"max_tokens": 1000, "temperature": 0.7}
    assert {r.action for r in fake.requests} >= {"CVProcess", "CVSync2AsyncSubmitTask"}


@pytest.mark.parametrize("missing", ["model", "provider"])
def test_model_and_provider_are_required_in_the_envelope(server: Server, missing: str) -> None:
    body = {k: v for k, v in README_IMAGE.items() if k != missing}
    with server.client(server.create_key("acme")) as c:
        r = c.post("/api/v1/ai/image/task", json=body)
        assert r.status_code == 400
        assert r.json() == {"success": False, "data": None, "message": f"{missing} required"}
        r = c.post("/api/v1/ai/image/task", json={**README_IMAGE, "model": "dall-e-9"})
        assert r.status_code == 400 and r.json()["success"] is False
        assert "unknown model 'dall-e-9'" in r.json()["message"]
        assert c.post("/api/v1/ai/audio/task", json=README_IMAGE).json()["success"] is False
        assert c.get("/v1/tasks").json()["data"] == []


def test_the_readme_listing_examples_filter_by_label_and_type_within_the_tenant(
    server: Server,
) -> None:
    a, b = server.create_key("a"), server.create_key("b")
    with server.client(a) as ca, server.client(b) as cb:
        text = {**README_IMAGE, "model": "doubao-pro-4k"}
        ids = [create(ca, "image", **README_IMAGE)["task_id"] for _ in range(3)]
        ids.append(create(ca, "text", **text)["task_id"])
        create(ca, "image", **{**README_IMAGE, "user_id": "user456"})
        other = create(cb, "image", **README_IMAGE)["task_id"]  # the same user_id elsewhere

        everything = ca.get("/api/v1/ai/tasks?user_id=user123&limit=10&offset=0").json()
        assert everything["success"] is True
        assert [t["task_id"] for t in everything["data"]["tasks"]] == ids[::-1]
        images = ca.get("/api/v1/ai/tasks?user_id=user123&type=image&limit=10&offset=0").json()
        assert [t["task_id"] for t in images["data"]["tasks"]] == ids[2::-1]
        page = ca.get("/api/v1/ai/tasks?user_id=user123&limit=2&offset=1").json()["data"]
        assert [t["task_id"] for t in page["tasks"]] == ids[2:0:-1] and page["has_more"] is True

        theirs = cb.get("/api/v1/ai/tasks?user_id=user123&limit=10&offset=0").json()["data"]
        assert [t["task_id"] for t in theirs["tasks"]] == [other]
        r = cb.get(f"/api/v1/ai/task/result/{ids[0]}")
        assert r.status_code == 404 and r.json()["success"] is False
        assert cb.delete(f"/api/v1/ai/task/{ids[0]}").status_code == 404


def test_delete_cancels_and_a_request_without_a_key_is_refused(server: Server) -> None:
    slow = {**README_IMAGE, "model": "slow-model"}
    with server.client(server.create_key("acme")) as c:
        task_id = create(c, "text", **slow)["task_id"]
        r = c.delete(f"/api/v1/ai/task/{task_id}")
        assert r.status_code == 200 and r.json()["message"] == "任务已取消"
        assert r.json()["data"]["status"] == "failed"
        assert wait(c, task_id)["status"] == "CANCELLED"
        done = result(c, task_id)
        assert done["error_type"] == "cancelled" and done["text_result"] is None
    r = httpx.post(f"{server.url}/api/v1/ai/image/task", json=README_IMAGE)
    assert r.status_code == 401
    assert r.json()["success"] is False and "missing API key" in r.json()["message"]
