"""Live configuration against a ``taskgate serve`` process: reloads (the API call and
SIGHUP) while tasks run, a refused file, and backend instances that join a route and leave
it when their heartbeats stop."""

from __future__ import annotations

import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx
import yaml

from tests.e2e.conftest import REPO, Server, mock_route, until

FAST_LIVE = {"reread_seconds": 0.5}


def submit(client: httpx.Client, model: str, text: str, **params: Any) -> str:
    body = {"kind": "chat", "model": model, "input": text, "params": params}
    resp = client.post("/v1/tasks", json=body)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def ended(client: httpx.Client, task_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task: dict[str, Any] = client.get(f"/v1/tasks/{task_id}", params={"wait": 10}).json()
        if task["finished_at"] or time.monotonic() > deadline:
            return task


def instances(client: httpx.Client, route: str) -> dict[str, dict[str, Any]]:
    resp = client.get(f"/v1/routes/{route}/instances")
    assert resp.status_code == 200, resp.text
    return {i["name"]: i for i in resp.json()["data"]}


def routes_of(server: Server) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = yaml.safe_load(server.config.read_text())["routes"]
    return routes


def test_a_reload_adds_and_removes_an_instance_while_500_tasks_run(make_server: Any) -> None:
    route = mock_route(
        instances=[{"name": "m1", "max_concurrency": 8}, {"name": "m2", "max_concurrency": 8}],
        options={"latency_ms": 250},  # 64 tasks a second: the queue outlasts the reload
    )
    server = make_server([route])
    server.start()
    with server.client(server.create_key("ops", admin=True)) as c, ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda i: submit(c, "mock", f"t{i}"), range(300)))
        more = pool.map(lambda i: submit(c, "mock", f"t{i}"), range(300, 500))
        route["instances"] = [{"name": "m2", "max_concurrency": 8}, {"name": "m3"}]
        server.configure(routes=[route])
        asked_at = time.time()
        resp = c.post("/v1/admin/reload")
        reloaded_at = time.time()
        assert resp.status_code == 200, resp.text
        changes = resp.json()
        assert changes["changed"] is True
        assert changes["instances"] == {"added": ["mock/m3"], "removed": ["mock/m1"], "changed": []}
        assert changes["routes"] == {"added": [], "removed": [], "changed": []}
        tasks = [ended(c, i) for i in [*ids, *more]]
    assert [t["status"] for t in tasks].count("SUCCESS") == 500
    attempts = [a for t in tasks for a in t["history"]]
    assert all(len(t["history"]) == 1 and t["attempts"] == 1 for t in tasks)  # once each
    assert all(a["outcome"] == "success" for a in attempts)
    on = {name: [a for a in attempts if a["instance"] == name] for name in ("m1", "m2", "m3")}
    assert on["m3"] and on["m2"]
    # m1 took no call once the reload was applied; those it had in flight finished there
    assert all(stamp(a["started_at"]) < reloaded_at for a in on["m1"])
    assert any(stamp(a["ended_at"]) > asked_at for a in on["m1"])
    assert min(stamp(a["started_at"]) for a in on["m3"]) > asked_at


def stamp(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_a_removed_route_finishes_its_running_call_and_keeps_its_queue(make_server: Any) -> None:
    slow = mock_route(
        "slow", instances=[{"name": "s1", "max_concurrency": 1}], options={"latency_ms": 1500}
    )
    server = make_server([mock_route(), slow])
    server.start()
    with server.client(server.create_key("ops", admin=True)) as c:
        ids = [submit(c, "slow", f"s{i}") for i in range(3)]
        until(lambda: c.get(f"/v1/tasks/{ids[0]}").json()["status"] == "PROCESSING")
        server.configure(routes=[mock_route()])
        assert c.post("/v1/admin/reload").json()["routes"]["removed"] == ["slow"]
        assert ended(c, ids[0])["status"] == "SUCCESS"  # the call in flight finished
        refused = c.post("/v1/tasks", json={"kind": "chat", "model": "slow", "input": "x"})
        assert refused.status_code == 400  # no route serves it now
        assert ended(c, submit(c, "mock", "others run on"))["status"] == "SUCCESS"
        waiting = [c.get(f"/v1/tasks/{i}").json()["status"] for i in ids[1:]]
        assert waiting == ["PENDING", "PENDING"]  # kept, not claimed
        server.configure(routes=[mock_route(), slow])
        assert c.post("/v1/admin/reload").json()["routes"]["added"] == ["slow"]
        assert [ended(c, i)["status"] for i in ids[1:]] == ["SUCCESS", "SUCCESS"]


def test_an_invalid_file_is_refused_and_the_running_config_stays(make_server: Any) -> None:
    server = make_server()
    server.start()
    good = server.config.read_text()
    with server.client(server.create_key("ops", admin=True)) as c:
        route = mock_route(instances=[{"name": "mock-1", "max_concurrency": 0}])
        server.configure(routes=[route, mock_route("extra")])
        resp = c.post("/v1/admin/reload")
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["type"] == "bad_request"
        assert error["file"] == str(server.config)
        assert error["key"] == "routes[0].instances[0].max_concurrency"
        lines = server.config.read_text().splitlines()
        assert "max_concurrency: 0" in lines[error["line"] - 1]
        assert f"{server.config}:{error['line']}: " in error["message"]
        # nothing changed: the old route runs, the new one is unknown
        assert ended(c, submit(c, "mock", "still here"))["status"] == "SUCCESS"
        refused = c.post("/v1/tasks", json={"kind": "chat", "model": "extra", "input": "x"})
        assert refused.status_code == 400
        server.config.write_text("routes: [\n")  # not YAML at all
        broken = c.post("/v1/admin/reload").json()["error"]
        assert broken["line"] == 2 and f"{server.config}:2: " in broken["message"]
        server.config.write_text(good)
        same = c.post("/v1/admin/reload").json()
        assert same["changed"] is False
        tenant = server.create_key("acme")
        forbidden = httpx.post(
            f"{server.url}/v1/admin/reload", headers={"Authorization": f"Bearer {tenant}"}
        )
        assert forbidden.status_code == 403


def test_sighup_reloads_the_process(make_server: Any) -> None:
    server = make_server()
    server.start()
    with server.client(server.create_key("ops", admin=True)) as c:
        server.configure(routes=[*routes_of(server), mock_route("extra")])
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)

        def accepted() -> bool:
            body = {"kind": "chat", "model": "extra", "input": "hi"}
            return c.post("/v1/tasks", json=body).status_code == 202

        until(accepted, what="the route the reload added")
        assert ended(c, submit(c, "extra", "again"))["status"] == "SUCCESS"
        server.configure(routes="not a list")
        server.proc.send_signal(signal.SIGHUP)
        until(lambda: b"reload (SIGHUP) refused" in server.log.read_bytes(), what="refused")
        assert b"routes: Input should be a valid list" in server.log.read_bytes()
        assert ended(c, submit(c, "extra", "still"))["status"] == "SUCCESS"


def registered_server(make_server: Any) -> Server:
    route = mock_route(
        instances=[{"name": "local", "max_concurrency": 4}], options={"latency_ms": 0}
    )
    server: Server = make_server([route], registration=FAST_LIVE)
    server.start()
    return server


def test_a_registered_instance_whose_heartbeats_stop_is_dropped_and_its_task_runs_on_another(
    make_server: Any,
) -> None:
    server = registered_server(make_server)
    with server.client(server.create_key("ops", admin=True)) as c:
        slow = {"name": "r1", "weight": 100, "ttl": 2, "options": {"latency_ms": 600_000}}
        resp = c.post("/v1/routes/mock/instances", json=slow)
        assert resp.status_code == 201, resp.text
        assert resp.json()["state"] == "live" and resp.json()["source"] == "registered"
        assert c.post("/v1/routes/mock/instances/r1/heartbeat").status_code == 200
        task_id = submit(c, "mock", "on the registered one")  # r1 weighs most: it is picked
        until(lambda: c.get(f"/v1/tasks/{task_id}").json()["status"] == "PROCESSING")
        task = ended(c, task_id, timeout=30)  # no more heartbeats: r1 expires within 2 s
        assert task["status"] == "SUCCESS", task
        first, second = task["history"]
        assert (first["instance"], first["outcome"]) == ("r1", "interrupted")
        assert first["error"]["type"] == "instance_expired"
        assert "stopped its heartbeats" in first["error"]["message"]
        assert (second["instance"], second["outcome"]) == ("local", "success")
        listed = instances(c, "mock")
        assert listed["r1"]["state"] == "expired" and listed["local"]["source"] == "config"
        # a heartbeat brings it back; removed, it is gone
        assert c.post("/v1/routes/mock/instances/r1/heartbeat").json()["state"] == "live"
        assert c.delete("/v1/routes/mock/instances/r1").status_code == 200
        assert "r1" not in instances(c, "mock")
        assert c.post("/v1/routes/mock/instances/r1/heartbeat").status_code == 404


def test_heartbeats_keep_a_registered_instance_and_it_shares_the_route(make_server: Any) -> None:
    server = registered_server(make_server)
    with server.client(server.create_key("ops", admin=True)) as c:
        body = {"name": "r2", "weight": 100, "max_concurrency": 2, "ttl": 1.5}
        assert c.post("/v1/routes/mock/instances", json=body).status_code == 201
        again = c.post("/v1/routes/mock/instances", json={**body, "max_concurrency": 3})
        assert again.status_code == 200 and again.json()["max_concurrency"] == 3
        beats_until = time.monotonic() + 4  # well past its ttl
        while time.monotonic() < beats_until:
            assert c.post("/v1/routes/mock/instances/r2/heartbeat").status_code == 200
            time.sleep(0.4)  # a heartbeat every ttl/4, as a model server would
        assert instances(c, "mock")["r2"]["state"] == "live"
        task = ended(c, submit(c, "mock", "kept"))
        assert [a["instance"] for a in task["history"]] == ["r2"]
        stats = c.get("/v1/stats").json()
        shown = {(i["route"], i["instance"]): i for i in stats["instances"]}
        assert shown[("mock", "r2")]["capacity"] == 3


def test_registrations_that_are_refused(make_server: Any) -> None:
    server = registered_server(make_server)
    with server.client(server.create_key("ops", admin=True)) as c:
        cases = [
            ("nosuch", {"name": "x"}, 404),
            ("mock", {"name": "local"}, 409),  # a configured instance's name
            ("mock", {"name": "x", "secret_env": "HOME"}, 400),
            ("mock", {"name": "x", "endpoint": "file:///etc/passwd"}, 400),
            ("mock", {"name": "x", "ttl": 10**9}, 400),
            ("mock", {"name": "x", "max_concurrency": 0}, 422),
            ("mock", {"name": "a/b"}, 422),
            ("mock", {"name": "x", "surprise": 1}, 422),
        ]
        for route, body, status in cases:
            resp = c.post(f"/v1/routes/{route}/instances", json=body)
            assert resp.status_code == status, (body, resp.text)
            assert "error" in resp.json()
        for raw in (b'{"name": "x", "weight": NaN}', b'{"name": "x", "ttl": 1e400}', b"[1]"):
            resp = c.post("/v1/routes/mock/instances", content=raw)
            assert 400 <= resp.status_code < 500 and "error" in resp.json(), resp.text
        assert set(instances(c, "mock")) == {"local"}
        tenant = server.client(server.create_key("acme"))
        assert tenant.get("/v1/routes/mock/instances").status_code == 403
        assert tenant.post("/v1/routes/mock/instances", json={"name": "x"}).status_code == 403
        tenant.close()


def test_the_example_registers_heartbeats_and_deregisters_on_exit(make_server: Any) -> None:
    import os
    import subprocess

    server = registered_server(make_server)
    admin = server.create_key("ops", admin=True)
    env = {**os.environ, "TASKGATE_URL": server.url, "TASKGATE_KEY": admin}
    example = REPO / "examples" / "register_instance.py"
    args = ["--route", "mock", "--name", "self", "--endpoint", "http://127.0.0.1:9/v1"]
    proc = subprocess.Popen([sys.executable, str(example), *args, "--ttl", "1.5"], env=env)
    try:
        with server.client(admin) as c:
            until(lambda: instances(c, "mock").get("self", {}).get("state") == "live")
            first = instances(c, "mock")["self"]["heartbeat_at"]
            until(lambda: instances(c, "mock")["self"]["heartbeat_at"] != first, what="beat")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
            assert "self" not in instances(c, "mock")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_reload_and_instances(make_server: Any) -> None:
    server = registered_server(make_server)
    key = server.create_key("ops", admin=True)
    assert server.cli("reload", TASKGATE_KEY=key).stdout.strip() == "nothing changed"
    added = server.cli(
        "instances",
        "add",
        "mock",
        "cli1",
        "--capacity",
        "3",
        "--option",
        "latency_ms=5",
        TASKGATE_KEY=key,
    )
    assert added.stdout.strip() == "instance cli1 on route mock: live"
    listing = server.cli("instances", "list", "mock", TASKGATE_KEY=key).stdout
    rows = {line.split()[1]: line.split()[3] for line in listing.splitlines() if "│" in line}
    assert rows == {"cli1": "live", "local": "configured"}
    as_json = server.cli("instances", "list", "mock", "--json", TASKGATE_KEY=key).stdout
    assert '"max_concurrency": 3' in as_json
    server.configure(routes=[*routes_of(server), mock_route("extra")])
    out = server.cli("reload", TASKGATE_KEY=key).stdout
    assert "routes added: extra" in out
    assert server.cli("instances", "remove", "mock", "cli1", TASKGATE_KEY=key).returncode == 0
    gone = server.cli("instances", "remove", "mock", "cli1", check=False, TASKGATE_KEY=key)
    assert gone.returncode != 0 and "404" in gone.stderr
    server.configure(routes=[{"name": "broken"}])
    refused = server.cli("reload", check=False, TASKGATE_KEY=key)
    assert refused.returncode != 0
    assert str(server.config) in refused.stderr and "routes[0]" in refused.stderr
