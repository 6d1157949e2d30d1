"""Signed, expiring file links against real servers: the result URL of every API (native,
OpenAI, AIFlow, the Volcengine AI Server, AI Task System) downloads with plain HTTP and no
key; a link expires, is bound to its file and refused if altered (403, the native error
shape); an unsigned link still needs a key (401); the signing secret shows up nowhere; and
on PostgreSQL a link that one ``taskgate api`` process signed works on another."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from taskgate.files.signing import SECRET_NAME
from taskgate.store import SqlStore
from tests.conftest import PG_URL, reset_postgres
from tests.e2e.conftest import Server, mock_route, until
from tests.e2e.test_api import wait

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)
IMAGE = {"kind": "image", "model": "mock", "input": "a prompt"}
MODELS = ["dall-e-3", "sora", "stable-diffusion", "gemini-image", "mock", "mock-*"]


def media_server(make_server: Any, **settings: Any) -> Server:
    server: Server = make_server([mock_route("media", MODELS)], **settings)
    server.start()
    return server


def fetch(url: str) -> httpx.Response:
    """A download as a browser or a plain curl makes it: no key, no client state."""
    return httpx.get(url, timeout=30)


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def secret_of(store_url: str) -> str:
    async def read() -> str:
        store = SqlStore(store_url)
        await store.open()
        try:
            return await store.server_secrets.get(SECRET_NAME)
        finally:
            await store.close()

    return asyncio.run(read())


def volcengine_result(c: httpx.Client, task_id: str) -> dict[str, Any]:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        data: dict[str, Any] = c.get(f"/api/v1/ai/task/result/{task_id}").json()["data"]
        if data["status"] in ("completed", "failed"):
            return data
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not end")


def aiflow_result(c: httpx.Client, task_id: str) -> dict[str, Any]:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        task: dict[str, Any] = c.get(f"/api/v1/tasks/{task_id}").json()
        if task["status"] not in ("PENDING", "PROCESSING"):
            return task
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not end")


def result_urls(server: Server, c: httpx.Client) -> dict[str, str]:
    """A result file URL from each API, made absolute as a client would (the native API's
    are paths on the server, as before)."""
    urls = {}
    native = wait(c, c.post("/v1/tasks", json=IMAGE).json()["id"])
    urls["native task"] = server.url + native["result"]["files"][0]["url"]
    listed = c.get("/v1/tasks", params={"kind": "image"}).json()["data"][0]
    urls["native list"] = server.url + listed["result"]["files"][0]["url"]
    up = c.post("/v1/files", files={"file": ("in.png", PNG, "image/png")}).json()
    urls["native upload"] = server.url + up["url"]
    batch = c.post(
        "/v1/batches", json={"kind": "image", "models": ["mock", "mock-2"], "input": "b"}
    )
    wait(c, batch.json()["task_ids"][0])
    wait(c, batch.json()["task_ids"][1])
    results = c.get(f"/v1/batches/{batch.json()['id']}").json()["results"]
    urls["native batch"] = server.url + results[0]["result"]["files"][0]["url"]

    images = c.post("/openai/v1/images/generations", json={"model": "dall-e-3", "prompt": "c"})
    assert images.status_code == 200, images.text
    urls["openai"] = images.json()["data"][0]["url"]

    body = {"prompt": "d", "user_id": "u1", "provider": "openai", "model": "sora"}
    made = c.post("/api/v1/ai/video/task", json={**body, "aspect_ratio": "16:9"}).json()
    urls["volcengine video"] = volcengine_result(c, made["data"]["task_id"])["video_url"]
    made = c.post("/api/v1/ai/image/task", json={**body, "model": "dall-e-3"}).json()
    urls["volcengine image"] = volcengine_result(c, made["data"]["task_id"])["image_url"]

    spec = {"task_type": "image-generation", "model_spec": {"name": "stable-diffusion"}}
    made = c.post("/api/v1/tasks_json", json={**spec, "payload": {"prompt": "e"}}).json()
    urls["aiflow"] = aiflow_result(c, made["task_id"])["result"]["files"][0]["url"]

    made = c.post("/v1/images/generations", json={"prompt": "f", "model": "gemini-image"}).json()
    wait(c, made["task_id"])
    history = c.get(f"/v1/conversations/{made['conversation_id']}/history").json()
    [answer] = [m for m in history if m["role"] == "assistant"]  # AI Task System's list
    link = re.fullmatch(r"!\[image\]\((.+)\)", answer["content"])
    assert link is not None, answer
    urls["tasksystem history"] = link.group(1)
    turns = c.get(f"/v1/conversations/{made['conversation_id']}").json()["messages"]
    urls["native conversation"] = server.url + turns[-1]["content"]["files"][0]["url"]
    return urls


def test_every_apis_result_url_downloads_without_a_key(make_server: Any) -> None:
    server = media_server(make_server)
    with server.client(server.create_key("acme")) as c:
        urls = result_urls(server, c)
    for api, url in urls.items():
        assert url.startswith(f"{server.url}/v1/files/"), api
        assert {"expires", "signature"} <= set(query(url)), api
        r = fetch(url)
        assert r.status_code == 200, (api, r.text)
        assert r.headers["x-content-type-options"] == "nosniff"
    assert fetch(urls["native upload"]).content == PNG
    video = fetch(urls["volcengine video"])  # the mock's video: a real MP4
    assert video.headers["content-type"] == "video/mp4" and video.content[4:8] == b"ftyp"
    assert fetch(urls["openai"]).content.startswith(b"\x89PNG")
    expires = int(query(urls["aiflow"])["expires"])
    assert time.time() + 3000 < expires < time.time() + 3700  # the default hour
    secret = secret_of(f"sqlite:///{server.root}/taskgate.db")
    seen = [r for url in urls.values() for r in (url, fetch(url).text)]
    assert not any(secret in text for text in seen) and secret not in server.log.read_text()


def test_a_link_is_refused_when_altered_used_for_another_file_or_unsigned_unless_a_key_reads(
    make_server: Any,
) -> None:
    server = media_server(make_server)
    with server.client(server.create_key("acme")) as c:
        one = c.post("/v1/files", files={"file": ("1.png", PNG, "image/png")}).json()
        two = c.post("/v1/files", files={"file": ("2.png", PNG, "image/png")}).json()
    link = server.url + one["url"]
    signed = query(link)
    swapped = f"{server.url}/v1/files/{two['id']}?{urlsplit(link).query}"
    longer = link.replace(f"expires={signed['expires']}", f"expires={int(signed['expires']) + 1}")
    flipped = link[:-1] + ("A" if link[-1] != "A" else "B")
    for bad in (swapped, longer, flipped, link.split("&signature=")[0]):
        r = fetch(bad)
        assert r.status_code == 403, bad
        assert r.json()["error"]["type"] == "forbidden"
    unsigned = fetch(f"{server.url}/v1/files/{one['id']}")
    assert unsigned.status_code == 401 and unsigned.json()["error"]["type"] == "unauthorized"
    other_tenant = server.client(server.create_key("other"))
    with other_tenant as c:
        assert c.get(f"/v1/files/{one['id']}").status_code == 404  # a key: its tenant's only
        assert c.get(link).status_code == 200  # a link: whoever holds it
        assert c.get(flipped).status_code == 404  # a bad link with a key: the key decides
    with server.client(server.create_key("acme")) as c:
        for bad in (longer, flipped, link.split("&signature=")[0]):
            r = c.get(bad)
            assert r.status_code == 200 and r.content == PNG, bad
        assert c.get(swapped).content == PNG  # the file it names, the key's tenant's


def test_a_link_expires_after_the_configured_lifetime(make_server: Any) -> None:
    server = media_server(make_server, files={"url_lifetime": 5})
    with server.client(server.create_key("acme")) as c:
        made = c.post("/v1/tasks", json=IMAGE).json()
        link = server.url + wait(c, made["id"])["result"]["files"][0]["url"]
        assert int(query(link)["expires"]) <= time.time() + 7
        assert fetch(link).status_code == 200
        until(lambda: fetch(link).status_code == 403, timeout=30, what="the link to expire")
        r = fetch(link)
        assert r.json()["error"]["message"].startswith("this file link has expired")
        fresh = server.url + c.get(f"/v1/tasks/{made['id']}").json()["result"]["files"][0]["url"]
        assert fetch(fresh).status_code == 200  # reading the task again gives a new one


@pytest.mark.postgres
def test_a_link_signed_by_one_api_process_works_on_another(
    tmp_path: Path, make_server: Any
) -> None:
    asyncio.run(reset_postgres())
    shared = {"store_url": PG_URL, "files_url": f"file://{tmp_path}/files"}
    a: Server = make_server([mock_route("media", MODELS)], **shared)
    b: Server = make_server([mock_route("media", MODELS)], **shared)
    a.start("api")
    b.start("api")
    make_server([mock_route("media", MODELS)], **shared).start("worker")
    with a.client(a.create_key("acme")) as ca:
        body = {"prompt": "a fox", "user_id": "u1", "provider": "openai", "model": "sora"}
        made = ca.post("/api/v1/ai/video/task", json=body).json()
        url = volcengine_result(ca, made["data"]["task_id"])["video_url"]
    assert url.startswith(a.url)
    on_b = b.url + url.removeprefix(a.url)
    r = fetch(on_b)
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert fetch(on_b[:-2] + "xx").status_code == 403
    secret = secret_of(PG_URL)
    assert all(secret not in s.log.read_text() for s in (a, b))
