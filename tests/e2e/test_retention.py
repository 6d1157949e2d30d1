"""Retention over HTTP and the CLI, against a server process: a purge removes what ended
before the cutoff (rows and files) and nothing newer, keeps files newer tasks name, and runs
by itself in the background."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.e2e.conftest import Server, until
from tests.e2e.test_api import submit, wait
from tests.e2e.test_files import PNG
from tests.e2e.test_malformed_input import native_shape
from tests.e2e.test_observe import sample

PURGE = "/v1/admin/purge"


def upload(c: httpx.Client) -> dict[str, Any]:
    r = c.post("/v1/files", files={"file": ("cat.png", PNG, "image/png")})
    assert r.status_code == 201, r.text
    return dict(r.json())


def image(c: httpx.Client, **input: Any) -> tuple[dict[str, Any], str]:
    """An image task run to its end, and the url of the file it made."""
    kind = "image_edit" if input else "image"
    done = wait(c, submit(c, kind=kind, input=input or "a fox")["id"])
    assert done["status"] == "SUCCESS", done
    return done, done["result"]["files"][0]["url"]


def found(c: httpx.Client, path: str) -> bool:
    r = c.get(path)
    assert r.status_code in (200, 404), r.text
    return r.status_code == 200


def test_a_purge_removes_what_is_older_than_the_cutoff_and_nothing_newer(server: Server) -> None:
    admin, key = server.create_key("ops", admin=True), server.create_key("acme")
    with server.client(key) as c, server.client(admin) as a:
        lone_upload = upload(c)
        old_image, old_file = image(c)
        named, named_file = image(c)
        old_chat = wait(c, submit(c, input="hi")["id"])
        cutoff = datetime.now(UTC).isoformat()  # everything above ended before this
        named_id = named["result"]["files"][0]["id"]
        newer, newer_file = image(c, prompt="blue", image={"file_id": named_id})
        new_upload = upload(c)

        dry = a.post(PURGE, json={"before": cutoff, "dry_run": True})
        assert dry.status_code == 200, dry.text
        counts = {k: v for k, v in dry.json().items() if k not in ("dry_run", "cutoffs")}
        assert counts["tasks"] == 3 and counts["attempts"] == 3
        assert counts["files"] == 2  # the upload nobody names, and the unnamed output
        assert found(c, f"/v1/tasks/{old_chat['id']}") and found(c, lone_upload["url"])

        done = a.post(PURGE, json={"before": cutoff}).json()
        assert done == {**counts, "dry_run": False, "cutoffs": {"*": done["cutoffs"]["*"]}}
        assert done["cutoffs"]["*"][:19] == cutoff[:19]

        for task in (old_image, named, old_chat):
            assert not found(c, f"/v1/tasks/{task['id']}")
            assert not found(c, f"/v1/tasks/{task['id']}/logs")
        assert not found(c, old_file) and not found(c, lone_upload["url"])
        assert found(c, named_file)  # a kept task names it
        assert found(c, f"/v1/tasks/{newer['id']}") and found(c, newer_file)
        assert found(c, new_upload["url"])
        assert [t["id"] for t in c.get("/v1/tasks").json()["data"]] == [newer["id"]]
        assert a.post(PURGE, json={"before": cutoff}).json()["tasks"] == 0


def test_a_purge_needs_an_admin_key_and_a_good_cutoff(server: Server) -> None:
    admin, key = server.create_key("ops", admin=True), server.create_key("acme")
    with server.client(key) as c, server.client(admin) as a:
        task = wait(c, submit(c)["id"])
        refused = c.post(PURGE, json={"older_than": "0s"})
        assert refused.status_code == 403
        native_shape(refused.json())
        for body in (
            {"older_than": "7x"},
            {"older_than": -1},
            {"older_than": True},  # not 1 second
            {"older_than": "7d", "dry_run": "yes"},
            {"older_than": "7d", "before": "2024-01-01T00:00:00Z"},
            {"before": "yesterday"},
            {"older_than": "7d", "everything": True},
            {"tenant": ""},
        ):
            r = a.post(PURGE, json=body)
            assert r.status_code == 422, (body, r.text)
            native_shape(r.json())
        assert found(c, f"/v1/tasks/{task['id']}")
        purged = a.post(PURGE, json={"older_than": 0, "tenant": "someone-else"}).json()
        assert purged["tasks"] == 0 and purged["cutoffs"].keys() == {"someone-else"}
        assert found(c, f"/v1/tasks/{task['id']}")


def test_taskgate_purge_prints_what_it_removed(server: Server) -> None:
    admin, key = server.create_key("ops", admin=True), server.create_key("acme")
    with server.client(key) as c:
        task = wait(c, submit(c)["id"])

    dry = server.cli("purge", "--older-than", "7d", "--dry-run", TASKGATE_KEY=admin).stdout
    assert dry.startswith("Would purge 0 tasks, 0 attempts,")
    assert "every tenant: what ended before" in dry
    configured = json.loads(server.cli("purge", "--dry-run", "--json", TASKGATE_KEY=admin).stdout)
    assert configured["dry_run"] is True and list(configured["cutoffs"]) == ["*"]

    out = server.cli("purge", "--older-than", "0s", TASKGATE_KEY=admin).stdout
    assert out.startswith("Purged 1 task, 1 attempt, 0 log entries,")
    with server.client(key) as c:
        assert not found(c, f"/v1/tasks/{task['id']}")

    bad = server.cli("purge", "--older-than", "7x", check=False, TASKGATE_KEY=admin)
    assert bad.returncode == 2 and "Invalid value for '--older-than'" in bad.stderr
    denied = server.cli("purge", "--older-than", "7d", check=False, TASKGATE_KEY=key)
    assert denied.returncode == 1 and "403" in denied.stderr
    assert "Traceback" not in bad.stderr + denied.stderr


def test_the_background_purge_removes_tasks_past_their_days(make_server: Any) -> None:
    seconds = 2.0
    server: Server = make_server(retention={"days": seconds / 86400, "interval": 0.2})
    server.start()
    key = server.create_key("acme")
    with server.client(key) as c:
        task = wait(c, submit(c, kind="image", input="fox")["id"])
        url = task["result"]["files"][0]["url"]
        assert found(c, url)
        ended = time.monotonic()
        until(lambda: not found(c, f"/v1/tasks/{task['id']}"), 60, "the purge of the task")
        assert time.monotonic() - ended > seconds / 2  # not at once: after its days
        until(lambda: not found(c, url), 30, "the purge of its file")
    metrics = httpx.get(f"{server.url}/metrics").text
    assert sample(metrics, "taskgate_purged_total", what="tasks") >= 1
    assert sample(metrics, "taskgate_purged_total", what="files") >= 1
