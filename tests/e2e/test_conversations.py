"""Conversations over the native API: turns carry their history, fan-out answers are kept per
model, context is bounded, and a conversation belongs to its tenant."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.conftest import Server, mock_route
from tests.e2e.test_api import submit, wait


def conv_server(make_server: Any, **settings: Any) -> Server:
    server: Server = make_server([mock_route("alpha"), mock_route("beta")], **settings)
    server.start()
    return server


def turn(c: httpx.Client, conversation: str, text: str, model: str = "alpha") -> dict[str, Any]:
    task = submit(c, model=model, input=text, conversation_id=conversation)
    done = wait(c, task["id"])
    assert done["status"] == "SUCCESS", done
    return done


def test_each_turn_is_sent_the_earlier_ones_and_history_keeps_them_in_order(
    make_server: Any,
) -> None:
    server = conv_server(make_server)
    with server.client(server.create_key("acme")) as c:
        conv = c.post("/v1/conversations", json={"title": "csv"}).json()
        first = turn(c, conv["id"], "how do I read a CSV?")
        assert first["input"] == {"messages": [{"role": "user", "content": "how do I read a CSV?"}]}
        second = turn(c, conv["id"], "and write one?")
        assert second["input"]["messages"] == [
            {"role": "user", "content": "how do I read a CSV?"},
            {"role": "assistant", "content": "mock reply to: how do I read a CSV?"},
            {"role": "user", "content": "and write one?"},
        ]
        history = c.get(f"/v1/conversations/{conv['id']}/history").json()
        assert history["conversation_id"] == conv["id"]
        assert [(m["role"], m["model"], m["content"]) for m in history["history"]] == [
            ("user", None, "how do I read a CSV?"),
            ("assistant", "alpha", "mock reply to: how do I read a CSV?"),
            ("user", None, "and write one?"),
            ("assistant", "alpha", "mock reply to: and write one?"),
        ]
        assert c.get(f"/v1/conversations/{conv['id']}").json()["messages"] == history["history"]
        again = {"kind": "chat", "model": "alpha", "input": "x", "conversation_id": conv["id"]}
        r = c.post("/v1/tasks", json=again, headers={"Idempotency-Key": "k1"})
        assert r.status_code == 400 and "idempotency key" in r.json()["error"]["message"]
        assert second["conversation_id"] == conv["id"]


def test_fan_out_answers_are_kept_per_model_and_each_model_sees_its_own(
    make_server: Any,
) -> None:
    server = conv_server(make_server)
    with server.client(server.create_key("acme")) as c:
        conv = c.post("/v1/conversations").json()
        body = {
            "kind": "chat",
            "models": ["alpha", "beta"],
            "input": "hi",
            "conversation_id": conv["id"],
        }
        batch = c.post("/v1/batches", json=body).json()
        assert batch["conversation_id"] == conv["id"]
        assert (
            c.get(f"/v1/batches/{batch['id']}", params={"wait": 20}).json()["status"] == "SUCCESS"
        )
        turns = c.get(f"/v1/conversations/{conv['id']}").json()["messages"]
        assert (turns[0]["role"], turns[0]["model"]) == ("user", None)
        assert sorted((m["role"], m["model"]) for m in turns[1:]) == [
            ("assistant", "alpha"),
            ("assistant", "beta"),
        ]
        to_beta = turn(c, conv["id"], "again", model="beta")
        assert to_beta["input"]["messages"][1] == {
            "role": "assistant",
            "content": "mock reply to: hi",
        }
        assert len(to_beta["input"]["messages"]) == 3  # one answer per earlier turn, beta's


def test_context_is_bounded_by_turns(make_server: Any) -> None:
    server = conv_server(make_server, conversations={"max_turns": 1})
    with server.client(server.create_key("acme")) as c:
        conv = c.post("/v1/conversations").json()
        for text in ("one", "two"):
            turn(c, conv["id"], text)
        third = turn(c, conv["id"], "three")
        assert [m["content"] for m in third["input"]["messages"]] == [
            "two",
            "mock reply to: two",
            "three",
        ]


def test_conversations_belong_to_their_tenant_and_can_be_listed_and_deleted(
    make_server: Any,
) -> None:
    server = conv_server(make_server)
    a, b = server.create_key("a"), server.create_key("b")
    with server.client(a) as ca, server.client(b) as cb:
        conv = ca.post("/v1/conversations", json={"title": "mine"}).json()
        r = cb.post(
            "/v1/tasks",
            json={"kind": "chat", "model": "alpha", "input": "x", "conversation_id": conv["id"]},
        )
        assert r.status_code == 404
        assert cb.get(f"/v1/conversations/{conv['id']}/history").status_code == 404
        assert cb.delete(f"/v1/conversations/{conv['id']}").status_code == 404
        assert cb.get("/v1/conversations").json()["data"] == []
        assert [x["title"] for x in ca.get("/v1/conversations").json()["data"]] == ["mine"]
        image = {"kind": "image", "model": "alpha", "input": "a fox", "conversation_id": conv["id"]}
        done = wait(ca, ca.post("/v1/tasks", json=image).json()["id"])
        assert done["input"] == "a fox"  # no history sent with an image
        [user, answer] = ca.get(f"/v1/conversations/{conv['id']}").json()["messages"]
        assert (user["content"], answer["model"]) == ("a fox", "alpha")
        assert answer["content"]["files"][0]["id"] == done["result"]["files"][0]["id"]
        assert ca.delete(f"/v1/conversations/{conv['id']}").json()["deleted"] is True
        assert ca.get(f"/v1/conversations/{conv['id']}").status_code == 404


def test_a_late_answer_stays_with_its_own_turn(make_server: Any) -> None:
    routes = [mock_route("alpha"), mock_route("slow", options={"latency_ms": 1500})]
    server: Server = make_server(routes)
    server.start()
    with server.client(server.create_key("acme")) as c:
        conv = c.post("/v1/conversations").json()
        body = {
            "kind": "chat",
            "models": ["alpha", "slow"],
            "input": "q1",
            "conversation_id": conv["id"],
        }
        batch = c.post("/v1/batches", json=body).json()
        turn(c, conv["id"], "q2")  # alpha answers q2 while slow still works on q1
        assert (
            c.get(f"/v1/batches/{batch['id']}", params={"wait": 20}).json()["status"] == "SUCCESS"
        )
        to_slow = turn(c, conv["id"], "q3", model="slow")
    assert to_slow["input"]["messages"] == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "mock reply to: q1"},  # slow's own, though late
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "mock reply to: q2"},  # alpha's: slow gave none
        {"role": "user", "content": "q3"},
    ]
