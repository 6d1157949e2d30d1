"""The AI Task System API (its Async and Enterprise editions) against a real server: every
request example of both READMEs, fan-out with a comma-separated model, chat as a form,
conversations carried from turn to turn, and OpenAI-shaped chat at the same path still answered
by the OpenAI API."""

# ruff: noqa: RUF001  (the AI Task System READMEs' own text, with their full-width punctuation)
from __future__ import annotations

import base64
import sqlite3
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, mock_route, until
from tests.fakes import in_thread
from tests.fakes.openai_server import FakeOpenAI

README_002_CHAT = {
    "prompt": "你好，请介绍一下你自己",
    "model": "gemini-2.5-flash",
    "conversation_id": None,
}
README_002_IMAGE = {
    "prompt": "一只在太空骑自行车的猫",
    "model": "stable-diffusion-3",
    "conversation_id": "可选的会话ID",
}
README_003_CHAT = {
    "prompt": "如何用 Python 读取 CSV 文件？",
    "model": "gemini-2.5-flash, deepseek-r1:1.5b",
    "conversation_id": None,
}


@pytest.fixture
def server(make_server: Any) -> Server:
    routes = [
        mock_route("gemini", ["gemini-*"]),
        mock_route("deepseek", ["deepseek-*"]),
        mock_route("sd", ["stable-diffusion-*"]),
        # one call at a time, each a minute long: a task runs while the next one waits
        mock_route(
            "slow",
            ["slow-*"],
            instances=[{"name": "slow-1", "max_concurrency": 1}],
            options={"latency_ms": 60_000},
        ),
        mock_route(
            "broken", ["broken-*"], options={"failure_rate": 1.0}, retry={"max_attempts": 1}
        ),
    ]
    s: Server = make_server(routes)
    s.start()
    return s


def wait_task(c: httpx.Client, task_id: str, api: str | None = None) -> dict[str, Any]:
    """The task once it has ended, in the shape asked for (by default its API's)."""
    params: dict[str, Any] = {"wait": 20} | ({"api": api} if api else {})
    r = c.get(f"/v1/tasks/{task_id}", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def dispatched(r: httpx.Response, tasks: int = 1) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["message"] == "Tasks dispatched successfully"
    assert len(body["task_ids"]) == tasks and body["task_id"] == body["task_ids"][0]
    assert body["batch_id"] and body["conversation_id"] and body["status"] == "PENDING"
    return body


def test_the_002_chat_example_opens_a_conversation_and_the_next_turn_continues_it(
    server: Server,
) -> None:
    with server.client(server.create_key("acme")) as c:
        first = dispatched(c.post("/v1/chat/completions", json=README_002_CHAT))
        task = wait_task(c, first["task_id"])
        assert task["status"] == 1 and task["task_status"] == "SUCCESS"
        assert task["conversation_id"] == first["conversation_id"]
        assert task["response_text"] == "mock reply to: 你好，请介绍一下你自己"
        again = {
            **README_002_CHAT,
            "prompt": "再说一遍",
            "conversation_id": first["conversation_id"],
        }
        second = dispatched(c.post("/v1/chat/completions", json=again))
        assert second["conversation_id"] == first["conversation_id"]
        wait_task(c, second["task_id"])
        messages = wait_task(c, second["task_id"], api="taskgate")["input"]["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        history = c.get(f"/v1/conversations/{first['conversation_id']}/history").json()
        model = README_002_CHAT["model"]
        assert history == [
            {"role": "user", "content": "你好，请介绍一下你自己", "model": model, "files": []},
            {"role": "assistant", "content": task["response_text"], "model": model},
            {"role": "user", "content": "再说一遍", "model": model, "files": []},
            {"role": "assistant", "content": "mock reply to: 再说一遍", "model": model},
        ]


def test_the_003_fan_out_example_runs_one_task_per_model_in_one_batch(server: Server) -> None:
    with server.client(server.create_key("acme")) as c:
        reply = dispatched(c.post("/v1/chat/completions", json=README_003_CHAT), tasks=2)
        batch = c.get(f"/v1/batches/{reply['batch_id']}", params={"wait": 20}).json()
        assert batch["batch_id"] == reply["batch_id"] and batch["status"] == "SUCCESS"
        assert [r["task_id"] for r in batch["results"]] == reply["task_ids"]
        gemini, deepseek = batch["results"]
        assert (gemini["model_name"], deepseek["model_name"]) == (
            "gemini-2.5-flash",
            "deepseek-r1:1.5b",
        )
        assert batch["user_prompt"] == README_003_CHAT["prompt"] and batch["created_at"]
        for r in batch["results"]:
            assert r["status"] == 1 and r["task_status"] == "SUCCESS" and r["cost_time"] >= 0
            assert r["response_text"] == "mock reply to: 如何用 Python 读取 CSV 文件？"
            assert r["error_msg"] is None
        history = c.get(f"/v1/conversations/{reply['conversation_id']}/history").json()
        # as AI Task System's server listed it: task by task, the prompt before each answer
        assert [m["role"] for m in history] == ["user", "assistant"] * 2
        assert {m["content"] for m in history[::2]} == {README_003_CHAT["prompt"]}
        for asked, answer in zip(history[::2], history[1::2], strict=True):
            assert asked["model"] == answer["model"]
        assert sorted(m["model"] for m in history[1::2]) == ["deepseek-r1:1.5b", "gemini-2.5-flash"]


@pytest.mark.parametrize("as_multipart", [False, True])
def test_chat_as_a_form(server: Server, as_multipart: bool) -> None:
    form = {"prompt": "hello", "model": "gemini-2.5-flash,deepseek-r1:1.5b", "conversation_id": ""}
    with server.client(server.create_key("acme")) as c:
        if as_multipart:
            r = c.post("/v1/chat/completions", files={k: (None, v) for k, v in form.items()})
        else:
            r = c.post("/v1/chat/completions", data=form)
        reply = dispatched(r, tasks=2)
        assert wait_task(c, reply["task_ids"][1])["response_text"] == "mock reply to: hello"


def test_the_002_image_example_needs_a_real_conversation_or_none(server: Server) -> None:
    with server.client(server.create_key("acme")) as c:
        r = c.post("/v1/images/generations", json=README_002_IMAGE)
        assert r.status_code == 404 and r.json()["detail"] == "no conversation '可选的会话ID'"
        r = c.post("/v1/images/generations", json={**README_002_IMAGE, "conversation_id": None})
        assert r.status_code == 200, r.text
        made = r.json()
        assert made["status"] == "PENDING" and made["conversation_id"]
        chat = {**README_002_CHAT, "conversation_id": made["conversation_id"]}
        assert (
            dispatched(c.post("/v1/chat/completions", json=chat))["conversation_id"]
            == (made["conversation_id"])
        )
        same = c.post("/v1/images/generations", json={**README_002_IMAGE, **chat}).json()
        assert same["conversation_id"] == made["conversation_id"]
        task = wait_task(c, made["task_id"])
        assert task["status"] == 1 and task["task_type"] == "IMAGE"
        assert task["prompt"] == README_002_IMAGE["prompt"]
        assert c.get(task["result_url"]).content.startswith(b"\x89PNG")
        history = c.get(f"/v1/conversations/{made['conversation_id']}/history").json()
        assert history[0]["content"] == README_002_IMAGE["prompt"]  # the image was a turn
        assert (history[1]["role"], history[1]["model"]) == ("assistant", "stable-diffusion-3")
        native = c.get(f"/v1/tasks/{made['task_id']}", params={"api": "taskgate"}).json()
        [f] = native["result"]["files"]
        # every link to the image, in every shape, is signed when read
        signed = f"{server.url}/v1/files/{f['id']}?expires="
        assert task["result_url"].startswith(signed)
        assert history[1]["content"].startswith(f"![image]({signed}")
        assert native["result"]["files"][0]["url"].startswith(signed[len(server.url) :])


def test_refusals_leave_nothing_behind_and_stay_in_the_tenant(server: Server) -> None:
    a, b = server.create_key("a"), server.create_key("b")
    with server.client(a) as ca, server.client(b) as cb:
        for model in ("gemini-2.5-flash, gpt-9", "gemini-x, gemini-x", " , "):
            r = ca.post("/v1/chat/completions", json={**README_003_CHAT, "model": model})
            assert r.status_code == 400 and r.json()["error"]["field"] == "model", r.text
        r = ca.post("/v1/chat/completions", json={"model": "gemini-2.5-flash"})
        assert r.status_code == 400 and "prompt" in r.json()["detail"]
        r = ca.post(
            "/v1/chat/completions", content=b"{oops", headers={"content-type": "text/plain"}
        )
        assert r.status_code == 400 and r.json()["detail"] == "malformed JSON body"
        assert ca.get("/v1/conversations").json()["data"] == []
        assert ca.get("/v1/tasks").json()["data"] == []
        mine = dispatched(ca.post("/v1/chat/completions", json=README_002_CHAT))
        theirs = {**README_002_CHAT, "conversation_id": mine["conversation_id"]}
        assert cb.post("/v1/chat/completions", json=theirs).status_code == 404
        assert (
            cb.post("/v1/images/generations", json={**README_002_IMAGE, **theirs}).status_code
            == 404
        )
    r = httpx.post(f"{server.url}/v1/chat/completions", json=README_002_CHAT)
    assert r.status_code == 401 and "missing API key" in r.json()["detail"]


def test_an_openai_shaped_chat_at_the_same_path_gets_openai_s_answer(server: Server) -> None:
    body = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}
    with server.client(server.create_key("acme")) as c:
        r = c.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        reply = r.json()
        assert "batch_id" not in reply and reply["object"] == "chat.completion"
        assert reply["choices"][0]["message"]["content"] == "mock reply to: hi"


def test_each_task_answers_in_the_shape_of_the_api_it_came_through(server: Server) -> None:
    with server.client(server.create_key("acme")) as c:
        mine = c.post("/v1/tasks", json={"kind": "chat", "model": "gemini-x", "input": "hi"})
        theirs = dispatched(c.post("/v1/chat/completions", json=README_002_CHAT))
        native = wait_task(c, mine.json()["id"])
        assert native["status"] == "SUCCESS" and native["history"] and "task_id" not in native
        ours = wait_task(c, theirs["task_id"])
        assert ours["status"] == 1 and ours["task_id"] == theirs["task_id"]
        assert {k: ours[k] for k in ("task_type", "prompt", "model_name")} == {
            "task_type": "TEXT",
            "prompt": README_002_CHAT["prompt"],
            "model_name": "gemini-2.5-flash",
        }
        assert ours["cost_time"] >= 0 and ours["created_at"] and ours["error_msg"] is None
        # either shape of either task, when asked for
        assert (
            wait_task(c, mine.json()["id"], api="tasksystem")["response_text"]
            == "mock reply to: hi"
        )
        assert wait_task(c, theirs["task_id"], api="taskgate")["status"] == "SUCCESS"
        for path in (
            f"/v1/tasks/{theirs['task_id']}",
            f"/v1/conversations/{theirs['conversation_id']}/history",
        ):
            r = c.get(path, params={"api": "aiflow"})
            assert r.status_code == 400 and r.json()["error"]["field"] == "api", r.text
        # a conversation of taskgate's own API answers its history in taskgate's shape
        conversation = c.post("/v1/conversations", json={"title": "own"}).json()
        turn = {
            "kind": "chat",
            "model": "gemini-x",
            "input": "one",
            "conversation_id": conversation["id"],
        }
        wait_task(c, c.post("/v1/tasks", json=turn).json()["id"])
        path = f"/v1/conversations/{conversation['id']}/history"
        own = c.get(path).json()
        assert own["conversation_id"] == conversation["id"]
        assert [m["content"] for m in own["history"]] == ["one", "mock reply to: one"]
        assert c.get(path, params={"api": "tasksystem"}).json() == [
            {"role": "user", "content": "one", "model": "gemini-x", "files": []},
            {"role": "assistant", "content": "mock reply to: one", "model": "gemini-x"},
        ]
        path = f"/v1/conversations/{theirs['conversation_id']}/history"
        assert (
            c.get(path, params={"api": "taskgate"}).json()["history"][0]["content"]
            == (README_002_CHAT["prompt"])
        )


def test_history_shows_running_tasks_as_placeholders_and_leaves_failed_ones_out(
    server: Server,
) -> None:
    with server.client(server.create_key("acme")) as c:
        first = dispatched(c.post("/v1/chat/completions", json={"prompt": "a", "model": "slow-1"}))
        conversation = first["conversation_id"]
        turn = {"conversation_id": conversation}
        failing = {"prompt": "b", "model": "broken-1", **turn}
        failed = dispatched(c.post("/v1/chat/completions", json=failing))
        waiting = dispatched(
            c.post("/v1/chat/completions", json={"prompt": "c", "model": "slow-2", **turn})
        )
        until(lambda: c.get(f"/v1/tasks/{first['task_id']}").json()["status"] == 3, what="a start")
        assert c.get(f"/v1/tasks/{waiting['task_id']}").json()["status"] == 0  # the slot is taken
        ended = wait_task(c, failed["task_id"])
        assert ended["status"] == 2 and ended["error_msg"] and ended["response_text"] is None
        batch = c.get(f"/v1/batches/{failed['batch_id']}").json()
        [result] = batch["results"]
        assert result["status"] == 2 and result["error_msg"] == ended["error_msg"]
        history = c.get(f"/v1/conversations/{conversation}/history").json()
        placeholder = {"role": "assistant", "content": "thinking...", "is_loading": True}
        assert history == [
            {"role": "user", "content": "a", "model": "slow-1", "files": []},
            {**placeholder, "model": "slow-1"},
            {"role": "user", "content": "c", "model": "slow-2", "files": []},
            {**placeholder, "model": "slow-2"},
        ]
        for task_id in (first["task_id"], waiting["task_id"]):
            c.delete(f"/v1/tasks/{task_id}")


def test_conversations_list_both_apis_shapes_the_latest_changed_first(server: Server) -> None:
    with (
        server.client(server.create_key("acme")) as c,
        server.client(server.create_key("other")) as o,
    ):
        older = dispatched(
            c.post("/v1/chat/completions", json={"prompt": "older", "model": "gemini-1"})
        )
        newer = dispatched(
            c.post("/v1/chat/completions", json={"prompt": "newer", "model": "gemini-1"})
        )
        own = c.post("/v1/conversations", json={"title": "taskgate's own"}).json()
        again = {
            "prompt": "again",
            "model": "gemini-1",
            "conversation_id": older["conversation_id"],
        }
        dispatched(c.post("/v1/chat/completions", json=again))
        o.post("/v1/conversations", json={"title": "another tenant's"})
        listed = c.get("/v1/conversations").json()
        assert [x["id"] for x in listed["data"]] == [
            own["id"],
            newer["conversation_id"],
            older["conversation_id"],
        ]
        assert listed["next_cursor"] is None
        entries = listed["conversations"]
        assert [(x["conversation_id"], x["title"]) for x in entries] == [
            (older["conversation_id"], "older"),
            (newer["conversation_id"], "newer"),
        ]
        assert entries[0]["modified"] > entries[1]["modified"]
        assert c.get("/v1/conversations", params={"api": "tasksystem"}).json() == {
            "conversations": entries
        }
        only = c.get("/v1/conversations", params={"api": "taskgate", "limit": 1}).json()
        assert set(only) == {"data", "next_cursor"} and only["next_cursor"] == own["id"]
        assert c.get("/v1/conversations", params={"api": "x"}).status_code == 400


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def test_form_files_reach_the_model_as_image_parts_and_the_history_links_them(
    make_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with in_thread(FakeOpenAI(key="sk-e2e-files")) as fake:
        instance = {"name": "f", "endpoint": fake.base_url, "secret_env": "TS_FAKE_KEY"}
        route = {"name": "up", "models": ["gpt-*"], "provider": "openai", "instances": [instance]}
        monkeypatch.setenv("TS_FAKE_KEY", "sk-e2e-files")
        server: Server = make_server([route])
        server.start()
        with server.client(server.create_key("acme")) as c:
            form = {"prompt": "what is this?", "model": "gpt-4o", "mode": "text"}
            files = [("files", ("cat.png", PNG, "image/png"))]
            reply = dispatched(c.post("/v1/chat/completions", data=form, files=files))
            task = wait_task(c, reply["task_id"])
            assert task["status"] == 1 and task["task_type"] == "MULTIMODAL"
            assert task["prompt"] == "what is this?"
            [sent] = [r.body for r in fake.requests if r.path.endswith("/chat/completions")]
            text, image = sent["messages"][-1]["content"]
            assert text == {"type": "text", "text": "what is this?"}
            data_uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
            assert image == {"type": "image_url", "image_url": {"url": data_uri}}
            history = c.get(f"/v1/conversations/{reply['conversation_id']}/history").json()
            [url] = history[0]["files"]
            assert url.startswith(server.url + "/files/") and url.endswith(".png")
            assert c.get(url).content == PNG
            file_id = url.rsplit("/", 1)[1].removesuffix(".png")
            assert kept_for(server, file_id) == [reply["task_id"]]  # retention keeps it
            # a file no model reads, or files with an image to make, are refused, storing nothing
            before = stored_files(server)
            for form_, files_ in (
                (form, [("files", ("notes.txt", b"hello", "text/plain"))]),
                ({**form, "mode": "image"}, files),
            ):
                r = c.post("/v1/chat/completions", data=form_, files=files_)
                assert r.status_code == 400 and r.json()["error"]["field"] == "files", r.text
            assert stored_files(server) == before
            assert len(c.get("/v1/conversations").json()["conversations"]) == 1


def test_mode_image_makes_an_image_task_per_model(server: Server) -> None:
    with server.client(server.create_key("acme")) as c:
        form = {"prompt": "a cat", "model": "stable-diffusion-3", "mode": "image"}
        reply = dispatched(
            c.post("/v1/chat/completions", files={k: (None, v) for k, v in form.items()})
        )
        task = wait_task(c, reply["task_id"])
        assert task["task_type"] == "IMAGE" and task["status"] == 1
        assert wait_task(c, reply["task_id"], api="taskgate")["kind"] == "image"
        [result] = c.get(f"/v1/batches/{reply['batch_id']}").json()["results"]
        assert result["response_text"] == f"![image]({task['result_url']})"
        assert c.get(task["result_url"]).content.startswith(b"\x89PNG")
        two = {**form, "model": "stable-diffusion-3, gemini-2.5-flash"}
        fanned = dispatched(c.post("/v1/chat/completions", data=two), tasks=2)
        batch = c.get(f"/v1/batches/{fanned['batch_id']}", params={"wait": 20}).json()
        assert [r["status"] for r in batch["results"]] == [1, 1]
        assert all(r["response_text"].startswith("![image](http") for r in batch["results"])


def stored_files(server: Server) -> list[str]:
    return sorted(p.name for p in (server.root / "files").rglob("*") if p.is_file())


def kept_for(server: Server, file_id: str) -> list[str]:
    """The tasks that name the file in the store's file_refs (what retention keeps)."""
    with sqlite3.connect(server.root / "taskgate.db") as db:
        rows = db.execute("SELECT task_id FROM file_refs WHERE file_id = ?", (file_id,))
        return [r[0] for r in rows]
