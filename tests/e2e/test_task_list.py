"""The task list's route filter and the overview's per-minute series, over HTTP against a
server process: ``GET /v1/tasks?route=`` within the caller's tenant, and
``GET /v1/stats/timeline`` for admin keys."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, mock_route


@pytest.fixture
def two_routes(make_server: Any) -> Server:
    server: Server = make_server([mock_route("alpha"), mock_route("beta")])
    server.start()
    return server


def ended(c: httpx.Client, model: str, **params: Any) -> dict[str, Any]:
    body = {"kind": "chat", "model": model, "input": "hi", "params": params}
    r = c.post("/v1/tasks", json=body)
    assert r.status_code == 202, r.text
    task: dict[str, Any] = c.get(f"/v1/tasks/{r.json()['id']}", params={"wait": 30}).json()
    assert task["finished_at"], task
    return task


def listed(c: httpx.Client, **params: Any) -> list[str]:
    r = c.get("/v1/tasks", params=params)
    assert r.status_code == 200, r.text
    return [t["id"] for t in r.json()["data"]]


def test_the_list_filters_by_route_within_the_callers_tenant(two_routes: Server) -> None:
    acme, other = two_routes.create_key("acme"), two_routes.create_key("other")
    admin = two_routes.create_key("ops", admin=True)
    with (
        two_routes.client(acme) as a,
        two_routes.client(other) as o,
        two_routes.client(admin) as ad,
    ):
        alpha = [ended(a, "alpha")["id"] for _ in range(2)]
        beta = ended(a, "beta")["id"]
        theirs = ended(o, "alpha")["id"]
        assert listed(a, route="alpha") == list(reversed(alpha))
        assert listed(a, route="beta") == [beta]
        assert listed(a, route="alpha", status="SUCCESS", limit=1) == [alpha[1]]
        assert listed(a, route="alpha", status="FAILED") == []
        assert listed(a, route="gamma") == []  # a filter, not a lookup: no such route, none
        assert listed(o, route="alpha") == [theirs]
        assert listed(ad, route="alpha") == [theirs, *reversed(alpha)]
        too_long = a.get("/v1/tasks", params={"route": "r" * 101})
        assert too_long.status_code == 422 and "route" in too_long.json()["error"]["message"]


def test_the_timeline_counts_what_ended_and_failed_per_route_and_minute(
    two_routes: Server,
) -> None:
    tenant, admin = two_routes.create_key("acme"), two_routes.create_key("ops", admin=True)
    with two_routes.client(tenant) as t, two_routes.client(admin) as a:
        for _ in range(2):
            ended(t, "alpha")
        failed = ended(t, "beta", mock_fail_attempts=5, mock_error="invalid_input")
        assert failed["status"] == "FAILED"
        r = a.get("/v1/stats/timeline", params={"minutes": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["minutes"] == 5 and body["at"].endswith("Z")
        routes = {x["route"]: x["points"] for x in body["routes"]}
        assert list(routes) == ["alpha", "beta"]  # as configured, with or without endings
        for points in routes.values():
            minutes = [p["minute"] for p in points]
            assert len(points) == 5 and minutes == sorted(minutes)
            assert all(m.endswith(":00.000Z") for m in minutes)
        total = {
            n: [sum(p[k] for p in ps) for k in ("ended", "failed")] for n, ps in routes.items()
        }
        assert total == {"alpha": [2, 0], "beta": [1, 1]}
        assert len(a.get("/v1/stats/timeline").json()["routes"][0]["points"]) == 60
        assert t.get("/v1/stats/timeline").status_code == 403
        for bad in (0, 1441, "x"):
            refused = a.get("/v1/stats/timeline", params={"minutes": bad})
            assert refused.status_code == 422 and "minutes" in refused.json()["error"]["message"]
