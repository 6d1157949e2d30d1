"""The AIFlow API against a real server: every request example of its README, the
multipart form with a file, the refusal of client-supplied endpoints and keys (which never
show up anywhere), cancelling, and tenant scoping."""

# ruff: noqa: RUF001  (the AIFlow README's own text, with its full-width punctuation)
from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

import httpx

from tests.e2e.conftest import Server, mock_route
from tests.e2e.test_api import wait

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)
CLIENT_KEY = "sk-your-openai-api-key"
OPENAI = "https://api.openai.com/v1"

# the README's first example, as it is written there
README_JSON: dict[str, Any] = {
    "task_type": "openai-gpt5",
    "model_spec": {
        "name": "gpt-5",
        "api_key": CLIENT_KEY,
        "endpoint": "https://api.openai.com/v1/chat/completions",
    },
    "payload": {"prompt": "你好，请介绍一下人工智能的发展历程"},
    "inference_params": {"temperature": 0.7, "max_tokens": 1000},
}
# the README's "add your own model" example
README_CUSTOM: dict[str, Any] = {
    "task_type": "my-custom-model",
    "model_spec": {
        "name": "my-model-v1",
        "endpoint": "https://api.example.com/inference",
        "api_key": "your-api-key",
    },
    "payload": {"input_text": "Hello, world!"},
    "inference_params": {"param1": "value1"},
}


def aiflow_server(
    make_server: Any,
    gpt5_endpoint: str | None = None,
    max_body_bytes: int = 10_000_000,
    **aiflow: Any,
) -> Server:
    gpt5 = mock_route("gpt5", ["gpt-5"])
    if gpt5_endpoint:
        gpt5["instances"][0]["endpoint"] = gpt5_endpoint
    routes = [
        gpt5,
        mock_route("sd", ["stable-diffusion"]),
        {
            "name": "custom",
            "models": ["my-model-v1"],
            "provider": "my-custom-model",  # tests/e2e/plugins/aiflow_custom.py
            "kinds": ["custom"],
            "instances": [{"name": "in-house", "endpoint": "http://10.1.2.3:9000/infer"}],
        },
        mock_route("slow", ["slow-model"], options={"latency_ms": 20_000}),
    ]
    aiflow = {"task_types": {"my-custom-model": {"kind": "custom"}}, **aiflow}
    plugins = ["tests.e2e.plugins.aiflow_custom"]
    server: Server = make_server(
        routes, aiflow=aiflow, plugins=plugins, log_level="debug", max_body_bytes=max_body_bytes
    )
    server.start()
    return server


def without_client_endpoint(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "model_spec": {"name": body["model_spec"]["name"]}}


def poll(c: httpx.Client, task_id: str, seconds: float = 20) -> dict[str, Any]:
    """The README's client loop: read the task until it is SUCCESS, FAILED or TIMEOUT."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        task = c.get(f"/api/v1/tasks/{task_id}").json()
        if task["status"] in ["SUCCESS", "FAILED", "TIMEOUT"]:
            return task
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not end: {task}")


def created(r: httpx.Response) -> str:
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "PENDING" and body["message"].startswith("Task created")
    assert body["created_at"].endswith("Z")
    return str(body["task_id"])


def test_the_readme_json_example_is_refused_for_its_key_then_runs_without_it(
    make_server: Any,
) -> None:
    server = aiflow_server(make_server)
    with server.client(server.create_key("acme")) as c:
        r = c.post("/api/v1/tasks_json", json=README_JSON)
        assert r.status_code == 400, r.text
        assert "model_spec.endpoint and model_spec.api_key are not accepted" in r.json()["detail"]
        sdk_body = {**README_JSON, "model_spec": {"name": "gpt-5", "api_key": CLIENT_KEY}}
        assert c.post("/api/v1/tasks_json", json=sdk_body).status_code == 400
        assert c.get("/v1/tasks").json()["data"] == []

        task_id = created(c.post("/api/v1/tasks_json", json=without_client_endpoint(README_JSON)))
        task = poll(c, task_id)
        assert task["status"] == "SUCCESS" and task["task_type"] == "openai-gpt5"
        assert (
            task["result"]["output"]["text"] == "mock reply to: 你好，请介绍一下人工智能的发展历程"
        )
        assert task["result"]["model"] == "gpt-5" and task["result"]["timestamp"].endswith("Z")
        assert task["created_at"] <= task["updated_at"]
        assert task["inference_params"] == {"temperature": 0.7, "max_tokens": 1000}
        status = c.get(f"/api/v1/tasks/{task_id}/status").json()
        assert status == {k: task[k] for k in ("task_id", "status", "created_at", "updated_at")}
        result = c.get(f"/api/v1/tasks/{task_id}/result")
        assert result.status_code == 200 and result.json()["result"] == task["result"]
        native = c.get(f"/v1/tasks/{task_id}").json()
        assert (native["kind"], native["model"]) == ("chat", "gpt-5")
    assert CLIENT_KEY not in server.log.read_text()


def test_an_allowed_host_runs_the_example_on_its_configured_instance_and_drops_the_key(
    make_server: Any,
) -> None:
    server = aiflow_server(make_server, OPENAI, client_endpoint_hosts=["api.openai.com"])
    with server.client(server.create_key("acme")) as c:
        task_id = created(c.post("/api/v1/tasks_json", json=README_JSON))
        task = poll(c, task_id)
        assert task["status"] == "SUCCESS", task
        seen = [c.get(p).text for p in (f"/api/v1/tasks/{task_id}", f"/v1/tasks/{task_id}")]
        assert all(CLIENT_KEY not in text for text in seen)
        assert task["model_spec"] == {"name": "gpt-5"}

        elsewhere = {
            **README_JSON,
            "model_spec": {"name": "gpt-5", "endpoint": "https://evil.test/v1"},
        }
        r = c.post("/api/v1/tasks_json", json=elsewhere)
        assert r.status_code == 400 and "'evil.test' is not allowed" in r.json()["detail"]
        custom = {
            **README_CUSTOM,
            "model_spec": {**README_CUSTOM["model_spec"], "endpoint": OPENAI},
        }
        r = c.post("/api/v1/tasks_json", json=custom)
        assert r.status_code == 400 and "has no backend at 'api.openai.com'" in r.json()["detail"]
        assert "your-api-key" not in r.text
    assert CLIENT_KEY not in server.log.read_text()


def test_the_readme_form_example_stores_its_file_and_the_task_reads_it(make_server: Any) -> None:
    server = aiflow_server(make_server)
    form = {
        "task_type": "image-generation",
        "model_spec": '{"name":"stable-diffusion","api_key":"your-key"}',
        "payload": '{"prompt":"a beautiful sunset over mountains"}',
        "inference_params": '{"width":1024,"height":768}',
    }
    files = {"files": ("reference_image.jpg", PNG, "image/png")}
    with server.client(server.create_key("acme")) as c:
        r = c.post("/api/v1/tasks_form", data=form, files=files)
        assert r.status_code == 400 and "your-key" not in r.text
        form["model_spec"] = '{"name":"stable-diffusion"}'
        task_id = created(c.post("/api/v1/tasks_form", data=form, files=files))
        task = poll(c, task_id)
        assert task["status"] == "SUCCESS", task
        assert task["inference_params"] == {"width": 1024, "height": 768}
        [ref] = task["payload"]["files"]
        assert (
            task["payload"]["image"] == ref and c.get(f"/v1/files/{ref['file_id']}").content == PNG
        )
        assert task["result"]["output"]["input_sha256"] == hashlib.sha256(PNG).hexdigest()
        [out] = task["result"]["files"]
        assert out["url"].startswith(f"{server.url}/v1/files/{out['id']}?expires=")
        assert c.get(out["url"]).headers["content-type"] == "image/png"

        bad = {**form, "payload": "{not json"}
        r = c.post("/api/v1/tasks_form", data=bad, files=files)
        assert r.status_code == 400 and "'payload' must be a JSON string" in r.json()["detail"]


def test_the_readme_custom_model_runs_as_a_plugin_and_unknown_task_types_are_refused(
    make_server: Any,
) -> None:
    server = aiflow_server(make_server)
    with server.client(server.create_key("acme")) as c:
        r = c.post("/api/v1/tasks_json", json=README_CUSTOM)
        assert r.status_code == 400 and "your-api-key" not in r.text
        task = poll(
            c, created(c.post("/api/v1/tasks_json", json=without_client_endpoint(README_CUSTOM)))
        )
        assert task["status"] == "SUCCESS" and task["task_type"] == "my-custom-model"
        assert task["result"]["output"] == {
            "output": "my-model-v1 at http://10.1.2.3:9000/infer: Hello, world!",
            "metadata": {"param1": "value1"},
        }
        r = c.post("/api/v1/tasks_json", json={**README_CUSTOM, "task_type": "speech-to-poem"})
        assert r.status_code == 400
        assert "unknown task_type 'speech-to-poem'" in r.json()["detail"]
        assert r.json()["error"]["field"] == "task_type"
        no_model = {"task_type": "text-generation", "model_spec": {}, "payload": {"prompt": "x"}}
        r = c.post("/api/v1/tasks_json", json=no_model)
        assert r.status_code == 400 and "model_spec.name is required" in r.json()["detail"]
        r = c.post("/api/v1/tasks_json", json={"task_type": "openai-gpt5"})
        assert r.status_code == 400 and "model_spec" in r.json()["detail"]


def test_a_cancelled_task_reads_as_failed_and_the_result_waits_with_202(make_server: Any) -> None:
    server = aiflow_server(make_server)
    body = {
        "task_type": "text-generation",
        "model_spec": {"name": "slow-model"},
        "payload": {"prompt": "x"},
    }
    with server.client(server.create_key("acme")) as c:
        task_id = created(c.post("/api/v1/tasks_json", json=body))
        running = c.get(f"/api/v1/tasks/{task_id}/result")
        assert running.status_code == 202 and running.json()["status"] in ("PENDING", "PROCESSING")
        r = c.delete(f"/api/v1/tasks/{task_id}")
        assert r.status_code == 200 and r.json()["status"] == "FAILED"
        assert wait(c, task_id)["status"] == "CANCELLED"  # the native API says what happened
        task = c.get(f"/api/v1/tasks/{task_id}").json()
        assert (task["status"], task["error_type"]) == ("FAILED", "cancelled")
        result = c.get(f"/api/v1/tasks/{task_id}/result").json()
        assert result["result"] is None and result["error_type"] == "cancelled"


def test_tasks_belong_to_their_tenant_and_a_callback_is_checked_as_a_webhook(
    make_server: Any,
) -> None:
    server = aiflow_server(make_server)
    a, b = server.create_key("a"), server.create_key("b")
    with server.client(a) as ca, server.client(b) as cb:
        task_id = created(ca.post("/api/v1/tasks_json", json=without_client_endpoint(README_JSON)))
        for path in ("", "/status", "/result"):
            r = cb.get(f"/api/v1/tasks/{task_id}{path}")
            assert r.status_code == 404 and r.json()["detail"] == f"no task {task_id!r}"
        assert cb.delete(f"/api/v1/tasks/{task_id}").status_code == 404
        hook = {"url": "http://127.0.0.1:9/hook", "headers": {"X-Token": "t"}}
        body = {**without_client_endpoint(README_JSON), "callback": hook}
        r = ca.post("/api/v1/tasks_json", json=body)  # loopback: refused unless allowed
        assert r.status_code == 400 and r.json()["error"]["field"] == "webhook_url"
    r = httpx.post(f"{server.url}/api/v1/tasks_json", json=README_JSON)
    assert r.status_code == 401 and "missing API key" in r.json()["detail"]


def test_an_upload_over_the_body_limit_is_413_and_queues_nothing(make_server: Any) -> None:
    server = aiflow_server(make_server, max_body_bytes=50_000)
    form = {"task_type": "image-generation", "model_spec": '{"name": "stable-diffusion"}'}
    with server.client(server.create_key("acme")) as c:
        big = {"files": ("huge.png", b"\0" * 60_000, "image/png")}
        assert c.post("/api/v1/tasks_form", data=form, files=big).status_code == 413
        assert c.get("/v1/tasks").json()["data"] == []
        created(
            c.post("/api/v1/tasks_form", data=form, files={"files": ("ok.png", PNG, "image/png")})
        )
