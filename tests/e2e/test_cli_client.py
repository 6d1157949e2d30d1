"""The ``taskgate`` CLI and the Python clients, against a server process."""

from __future__ import annotations

import json

import pytest

from taskgate.client import ApiError, AsyncClient, Client
from tests.e2e.conftest import Server


def test_cli_submit_waits_with_progress_and_prints_the_result(server: Server, key: str) -> None:
    out = server.cli(
        "submit", "--model", "mock", "--param", "stream=true", "hello there", TASKGATE_KEY=key
    )
    task = json.loads(out.stdout)
    assert task["status"] == "SUCCESS"
    assert task["result"]["output"]["text"] == "mock reply to: hello there"
    assert "finished: SUCCESS" in out.stderr


def test_cli_no_wait_status_wait_cancel_and_tasks(server: Server, key: str) -> None:
    env = {"TASKGATE_KEY": key}
    # long enough to be still running after two more CLI processes have started and finished
    # on a busy machine; the cancel ends it at once
    task_id = server.cli(
        "submit", "--no-wait", "--model", "mock", "--param", "mock_latency_ms=60000", "slow", **env
    ).stdout.strip()
    assert json.loads(server.cli("status", task_id, **env).stdout)["id"] == task_id
    cancelled = json.loads(server.cli("cancel", task_id, **env).stdout)
    assert cancelled["status"] == "CANCELLED"
    waited = server.cli("wait", task_id, check=False, **env)
    assert waited.returncode == 1  # ended, but not in SUCCESS
    assert json.loads(waited.stdout)["status"] == "CANCELLED"
    listing = server.cli("tasks", "--status", "CANCELLED", **env).stdout
    assert task_id in listing
    failed = server.cli("status", "nope", check=False, **env)
    assert failed.returncode != 0 and "404" in failed.stderr


def test_cli_failed_task_exits_nonzero(server: Server, key: str) -> None:
    out = server.cli(
        "submit",
        "--model",
        "mock",
        "--param",
        "mock_fail_attempts=9",
        "--param",
        "mock_error=content_refused",
        "x",
        check=False,
        TASKGATE_KEY=key,
    )
    assert out.returncode == 1
    assert json.loads(out.stdout)["error"]["type"] == "content_refused"


def test_cli_keys_create_list_revoke(server: Server) -> None:
    secret = server.create_key("zeta", admin=True)
    assert secret.startswith("tg_")
    rows = json.loads(server.cli("keys", "list", "--tenant", "zeta", "--json").stdout)
    assert len(rows) == 1 and (rows[0]["role"], rows[0]["state"]) == ("admin", "active")
    assert secret not in server.cli("keys", "list").stdout
    server.cli("keys", "revoke", rows[0]["id"])
    table = server.cli("keys", "list", "--tenant", "zeta").stdout.splitlines()
    header = ["id", "tenant", "role", "state", "prefix", "name", "limits", "created"]
    assert table[0].split() == header
    assert rows[0]["id"] in table[2] and "revoked" in table[2]
    assert server.cli("keys", "revoke", rows[0]["id"], check=False).returncode != 0


def test_sync_client(server: Server, key: str) -> None:
    with Client(server.url, key) as c:
        task = c.submit("embedding", "mock", "vector please", params={"dimensions": 4})
        done = c.wait(task["id"], timeout=20)
        assert [len(v) for v in done["result"]["output"]["embeddings"]] == [4]
        events = [e for e, _ in c.events(task["id"])]
        assert events == ["finished"]
        assert c.list(kind="embedding")["data"][0]["id"] == task["id"]
        with pytest.raises(ApiError) as err:
            c.get("missing")
        assert err.value.status == 404


async def test_async_client(server: Server, key: str) -> None:
    async with AsyncClient(server.url, key) as c:
        task = await c.submit(
            "chat",
            "mock",
            "hi",
            priority="critical",
            params={"stream": True, "mock_latency_ms": 200},
        )
        kinds = [event async for event, _ in c.events(task["id"])]
        assert kinds[-1] == "finished" and "progress" in kinds
        done = await c.wait(task["id"])
        assert done["status"] == "SUCCESS" and done["priority"] == "critical"
        cancelled = await c.cancel(task["id"])
        assert cancelled["status"] == "SUCCESS"  # already ended: unchanged


def test_first_start_prints_an_admin_key_that_works(server: Server) -> None:
    log = server.log.read_text()
    assert "no admin key existed" in log
    secret = next(word for word in log.split() if word.startswith("tg_"))
    with server.client(secret) as c:
        assert c.get("/v1/keys").status_code == 200  # an admin key
    server.stop()
    server.start()
    assert server.log.read_text().count("no admin key existed") == 1  # only the first time
