"""Usage and cost over HTTP, against a real server: each task records the tokens and cost of
its attempts at the configured prices; ``GET /v1/usage`` sums them by tenant, key, model or
day, confined to a tenant key's own tenant; ``taskgate usage`` prints them."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, mock_route

# mock chat: input tokens are the prompt's words, output tokens the reply's
# ("mock reply to: " and the prompt)
PRICES = [
    {"models": ["priced-*"], "input_per_million": 1000, "output_per_million": 2000},
    {"models": ["priced", "mock*"], "per_request": 0.5, "input_per_million": 1000},
]
ROUTES = [mock_route(), mock_route("priced")]


@pytest.fixture
def priced(make_server: Any) -> Server:
    s: Server = make_server(ROUTES, prices=PRICES)
    s.start()
    return s


def run(c: httpx.Client, prompt: str, model: str = "priced-x", **params: Any) -> dict[str, Any]:
    """Submit a chat task and wait for it to end."""
    body = {"kind": "chat", "model": model, "input": prompt, "params": params}
    r = c.post("/v1/tasks", json=body)
    assert r.status_code == 202, r.text
    task: dict[str, Any] = c.get(f"/v1/tasks/{r.json()['id']}", params={"wait": 20}).json()
    assert task["status"] == "SUCCESS", task
    return task


def test_a_task_records_its_tokens_and_cost(priced: Server) -> None:
    with priced.client(priced.create_key("acme")) as c:
        queued = c.post("/v1/tasks", json={"kind": "chat", "model": "priced-x", "input": "a"})
        assert queued.json()["usage"] == {"input_tokens": 0, "output_tokens": 0, "cost": 0.0}
        task = run(c, "one two three")
        # 3 tokens in, 6 out ("mock reply to: one two three")
        assert task["usage"] == {"input_tokens": 3, "output_tokens": 6, "cost": 0.015}
        retried = run(c, "one two three", "priced", mock_fail_attempts=1)
        assert retried["attempts"] == 2  # the failed attempt answered nothing, cost nothing
        assert retried["usage"] == {"input_tokens": 3, "output_tokens": 6, "cost": 0.503}
        listed = c.get("/v1/tasks", params={"model": "priced"}).json()["data"]
        assert listed[0]["usage"] == retried["usage"]


def test_usage_is_grouped_and_confined_to_a_tenant_keys_tenant(priced: Server) -> None:
    admin = priced.client(priced.create_key("ops", admin=True))
    acme1, acme2 = priced.create_key("acme"), priced.create_key("acme")
    with (
        priced.client(acme1) as a1,
        priced.client(acme2) as a2,
        priced.client(priced.create_key("beta")) as b,
        admin,
    ):
        run(a1, "one two")  # 2 in, 5 out: 0.012
        run(a2, "one two three", "priced")  # 3 in, 6 out: 0.503
        run(b, "one")  # 1 in, 4 out: 0.009
        everyone = admin.get("/v1/usage").json()
        assert [(g["group"], g["tasks"], g["cost"]) for g in everyone["data"]] == [
            ("acme", 2, 0.515),
            ("beta", 1, 0.009),
        ]
        assert everyone["total"] == {
            "tasks": 3,
            "input_tokens": 6,
            "output_tokens": 15,
            "cost": 0.524,
        }
        assert everyone["group_by"] == "tenant" and everyone["tenant"] is None
        assert everyone["from"].endswith("-01T00:00:00.000Z")  # this month, by default

        own = a1.get("/v1/usage", params={"group_by": "key"}).json()
        assert own["tenant"] == "acme"
        assert sorted(g["tasks"] for g in own["data"]) == [1, 1]  # acme's two keys only
        assert own["total"]["cost"] == 0.515
        refused = a1.get("/v1/usage", params={"tenant": "beta"})
        assert refused.status_code == 403 and "own tenant" in refused.json()["error"]["message"]
        assert a1.get("/v1/usage", params={"tenant": "acme"}).status_code == 200

        by_model = admin.get("/v1/usage", params={"group_by": "model", "tenant": "acme"}).json()
        assert [(g["group"], g["input_tokens"]) for g in by_model["data"]] == [
            ("priced", 3),
            ("priced-x", 2),
        ]
        [today] = admin.get("/v1/usage", params={"group_by": "day"}).json()["data"]
        assert today["group"] == time.strftime("%Y-%m-%d", time.gmtime())

        future = {"from": "2999-01-01", "to": "2999-02-01T00:00:00Z"}
        empty = admin.get("/v1/usage", params=future).json()
        assert empty["data"] == [] and empty["total"]["tasks"] == 0
        assert empty["from"] == "2999-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"group_by": "week"}, 422),
        ({"from": "yesterday"}, 422),
        ({"from": "2026-02-01", "to": "2026-01-01"}, 400),
        ({"tenant": "x" * 65}, 422),
    ],
)
def test_bad_usage_queries_are_refused(
    shared_server: Server, params: dict[str, str], status: int
) -> None:
    with shared_server.client(shared_server.create_key("ops", admin=True)) as c:
        r = c.get("/v1/usage", params=params)
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"]


def test_usage_needs_a_key(shared_server: Server) -> None:
    assert httpx.get(f"{shared_server.url}/v1/usage").status_code == 401


def test_the_cli_prints_usage_as_a_table_or_json(priced: Server) -> None:
    with priced.client(priced.create_key("acme")) as c:
        run(c, "one two three")
    admin = priced.create_key("ops", admin=True)
    out = priced.cli("usage", "--group-by", "tenant", TASKGATE_KEY=admin, COLUMNS="160").stdout
    lines = out.splitlines()
    assert "Usage by tenant" in lines[0]
    header = next(line for line in lines if "input tokens" in line)
    assert [w in header for w in ("tenant", "tasks", "output tokens", "cost")] == [True] * 4
    assert cells(next(line for line in lines if "acme" in line)) == ["acme", "1", "3", "6", "0.015"]
    assert cells(next(line for line in lines if "total" in line)) == [
        "total",
        "1",
        "3",
        "6",
        "0.015",
    ]
    found = json.loads(
        priced.cli("usage", "--json", "--group-by", "model", TASKGATE_KEY=admin).stdout
    )
    assert [g["group"] for g in found["data"]] == ["priced-x"]
    bad = priced.cli(
        "usage", "--from", "2026-02-01", "--to", "2026-01-01", check=False, TASKGATE_KEY=admin
    )
    assert bad.returncode == 1
    assert "'from' must come before 'to'" in bad.stderr and "Traceback" not in bad.stderr


def cells(line: str) -> list[str]:
    """The cells of a row of a table as the CLI prints it piped (two spaces or more apart)."""
    return re.split(r"\s{2,}", line.strip())
