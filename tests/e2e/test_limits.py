"""Limits per key and per tenant over HTTP, against real servers: going over one answers 429
with a message naming it and a ``Retry-After``, in the shape of the API called; keys' limits
are set through the API and the CLI and hold at once; and a key's limit holds across two
``taskgate api`` processes on one PostgreSQL store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PG_URL, reset_postgres
from tests.e2e.conftest import Server, mock_route

TOKENS_TENANT = {"tokens_per_day": 10}  # a mock chat of one word uses 5 (1 in, 4 out)
LIMITS = {"tenants": {"capped": {"requests_per_minute": 2}, "wordy": TOKENS_TENANT}}


@pytest.fixture
def limited(make_server: Any) -> Server:
    s: Server = make_server(limits=LIMITS)
    s.start()
    return s


def make_key(admin: httpx.Client, tenant: str = "acme", **limits: Any) -> str:
    r = admin.post("/v1/keys", json={"tenant": tenant, "limits": limits})
    assert r.status_code == 201, r.text
    assert r.json()["limits"] == {
        "requests_per_minute": None,
        "tokens_per_day": None,
        "cost_per_month": None,
        **limits,
    }
    secret: str = r.json()["key"]
    return secret


def key_id(admin: httpx.Client, secret: str) -> str:
    keys = admin.get("/v1/keys").json()["data"]
    return str(next(k["id"] for k in keys if secret.startswith(k["prefix"])))


# --- each API's shape --------------------------------------------------------------------


def native_shape(r: httpx.Response) -> str:
    error = r.json()["error"]
    assert error["type"] == "rate_limited" and error["limit"] == "requests_per_minute"
    assert error["retry_after"] == int(r.headers["retry-after"])
    return str(error["message"])


def openai_shape(r: httpx.Response) -> str:
    error = r.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    return str(error["message"])


def detail_shape(r: httpx.Response) -> str:  # AIFlow and AI Task System
    body = r.json()
    assert body["error"]["type"] == "rate_limited" and body["detail"] == body["error"]["message"]
    return str(body["detail"])


def envelope_shape(r: httpx.Response) -> str:  # Volcengine AI Server
    body = r.json()
    assert body["success"] is False and body["data"] is None
    return str(body["message"])


@dataclass(frozen=True)
class Submit:
    name: str
    path: str
    body: dict[str, Any]
    shape: Callable[[httpx.Response], str]


CHAT = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
SUBMITS = [
    Submit("native", "/v1/tasks", {"kind": "chat", "model": "mock", "input": "hi"}, native_shape),
    Submit(
        "native-batch",
        "/v1/batches",
        {"kind": "chat", "models": ["mock"], "input": "hi"},
        native_shape,
    ),
    Submit("openai-chat", "/openai/v1/chat/completions", CHAT, openai_shape),
    Submit("openai-shared-chat", "/v1/chat/completions", CHAT, openai_shape),
    Submit(
        "openai-images",
        "/openai/v1/images/generations",
        {"model": "mock", "prompt": "hi"},
        openai_shape,
    ),
    Submit(
        "aiflow",
        "/api/v1/tasks_json",
        {"task_type": "text-generation", "model_spec": {"name": "mock"}, "payload": {}},
        detail_shape,
    ),
    Submit(
        "volcengine",
        "/api/v1/ai/text/task",
        {"prompt": "hi", "model": "mock", "provider": "volcengine"},
        envelope_shape,
    ),
    Submit("tasksystem", "/v1/chat/completions", {"prompt": "hi", "model": "mock"}, detail_shape),
]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the table below (each case makes keys of its own)."""
    root = tmp_path_factory.mktemp("limits")
    s = Server(root, [mock_route()])
    s.start()
    yield s
    s.stop(kill=True)


@pytest.mark.parametrize("submit", SUBMITS, ids=lambda s: s.name)
def test_a_key_over_its_limit_gets_429_in_the_apis_shape(shared: Server, submit: Submit) -> None:
    with shared.client(shared.create_key("ops", admin=True)) as admin:
        secret = make_key(admin, requests_per_minute=1)
        kid = key_id(admin, secret)
        before = admin.get("/v1/usage", params={"group_by": "key"}).json()["total"]["tasks"]
        with shared.client(secret) as c:
            first = c.post(submit.path, json=submit.body)
            assert first.status_code < 300, first.text
            over = c.post(submit.path, json=submit.body)
        assert over.status_code == 429, over.text
        assert 1 <= int(over.headers["retry-after"]) <= 60
        message = submit.shape(over)
        assert message.startswith(f"key {kid} is over its limit of 1 requests per minute")
        assert "try again in" in message
        after = admin.get("/v1/usage", params={"group_by": "key"}).json()["total"]["tasks"]
        assert after == before + 1  # the refused request stored no task


def test_a_tenants_limits_come_from_the_config(limited: Server) -> None:
    with (
        limited.client(limited.create_key("capped")) as c1,
        limited.client(limited.create_key("capped")) as c2,
    ):
        chat = {"kind": "chat", "model": "mock", "input": "hi"}
        assert [c.post("/v1/tasks", json=chat).status_code for c in (c1, c2, c1)] == [
            202,
            202,
            429,
        ]
        refusal = c2.post("/v1/tasks", json=chat).json()["error"]
        assert refusal["message"].startswith("tenant capped is over its limit of 2 requests")
    with limited.client(limited.create_key("acme")) as other:
        assert other.post("/v1/tasks", json=chat).status_code == 202


def test_tokens_of_ended_tasks_count_towards_a_tenants_day(limited: Server) -> None:
    chat = {"kind": "chat", "model": "mock", "input": "hi"}
    with limited.client(limited.create_key("wordy")) as c:
        for _ in range(2):  # 5 tokens each: 10 once both have ended
            task = c.post("/v1/tasks", json=chat).json()
            done = c.get(f"/v1/tasks/{task['id']}", params={"wait": 20}).json()
            assert done["usage"]["input_tokens"] + done["usage"]["output_tokens"] == 5
        over = c.post("/v1/tasks", json=chat)
    assert over.status_code == 429
    error = over.json()["error"]
    assert error["limit"] == "tokens_per_day"
    assert "tenant wordy is over its limit of 10 tokens per day" in error["message"]
    assert 0 < int(over.headers["retry-after"]) <= 86_400


def test_changed_limits_hold_at_once_despite_the_key_cache(make_server: Any) -> None:
    s: Server = make_server(auth_cache_seconds=300)
    s.start()
    chat = {"kind": "chat", "model": "mock", "input": "hi"}
    with s.client(s.create_key("ops", admin=True)) as admin:
        secret = make_key(admin)
        kid = key_id(admin, secret)
        with s.client(secret) as c:
            assert c.post("/v1/tasks", json=chat).status_code == 202  # cached, no limits
            r = admin.patch(f"/v1/keys/{kid}", json={"limits": {"requests_per_minute": 1}})
            assert r.status_code == 200 and r.json()["limits"]["requests_per_minute"] == 1
            assert [c.post("/v1/tasks", json=chat).status_code for _ in range(2)] == [202, 429]
            lifted = {"limits": {"requests_per_minute": None, "tokens_per_day": 99}}
            r = admin.patch(f"/v1/keys/{kid}", json=lifted)
            assert r.json()["limits"] == {
                "requests_per_minute": None,
                "tokens_per_day": 99,
                "cost_per_month": None,
            }
            assert c.post("/v1/tasks", json=chat).status_code == 202
            refused = c.patch(f"/v1/keys/{kid}", json={"limits": {"requests_per_minute": None}})
            assert refused.status_code == 403
        missing = admin.patch("/v1/keys/key_missing", json={"limits": {"tokens_per_day": 1}})
        assert missing.status_code == 404
        for bad in ({"requests_per_minute": 0}, {"cost_per_month": -1}, {"per_hour": 1}, None):
            r = admin.patch(f"/v1/keys/{kid}", json={"limits": bad})
            assert r.status_code == 422, r.text
        r = admin.post("/v1/keys", json={"tenant": "acme", "limits": {"tokens_per_day": 0}})
        assert r.status_code == 422
        assert len(admin.get("/v1/keys", params={"tenant": "acme"}).json()["data"]) == 1


def test_the_cli_sets_a_keys_limits(server: Server) -> None:
    made = server.cli("keys", "create", "--tenant", "acme", "--rpm", "1", "--tokens-per-day", "50")
    secret = made.stdout.strip()
    kid, tenant, role, limits = made.stderr.strip().split("\t")
    assert (tenant, role, limits) == ("acme", "tenant", "1/min, 50 tokens/day")
    chat = {"kind": "chat", "model": "mock", "input": "hi"}
    with server.client(secret) as c:
        assert [c.post("/v1/tasks", json=chat).status_code for _ in range(2)] == [202, 429]
        changed = server.cli("keys", "limits", kid, "--lift", "rpm", "--cost-per-month", "2.5")
        assert changed.stdout.split("\t")[2].strip() == "50 tokens/day, 2.5/month"
        assert c.post("/v1/tasks", json=chat).status_code == 202
    listed = server.cli("keys", "list", "--tenant", "acme").stdout
    assert "50 tokens/day, 2.5/month" in listed
    assert server.cli("keys", "limits", kid, check=False).returncode == 2  # nothing to change
    bad = server.cli("keys", "create", "--tenant", "acme", "--rpm", "0", check=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    missing = server.cli("keys", "limits", "key_missing", "--rpm", "3", check=False)
    assert missing.returncode == 1 and "no active key key_missing" in missing.stderr


# --- across gateways ---------------------------------------------------------------------


@pytest.mark.postgres
def test_a_keys_limit_answers_429_at_the_same_count_on_either_gateway(tmp_path: Path) -> None:
    """Two ``taskgate api`` processes on one PostgreSQL store (no worker: the tasks wait):
    a key allowed 5 requests a minute gets its 6th refused, whichever gateway each request
    reaches."""
    asyncio.run(reset_postgres())
    gateways = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        gateways.append(Server(tmp_path / name, [mock_route()], store_url=PG_URL))
    try:
        for g in gateways:
            g.start("api")
        a, b = gateways
        with a.client(a.create_key("ops", admin=True)) as admin:
            orders = {"a only": [a] * 7, "b only": [b] * 7, "alternating": [a, b] * 4}
            for order, servers in orders.items():
                secret = make_key(admin, requests_per_minute=5)
                statuses = [submit_on(g, secret) for g in servers]
                assert statuses[:5] == [202] * 5, order
                assert set(statuses[5:]) == {429}, order
    finally:
        for g in gateways:
            g.stop(kill=True)


def submit_on(server: Server, secret: str) -> int:
    with server.client(secret) as c:
        return c.post("/v1/tasks", json={"kind": "chat", "model": "mock", "input": "x"}).status_code
