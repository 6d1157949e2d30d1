"""The AI Task System API (its Async and Enterprise editions) against a real server: every
request example of both READMEs, fan-out with a comma-separated model, chat as a form,
conversations carried from turn to turn, and OpenAI-shaped chat at the same path still answered
by the OpenAI API."""

# ruff: noqa: RUF001  (the AI Task System READMEs' own text, with their full-width punctuation)
from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, mock_route
from tests.e2e.test_api import wait

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
    ]
    s: Server = make_server(routes)
    s.start()
    return s


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
        task = wait(c, first["task_id"])
        assert task["status"] == "SUCCESS" and task["conversation_id"] == first["conversation_id"]
        assert task["result"]["output"]["text"] == "mock reply to: 你好，请介绍一下你自己"
        again = {
            **README_002_CHAT,
            "prompt": "再说一遍",
            "conversation_id": first["conversation_id"],
        }
        second = dispatched(c.post("/v1/chat/completions", json=again))
        assert second["conversation_id"] == first["conversation_id"]
        messages = wait(c, second["task_id"])["input"]["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        history = c.get(f"/v1/conversations/{first['conversation_id']}/history").json()
        assert [m["content"] for m in history["history"]] == [
            "你好，请介绍一下你自己",
            "mock reply to: 你好，请介绍一下你自己",
            "再说一遍",
            "mock reply to: 再说一遍",
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
        for r in batch["results"]:
            assert r["status"] == 1 and r["task_status"] == "SUCCESS" and r["cost_time"] >= 0
            assert r["response_text"] == "mock reply to: 如何用 Python 读取 CSV 文件？"
        history = c.get(f"/v1/conversations/{reply['conversation_id']}/history").json()
        answers = [m["model"] for m in history["history"] if m["role"] == "assistant"]
        assert sorted(answers) == ["deepseek-r1:1.5b", "gemini-2.5-flash"]


@pytest.mark.parametrize("as_multipart", [False, True])
def test_chat_as_a_form(server: Server, as_multipart: bool) -> None:
    form = {"prompt": "hello", "model": "gemini-2.5-flash,deepseek-r1:1.5b", "conversation_id": ""}
    with server.client(server.create_key("acme")) as c:
        if as_multipart:
            r = c.post("/v1/chat/completions", files={k: (None, v) for k, v in form.items()})
        else:
            r = c.post("/v1/chat/completions", data=form)
        reply = dispatched(r, tasks=2)
        assert wait(c, reply["task_ids"][1])["result"]["output"]["text"] == "mock reply to: hello"


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
        task = wait(c, made["task_id"])
        assert task["status"] == "SUCCESS" and task["kind"] == "image"
        [f] = task["result"]["files"]
        assert c.get(f["url"]).content.startswith(b"\x89PNG")
        history = c.get(f"/v1/conversations/{made['conversation_id']}/history").json()["history"]
        assert history[0]["content"] == README_002_IMAGE["prompt"]  # the image was a turn
        answers = [m["content"] for m in history if m["role"] == "assistant"]
        linked = [a["files"] for a in answers if isinstance(a, dict)]
        # the image answered a turn; its link, as every file link, is signed when read
        signed = f"/v1/files/{f['id']}?expires="
        assert any(x == [{"id": f["id"], "url": x[0]["url"]}] for x in linked)
        assert any(x[0]["url"].startswith(signed) for x in linked)


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
