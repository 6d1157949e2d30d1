"""Crash safety: kill the server at any moment; every accepted task still ends, once."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import Server, mock_route, until


def sidefx_server(make_server: Any, journal: Path, latency_ms: int, lease: float = 1) -> Server:
    route = {
        "name": "fx",
        "models": ["fx"],
        "provider": "sidefx",
        "instances": [{"name": "fx-1", "max_concurrency": 8}],
        "options": {"journal": str(journal), "latency_ms": latency_ms},
        "retry": {"max_attempts": 3, "backoff_base": 0.05},
    }
    server: Server = make_server(
        [route],
        plugins=["tests.e2e.plugins.sidefx"],
        scheduler={"lease_seconds": lease, "poll_interval": 0.2},
    )
    return server


def submit_many(c: httpx.Client, n: int) -> list[str]:
    ids = []
    for i in range(n):
        r = c.post("/v1/tasks", json={"kind": "chat", "model": "fx", "input": f"job {i}"})
        assert r.status_code == 202
        ids.append(r.json()["id"])
    return ids


def wait_all(c: httpx.Client, ids: list[str], seconds: float = 25) -> dict[str, dict[str, Any]]:
    end = time.monotonic() + seconds
    done: dict[str, dict[str, Any]] = {}
    for task_id in ids:
        left = max(0.1, end - time.monotonic())
        done[task_id] = c.get(f"/v1/tasks/{task_id}", params={"wait": left}).json()
    return done


def test_kill_and_restart_loses_no_task_and_repeats_no_finished_work(
    make_server: Any, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.txt"
    # A lease far longer than the test: the restarted server must see that the process
    # holding those tasks is gone, rather than wait for the leases to run out.
    server = sidefx_server(make_server, journal, latency_ms=1000, lease=600)
    server.start()
    key = server.create_key("acme")
    with server.client(key) as c:
        ids = submit_many(c, 24)  # 8 slots: three waves of one second each
        until(lambda: {"SUCCESS", "PROCESSING"} <= statuses(c), what="tasks ended and running")
    server.stop(kill=True)
    snapshot = statuses_in_store(server.root / "taskgate.db")  # exactly as the kill left them
    finished_before = [i for i, s in snapshot.items() if s == "SUCCESS"]
    running_before = [i for i, s in snapshot.items() if s == "PROCESSING"]
    assert finished_before and running_before

    server.start()
    with server.client(key) as c:
        done = wait_all(c, ids)
    assert {t["status"] for t in done.values()} == {"SUCCESS"}

    calls = Counter(line.split()[0] for line in journal.read_text().splitlines())
    for task_id in finished_before:  # recorded as finished before the kill: never run again
        assert calls[task_id] == 1, task_id
    for task_id in running_before:  # lost with the process, run again after the restart
        assert [a["outcome"] for a in done[task_id]["history"]] == ["lost", "success"]
    for t in done.values():
        outcomes = [a["outcome"] for a in t["history"]]
        assert outcomes.count("success") == 1
        assert t["attempts"] == len(outcomes)


def test_sigterm_hands_back_running_tasks_which_finish_after_restart(
    make_server: Any, tmp_path: Path
) -> None:
    server = sidefx_server(make_server, tmp_path / "journal.txt", latency_ms=3000)
    server.grace = 0.2
    server.start()
    key = server.create_key("acme")
    with server.client(key) as c:
        ids = submit_many(c, 4)
        until(lambda: statuses(c) == {"PROCESSING"}, what="all four tasks running")
        server.stop()  # SIGTERM: the calls need 3 s, the grace is 0.2 s
        server.start()
        done = wait_all(c, ids)
    assert {t["status"] for t in done.values()} == {"SUCCESS"}
    for t in done.values():
        assert [a["outcome"] for a in t["history"]] == ["interrupted", "success"]


def test_a_restart_in_the_middle_of_a_backend_job_resumes_polling_it(
    make_server: Any,
) -> None:
    route = mock_route("video", kinds=["video"], poll={"interval": 0.05, "max_interval": 0.2})
    server: Server = make_server([route], scheduler={"lease_seconds": 600, "poll_interval": 0.2})
    server.start()
    key = server.create_key("acme")
    with server.client(key) as c:
        params = {"mock_job_seconds": 2.5}
        body = {"kind": "video", "model": "video", "input": "a cat", "params": params}
        task_id = c.post("/v1/tasks", json=body).json()["id"]
        job = until_job(c, task_id)
    server.stop(kill=True)
    server.start()
    with server.client(key) as c:
        done = c.get(f"/v1/tasks/{task_id}", params={"wait": 20}).json()
    assert done["status"] == "SUCCESS", done
    assert done["provider_job"] == job  # polled to its end, never submitted again
    assert [a["outcome"] for a in done["history"]] == ["lost", "success"]


def statuses(c: httpx.Client) -> set[str]:
    return {t["status"] for t in c.get("/v1/tasks", params={"limit": 500}).json()["data"]}


def statuses_in_store(db: Path) -> dict[str, str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return dict(conn.execute("SELECT id, status FROM tasks").fetchall())


def until_job(c: httpx.Client, task_id: str) -> dict[str, Any]:
    for _ in range(100):
        task = c.get(f"/v1/tasks/{task_id}").json()
        if task["provider_job"]:
            assert task["status"] == "PROCESSING"
            return dict(task["provider_job"])
        time.sleep(0.05)
    raise AssertionError("the job was never submitted")
