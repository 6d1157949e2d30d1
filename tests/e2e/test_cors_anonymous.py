"""Browsers on other origins (``cors``) and clients that send no key
(``auth.anonymous_tenant``), as AI Task System's page needs them; both off by default."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server

PAGE = "http://page.example:5173"
CHAT = {"kind": "chat", "model": "mock", "input": "hi"}


@pytest.fixture
def open_server(make_server: Any) -> Server:
    server: Server = make_server(cors={"allow_origins": [PAGE]}, auth={"anonymous_tenant": "local"})
    server.start()
    return server


def preflight(server: Server, origin: str) -> httpx.Response:
    return httpx.options(
        f"{server.url}/v1/chat/completions",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )


def test_a_page_of_an_allowed_origin_gets_its_preflights_and_answers(open_server: Server) -> None:
    allowed = preflight(open_server, PAGE)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == PAGE
    assert "POST" in allowed.headers["access-control-allow-methods"]
    other = preflight(open_server, "https://elsewhere.example")
    assert "access-control-allow-origin" not in other.headers
    answer = httpx.get(f"{open_server.url}/v1/models", headers={"origin": PAGE})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == PAGE


def test_no_key_acts_as_the_anonymous_tenant_and_a_wrong_key_is_refused(
    open_server: Server,
) -> None:
    task = httpx.post(f"{open_server.url}/v1/tasks", json=CHAT)
    assert task.status_code == 202, task.text
    task_id = task.json()["id"]
    seen = httpx.get(f"{open_server.url}/v1/tasks/{task_id}", params={"wait": 20}).json()
    assert seen["status"] == "SUCCESS"
    with open_server.client(open_server.create_key("acme")) as other:
        assert other.get(f"/v1/tasks/{task_id}").status_code == 404  # another tenant
    with open_server.client(open_server.create_key("local")) as same:
        assert same.get(f"/v1/tasks/{task_id}").status_code == 200  # the tenant named
    wrong = httpx.post(
        f"{open_server.url}/v1/tasks", json=CHAT, headers={"authorization": "Bearer tg_wrong"}
    )
    assert wrong.status_code == 401
    assert httpx.get(f"{open_server.url}/v1/keys").status_code == 403  # never an admin
    chat = {"model": "mock", "messages": [{"role": "user", "content": "hello"}]}
    answered = httpx.post(f"{open_server.url}/v1/chat/completions", json=chat, timeout=30)
    assert answered.status_code == 200, answered.text  # the OpenAI route's fast path too


def test_both_are_off_by_default(server: Server) -> None:
    assert httpx.post(f"{server.url}/v1/tasks", json=CHAT).status_code == 401
    assert "access-control-allow-origin" not in preflight(server, PAGE).headers
