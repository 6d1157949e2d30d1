"""The AIFlow API against a real server: every create request of AIFlow's README, Python
example and tests, sent as they are (their client keys ignored, and never shown anywhere),
refused, or pinning the task to the configured instance at an allowed host; the multipart
form with a file; AIFlow's error codes and statuses; cancelling, and tenant scoping."""

# ruff: noqa: RUF001  (the AIFlow README's own text, with its full-width punctuation)
from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, mock_route
from tests.e2e.test_api import wait
from tests.e2e.test_malformed_input import JSON_TYPE
from tests.fakes import in_thread
from tests.fakes.openai_server import FakeOpenAI

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)
OPENAI = "https://api.openai.com/v1"

# Every create request of AIFlow's README, its Python example and its tests/test_submit_task.py,
# as they are written there (xycdaimi/AIFlow). They are requests, not code.
README_JSON: dict[str, Any] = {
    "task_type": "openai-gpt5",
    "model_spec": {
        "name": "gpt-5",
        "api_key": "sk-your-openai-api-key",
        "endpoint": "https://api.openai.com/v1/chat/completions",
    },
    "payload": {"prompt": "你好，请介绍一下人工智能的发展历史"},
    "inference_params": {"temperature": 0.7, "max_tokens": 1000},
}
README_FORM: dict[str, str] = {  # curl -F fields, with files=@/path/to/reference_image.jpg
    "task_type": "image-generation",
    "model_spec": '{"name":"stable-diffusion","api_key":"your-key"}',
    "payload": '{"prompt":"a beautiful sunset over mountains"}',
    "inference_params": '{"width":1024,"height":768}',
}
README_PYTHON: dict[str, Any] = {  # the README's "Python SDK example"
    "task_type": "openai-gpt5",
    "model_spec": {"name": "gpt-5", "api_key": "sk-your-openai-api-key"},
    "payload": {"prompt": "你好，请介绍一下人工智能"},
    "inference_params": {"temperature": 0.7},
}
README_CUSTOM: dict[str, Any] = {  # the README's "add your own model" example
    "task_type": "my-custom-model",
    "model_spec": {
        "name": "my-model-v1",
        "endpoint": "https://api.example.com/inference",
        "api_key": "your-api-key",
    },
    "payload": {"input_text": "Hello, world!"},
    "inference_params": {"param1": "value1"},
}
# tests/test_submit_task.py; its api_key there looks like a real credential, so a made-up
# one of the same shape stands in for it (the only change)
SUBMIT_TEST_KEY = "sk-" + "Fake0Key1Of2The3Same4Shape5As6AIFlows7Test8File9"
SUBMIT_TEST: dict[str, Any] = {
    "task_type": "openai-gpt5",
    "model_spec": {
        "name": "gpt-5",
        "api_key": SUBMIT_TEST_KEY,
        "endpoint": "https://api2.aigcbest.top/v1/chat/completions",
    },
    "payload": {"prompt": "你好"},
    "inference_params": {"temperature": 0.7},
}
JSON_EXAMPLES = {
    "readme-json": README_JSON,
    "readme-python": README_PYTHON,
    "readme-custom": README_CUSTOM,
    "test-submit-task": SUBMIT_TEST,
}
CLIENT_KEYS = ("sk-your-openai-api-key", "your-key", "your-api-key", SUBMIT_TEST_KEY)


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


def refused(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """AIFlow's error answer (its code and the status AIFlow gives it), with FastAPI's
    ``detail`` and taskgate's error object beside it."""
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["error_code"] == code, body
    assert body["message"] and body["detail"] == body["message"] == body["error"]["message"]
    assert isinstance(body["details"], dict)
    return body


def stored_bytes(server: Server) -> bytes:
    """Everything the store holds (tasks, attempts, task logs, webhook events), as written."""
    return b"".join(p.read_bytes() for p in server.root.glob("taskgate.db*"))


def assert_nowhere(server: Server, c: httpx.Client, task_ids: list[str], *keys: str) -> None:
    """No client key in any answer about the tasks, the store, or the server's log."""
    seen = [
        c.get(path).text
        for task_id in task_ids
        for path in (
            f"/api/v1/tasks/{task_id}",
            f"/api/v1/tasks/{task_id}/result",
            f"/v1/tasks/{task_id}",
            f"/v1/tasks/{task_id}/logs",
        )
    ]
    stored, log = stored_bytes(server), server.log.read_text()
    for key in keys:
        assert all(key not in text for text in seen), key
        assert key.encode() not in stored and key not in log, key


def test_every_create_example_of_aiflow_is_accepted_and_its_key_goes_nowhere(
    make_server: Any,
) -> None:
    server = aiflow_server(make_server)
    ids = []
    with server.client(server.create_key("acme")) as c:
        for name, example in JSON_EXAMPLES.items():
            r = c.post("/api/v1/tasks_json", json=example)
            ids.append(created(r))
            message = r.json()["message"]
            assert "model_spec.api_key" in message and "ignored" in message, name
            assert ("model_spec.endpoint" in message) == ("endpoint" in example["model_spec"])
            assert all(key not in r.text for key in CLIENT_KEYS)
        files = {"files": ("reference_image.jpg", PNG, "image/png")}
        r = c.post("/api/v1/tasks_form", data=README_FORM, files=files)
        ids.append(created(r))
        assert "model_spec.api_key ignored" in r.json()["message"]
        tasks = [poll(c, task_id) for task_id in ids]
        assert [t["status"] for t in tasks] == ["SUCCESS"] * len(ids), tasks
        readme, python, custom, submit_test, form = tasks
        assert readme["result"]["output"]["text"] == (
            "mock reply to: 你好，请介绍一下人工智能的发展历史"
        )
        assert (readme["task_type"], readme["result"]["model"]) == ("openai-gpt5", "gpt-5")
        assert readme["inference_params"] == {"temperature": 0.7, "max_tokens": 1000}
        assert python["result"]["output"]["text"] == "mock reply to: 你好，请介绍一下人工智能"
        assert submit_test["result"]["output"]["text"] == "mock reply to: 你好"
        assert custom["result"]["output"] == {  # on the route's instance, not the client's
            "output": "my-model-v1 at http://10.1.2.3:9000/infer: Hello, world!",
            "metadata": {"param1": "value1"},
        }
        assert form["inference_params"] == {"width": 1024, "height": 768}
        assert all(t["model_spec"] == {"name": t["model_spec"]["name"]} for t in tasks)
        assert_nowhere(server, c, ids, *CLIENT_KEYS, "api.example.com", "aigcbest")


def test_refuse_answers_the_examples_with_aiflows_model_spec_error_and_stores_nothing(
    make_server: Any,
) -> None:
    server = aiflow_server(make_server, client_credentials="refuse")
    with server.client(server.create_key("acme")) as c:
        for example in JSON_EXAMPLES.values():
            body = refused(c.post("/api/v1/tasks_json", json=example), 400, "E3000010")
            assert "model_spec.endpoint and model_spec.api_key are not accepted" in body["message"]
            assert body["details"] == {"parameter": "model_spec"}
        form = c.post("/api/v1/tasks_form", data=README_FORM)
        refused(form, 400, "E3000010")
        assert c.get("/v1/tasks").json()["data"] == []
        created(c.post("/api/v1/tasks_json", json=without_client_endpoint(README_JSON)))
    assert_nowhere(server, c, [], *CLIENT_KEYS)


def test_allowed_hosts_pin_each_task_to_the_instance_at_the_named_host(
    make_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two backends on one route, at 127.0.0.1 and at localhost: a client that names the
    localhost one gets it for every task; one that names no endpoint gets either."""
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-fake-key")
    with in_thread(FakeOpenAI()) as near, in_thread(FakeOpenAI()) as named:
        instances = [
            {"name": "near", "endpoint": near.base_url, "secret_env": "FAKE_OPENAI_KEY"},
            {
                "name": "named",
                "endpoint": f"http://localhost:{named.port}/v1",
                "secret_env": "FAKE_OPENAI_KEY",
            },
        ]
        route = {"name": "up", "models": ["gpt-5"], "provider": "openai", "instances": instances}
        server: Server = make_server(
            [route], aiflow={"client_credentials": {"allow_hosts": ["LocalHost"]}}
        )
        server.start()
        spec = {
            "name": "gpt-5",
            "endpoint": f"http://localhost:{named.port}/v1/chat/completions",
            "api_key": "sk-your-openai-api-key",
        }
        body = {**README_JSON, "model_spec": spec}
        with server.client(server.create_key("acme")) as c:
            r = c.post("/api/v1/tasks_json", json=body)
            ids = [created(r)] + [
                created(c.post("/api/v1/tasks_json", json=body)) for _ in range(5)
            ]
            message = r.json()["message"]
            assert "model_spec.api_key ignored" in message and "endpoint" not in message
            assert all(poll(c, i)["status"] == "SUCCESS" for i in ids)
            assert (len(named.requests), len(near.requests)) == (6, 0)
            free = without_client_endpoint(README_JSON)
            assert poll(c, created(c.post("/api/v1/tasks_json", json=free)))["status"] == "SUCCESS"
            assert len(named.requests) + len(near.requests) == 7

            elsewhere = {**spec, "endpoint": near.base_url}  # 127.0.0.1: not an allowed host
            r = c.post("/api/v1/tasks_json", json={**README_JSON, "model_spec": elsewhere})
            assert "'127.0.0.1' is not allowed" in refused(r, 400, "E3000010")["message"]
            assert_nowhere(server, c, ids, "sk-your-openai-api-key")


def test_the_earlier_client_endpoint_hosts_key_still_allows_hosts(make_server: Any) -> None:
    server = aiflow_server(make_server, OPENAI, client_endpoint_hosts=["api.openai.com"])
    with server.client(server.create_key("acme")) as c:
        r = c.post("/api/v1/tasks_json", json=README_JSON)
        assert poll(c, created(r))["status"] == "SUCCESS"
        assert "model_spec.endpoint" not in r.json()["message"]  # it was used: pinned there
        r = c.post("/api/v1/tasks_json", json=README_CUSTOM)  # its endpoint: not allowed
        assert "'api.example.com' is not allowed" in refused(r, 400, "E3000010")["message"]
        custom = {
            **README_CUSTOM,
            "model_spec": {**README_CUSTOM["model_spec"], "endpoint": OPENAI},
        }
        r = c.post("/api/v1/tasks_json", json=custom)
        assert "has no backend at 'api.openai.com'" in refused(r, 400, "E3000010")["message"]
        assert "your-api-key" not in r.text


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
        assert "'payload' must be a JSON string" in refused(r, 400, "E3000011")["message"]


def test_the_readme_custom_model_runs_as_a_plugin_and_unknown_task_types_are_refused(
    make_server: Any,
) -> None:
    server = aiflow_server(make_server)
    with server.client(server.create_key("acme")) as c:
        task = poll(c, created(c.post("/api/v1/tasks_json", json=README_CUSTOM)))
        assert task["status"] == "SUCCESS" and task["task_type"] == "my-custom-model"
        r = c.post("/api/v1/tasks_json", json={**README_CUSTOM, "task_type": "speech-to-poem"})
        body = refused(r, 400, "E3000009")
        assert "unknown task_type 'speech-to-poem'" in body["message"]
        assert body["error"]["field"] == "task_type" and "your-api-key" not in r.text


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
            body = refused(cb.get(f"/api/v1/tasks/{task_id}{path}"), 404, "E3000001")
            assert body["message"] == f"no task {task_id!r}"
            assert body["details"] == {"task_id": task_id}
        refused(cb.delete(f"/api/v1/tasks/{task_id}"), 404, "E3000001")
        hook = {"url": "http://127.0.0.1:9/hook", "headers": {"X-Token": "t"}}
        body = {**without_client_endpoint(README_JSON), "callback": hook}
        r = ca.post("/api/v1/tasks_json", json=body)  # loopback: refused unless allowed
        assert refused(r, 400, "E3000012")["error"]["field"] == "webhook_url"
    r = httpx.post(f"{server.url}/api/v1/tasks_json", json=README_JSON)
    assert "missing API key" in refused(r, 401, "E2000003")["message"]
    wrong = {"Authorization": "Bearer tg_not-a-key"}
    r = httpx.get(f"{server.url}/api/v1/tasks/{task_id}", headers=wrong)
    refused(r, 401, "E2000002")


def test_an_upload_over_the_body_limit_is_413_and_queues_nothing(make_server: Any) -> None:
    server = aiflow_server(make_server, max_body_bytes=50_000)
    form = {"task_type": "image-generation", "model_spec": '{"name": "stable-diffusion"}'}
    with server.client(server.create_key("acme")) as c:
        big = {"files": ("huge.png", b"\0" * 60_000, "image/png")}
        refused(c.post("/api/v1/tasks_form", data=form, files=big), 413, "E5000007")
        assert c.get("/v1/tasks").json()["data"] == []
        created(
            c.post("/api/v1/tasks_form", data=form, files={"files": ("ok.png", PNG, "image/png")})
        )


@pytest.mark.parametrize(
    ("body", "status", "code", "needle"),
    [
        (b'{"task_type": "openai-gpt5" "model_spec": {}}', 400, "E1000004", "at line 1 column 29"),
        (b'{"task_type": "openai-gpt5",\n "payload": {]}', 400, "E1000004", "at line 2 column 14"),
        ({"payload": {"prompt": "x"}}, 400, "E1000003", "task_type: Field required"),
        ({**README_PYTHON, "payload": "hello"}, 400, "E3000011", "payload: Input should be"),
        ({**README_PYTHON, "model_spec": "gpt-5"}, 400, "E3000010", "model_spec: Input should"),
        ({**README_PYTHON, "callback": {"headers": {}}}, 400, "E1000003", "callback.url"),
        ({**README_PYTHON, "inference_params": [1]}, 400, "E4000006", "inference_params: Input"),
        ({**README_PYTHON, "task_type": "poem"}, 400, "E3000009", "unknown task_type 'poem'"),
        ({**README_PYTHON, "model_spec": {"name": "gpt-9"}}, 404, "E4000002", "unknown model"),
        ({"task_type": "text-generation", "model_spec": {}}, 400, "E3000010", "name is required"),
    ],
)
def test_each_refusal_has_aiflows_code_and_status_and_stores_nothing(
    aiflow: tuple[Server, str], body: dict[str, Any] | bytes, status: int, code: str, needle: str
) -> None:
    server, key = aiflow
    with server.client(key) as c:
        if isinstance(body, bytes):
            r = c.post("/api/v1/tasks_json", content=body, headers={"content-type": JSON_TYPE})
        else:
            r = c.post("/api/v1/tasks_json", json=body)
        answer = refused(r, status, code)
        assert needle in answer["message"]
        if answer["error"]["type"] == "invalid_request":  # AIFlow's list of schema errors
            first = answer["details"]["validation_errors"][0]
            assert f"{first['field']}: {first['message']}" in answer["message"]
        assert c.get("/v1/tasks").json()["data"] == []


def test_a_body_of_another_type_is_aiflows_invalid_request(aiflow: tuple[Server, str]) -> None:
    server, key = aiflow
    with server.client(key) as c:
        r = c.post(
            "/api/v1/tasks_json", content=b"task_type=x", headers={"content-type": "text/plain"}
        )
        assert "application/json" in refused(r, 400, "E1000001")["message"]


@pytest.fixture(scope="module")
def aiflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """One server for the table of refusals (none of them stores anything)."""
    server = Server(tmp_path_factory.mktemp("aiflow"), [mock_route("gpt5", ["gpt-5"])])
    server.start()
    try:
        yield server, server.create_key("acme")
    finally:
        server.stop()
