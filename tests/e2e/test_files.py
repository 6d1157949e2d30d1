"""Files over HTTP: uploads, tasks whose inputs reference them, outputs inline as base64."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from tests.e2e.conftest import Server
from tests.e2e.test_api import submit, wait

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)


def test_an_uploaded_file_is_an_input_of_its_tenants_tasks_only(server: Server) -> None:
    a, b = server.create_key("tenant-a"), server.create_key("tenant-b")
    with server.client(a) as ca, server.client(b) as cb:
        r = ca.post("/v1/files", files={"file": ("cat.png", PNG, "image/png")})
        assert r.status_code == 201, r.text
        up = r.json()
        assert up["bytes"] == len(PNG) and up["filename"] == "cat.png"
        assert up["content_type"] == "image/png" and up["object"] == "file"
        assert ca.get(up["url"]).content == PNG
        assert cb.get(f"/v1/files/{up['id']}").status_code == 404  # by key: its tenant's only

        edit = {"prompt": "make it blue", "image": {"file_id": up["id"]}}
        done = wait(ca, submit(ca, kind="image_edit", input=edit)["id"])
        assert done["status"] == "SUCCESS", done
        assert done["result"]["output"]["input_sha256"] == hashlib.sha256(PNG).hexdigest()

        stolen = wait(cb, submit(cb, kind="image_edit", input=edit)["id"])  # b cannot read it
        assert stolen["status"] == "FAILED" and stolen["attempts"] == 1
        assert stolen["error"]["type"] == "invalid_input"
        assert up["id"] in stolen["error"]["message"]


def test_a_data_uri_input_needs_no_upload(server: Server, key: str) -> None:
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    with server.client(key) as c:
        done = wait(c, submit(c, kind="image_edit", input={"prompt": "x", "image": uri})["id"])
        bad = wait(c, submit(c, kind="image_edit", input={"prompt": "x", "image": "data:,x"})["id"])
    assert done["result"]["output"]["input_sha256"] == hashlib.sha256(PNG).hexdigest()
    assert bad["status"] == "FAILED" and bad["error"]["type"] == "invalid_input"


def test_outputs_come_back_as_base64_too_when_asked(server: Server, key: str) -> None:
    with server.client(key) as c:
        done = wait(c, submit(c, kind="image", input="fox", params={"return_base64": True})["id"])
        [f] = done["result"]["files"]
        assert base64.b64decode(f["b64_json"]) == c.get(f["url"]).content
        plain = wait(c, submit(c, kind="image", input="fox")["id"])
        assert "b64_json" not in plain["result"]["files"][0]


def test_an_upload_over_the_size_limit_is_413_and_stores_nothing(make_server: Any) -> None:
    server: Server = make_server(max_body_bytes=10_000)
    server.start()
    with server.client(server.create_key("acme")) as c:
        r = c.post(
            "/v1/files", files={"file": ("big.bin", b"x" * 20_000, "application/octet-stream")}
        )
        assert r.status_code == 413
        assert r.json()["error"]["type"] == "payload_too_large"
        r = c.post("/v1/files", data={"purpose": "input"})
        assert r.status_code == 422  # no file part
    assert [p for p in (server.root / "files").rglob("*") if p.is_file()] == []


def test_a_large_data_uri_input_is_kept_in_file_storage(server: Server, key: str) -> None:
    blob = PNG + bytes(20_000)  # over the inline limit
    uri = "data:image/png;base64," + base64.b64encode(blob).decode()
    with server.client(key) as c:
        done = wait(c, submit(c, kind="image_edit", input={"prompt": "x", "image": uri})["id"])
        ref = done["input"]["image"]
        assert set(ref) == {"file_id"}  # the task row keeps a reference, not the bytes
        assert c.get(f"/v1/files/{ref['file_id']}").content == blob
        r = c.post(
            "/v1/tasks",
            json={
                "kind": "image_edit",
                "model": "mock",
                "input": {"image": "data:image/png;base64," + "@" * 5000},
            },
        )
        assert r.status_code == 400 and "data: URI" in r.json()["error"]["message"]
    assert done["result"]["output"]["input_sha256"] == hashlib.sha256(blob).hexdigest()


def stored_files(server: Server) -> list[Any]:
    return [p for p in (server.root / "files").rglob("*") if p.is_file()]


def test_a_refused_request_stores_no_file(server: Server, key: str) -> None:
    big = "data:image/png;base64," + base64.b64encode(PNG + bytes(20_000)).decode()
    refused = [
        ("/v1/tasks", {"kind": "image_edit", "model": "nope", "input": {"image": big}}),
        ("/v1/tasks", {"kind": "painting", "model": "mock", "input": {"image": big}}),
        ("/v1/batches", {"kind": "image_edit", "models": ["mock", "nope"], "input": big}),
        ("/v1/tasks", {"kind": "chat", "model": "mock", "input": big, "conversation_id": "no"}),
        # a good file, then one that is not base64: the first is removed again
        ("/v1/tasks", {"kind": "image_edit", "model": "mock", "input": [big, big[:-9] + "@@@"]}),
    ]
    with server.client(key) as c:
        for path, body in refused:
            r = c.post(path, json=body)
            assert 400 <= r.status_code < 500, (path, r.text)
        assert c.get("/v1/tasks").json()["data"] == []
    assert stored_files(server) == []


def test_a_replay_with_a_large_data_uri_is_the_same_task_and_keeps_one_file(
    server: Server, key: str
) -> None:
    big = "data:image/png;base64," + base64.b64encode(PNG + bytes(20_000)).decode()
    body = {"kind": "chat", "model": "mock", "input": {"image": big}, "idempotency_key": "k"}
    with server.client(key) as c:
        first = c.post("/v1/tasks", json=body)
        again = c.post("/v1/tasks", json=body)
    assert (first.status_code, again.status_code) == (202, 200), again.text
    assert again.json()["id"] == first.json()["id"]
    assert len(stored_files(server)) == 1


def test_a_download_cannot_run_as_a_page(server: Server, key: str) -> None:
    uploads = {
        "page.html": ("text/html", "attachment"),
        "logo.svg": ("image/svg+xml", "attachment"),
        "cat.png": ("image/png", "inline"),
        "song.mp3": ("audio/mpeg", "inline"),
    }
    with server.client(key) as c:
        for name, (kind, how) in uploads.items():
            body = b"<script>alert(1)</script>" if kind != "image/png" else PNG
            up = c.post("/v1/files", files={"file": (name, body, kind)}).json()
            r = c.get(up["url"])
            assert r.headers["content-disposition"].startswith(how + ";"), name
            assert r.headers["x-content-type-options"] == "nosniff"
            assert "default-src 'none'" in r.headers["content-security-policy"]
            assert "sandbox" in r.headers["content-security-policy"]


def test_a_large_data_uri_in_any_spelling_is_kept_in_file_storage(server: Server, key: str) -> None:
    """The gateway reads data: URIs by the rule providers read them with: whitespace around,
    the scheme in any case. Otherwise the bytes would stay in the task row and every view."""
    blob = PNG + bytes(6_000)
    payload = base64.b64encode(blob).decode()
    with server.client(key) as c:
        for spelling in (
            " data:image/png;base64,",
            "DATA:image/png;base64,",
            "Data:image/png;base64,",
        ):
            task = submit(c, kind="image_edit", input={"prompt": "x", "image": spelling + payload})
            ref = task["input"]["image"]
            assert set(ref) == {"file_id"}, spelling
            assert c.get(f"/v1/files/{ref['file_id']}").content == blob


def test_a_content_type_that_is_no_media_type_is_stored_as_bytes(server: Server, key: str) -> None:
    """Stored verbatim, it would break its download (a header split, or not latin-1)."""
    body = base64.b64encode(bytes(6_000)).decode()
    with server.client(key) as c:
        for kind in ("image/png\r\nX-Evil: 1", "image/p€ng", "nonsense"):
            task = submit(c, kind="chat", input={"file": f"data:{kind};base64,{body}"})
            r = c.get(f"/v1/files/{task['input']['file']['file_id']}")
            assert r.status_code == 200, kind
            assert r.headers["content-type"] == "application/octet-stream"
            assert "x-evil" not in r.headers
            assert r.headers["content-disposition"].startswith("attachment;")
