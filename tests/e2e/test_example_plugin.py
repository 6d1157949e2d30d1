"""The documented example plugin (examples/plugins/render_farm.py), loaded by a server
subprocess through ``plugins:``, against a fake render farm: a job-based provider written
outside taskgate runs, resumes and cancels through the scheduler."""

from __future__ import annotations

import base64
import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from tests.e2e.conftest import Server
from tests.e2e.test_api import submit, wait
from tests.fakes import LoopbackServer, in_thread

VIDEO = b"\x00\x00\x00\x18ftypmp42 a tiny fake video"


class FakeFarm(LoopbackServer):
    """Jobs that are done after ``polls_to_finish`` polls; ``hold`` prompts never finish."""

    def __init__(self, polls_to_finish: int = 3) -> None:
        self.polls_to_finish = polls_to_finish
        self.jobs: dict[str, dict[str, Any]] = {}
        self.cancelled: list[str] = []
        self._ids = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/jobs", self.create)
        app.router.add_get("/jobs/{id}", self.get)
        app.router.add_delete("/jobs/{id}", self.delete)

    async def create(self, request: web.Request) -> web.Response:
        body = await request.json()
        job_id = f"job{next(self._ids)}"
        self.jobs[job_id] = {"prompt": body["prompt"], "polls": 0}
        return web.json_response({"id": job_id}, status=201)

    async def get(self, request: web.Request) -> web.Response:
        job = self.jobs[request.match_info["id"]]
        job["polls"] += 1
        if job["prompt"] == "hold" or job["polls"] < self.polls_to_finish:
            return web.json_response({"state": "running", "progress": job["polls"] * 10})
        video = base64.b64encode(VIDEO).decode()
        return web.json_response({"state": "done", "video_base64": video, "frames": 48})

    async def delete(self, request: web.Request) -> web.Response:
        self.cancelled.append(request.match_info["id"])
        return web.json_response({"ok": True})


@pytest.fixture
def farm() -> Iterator[FakeFarm]:
    with in_thread(FakeFarm()) as fake:
        yield fake


@pytest.fixture
def server(make_server: Any, farm: FakeFarm) -> Server:
    route = {
        "name": "farm",
        "models": ["farm-*"],
        "kinds": ["video"],
        "provider": "render_farm",
        "poll": {"interval": 0.05, "max_interval": 0.1},
        "instances": [{"name": "farm1", "endpoint": farm.base_url, "max_concurrency": 1}],
    }
    s: Server = make_server([route], plugins=["examples.plugins.render_farm"])
    s.start()
    return s


def test_the_example_plugin_renders_a_video_through_the_scheduler(
    server: Server, key: str, farm: FakeFarm
) -> None:
    with server.client(key) as c:
        done = wait(c, submit(c, kind="video", model="farm-v1", input="a cat")["id"])
        assert done["status"] == "SUCCESS", done
        assert done["result"]["output"] == {"frames": 48}
        assert done["provider_job"]["id"] == "job1"
        [f] = done["result"]["files"]
        assert c.get(f["url"]).content == VIDEO
    assert farm.jobs["job1"]["polls"] == farm.polls_to_finish


def test_cancelling_a_task_cancels_the_farms_job(server: Server, key: str, farm: FakeFarm) -> None:
    with server.client(key) as c:
        task = submit(c, kind="video", model="farm-v1", input="hold")
        for _ in range(100):
            if c.get(f"/v1/tasks/{task['id']}").json()["provider_job"]:
                break
            time.sleep(0.02)
        assert c.delete(f"/v1/tasks/{task['id']}").json()["status"] == "CANCELLED"
        job_id = c.get(f"/v1/tasks/{task['id']}").json()["provider_job"]["id"]
        for _ in range(100):
            if farm.cancelled:
                break
            time.sleep(0.02)
    assert farm.cancelled == [job_id]
