"""The compatible APIs' translations, without a server: what an AIFlow, Volcengine AI Server
or AI Task System request becomes as a Submission, and what is refused before anything is
stored."""

from __future__ import annotations

from typing import Any

import pytest

from taskgate.api import aiflow, tasksystem, volcengine
from taskgate.config import Settings
from taskgate.errors import BadRequest
from taskgate.gateway import Gateway
from taskgate.models import Priority


def gateway(**aiflow_settings: Any) -> Gateway:
    routes = [
        {
            "name": "openai",
            "models": ["gpt-5", "gpt-image-1"],
            "provider": "mock",
            "instances": [{"name": "api", "endpoint": "https://api.openai.com/v1"}],
        },
        {"name": "local", "models": ["llama3"], "provider": "mock", "instances": [{"name": "a"}]},
    ]
    settings = Settings.model_validate({"routes": routes, "aiflow": aiflow_settings})
    return Gateway(settings, None, None)  # type: ignore[arg-type]  # translation only


def task(**over: Any) -> aiflow.TaskIn:
    body = {
        "task_type": "openai-gpt5",
        "model_spec": {"name": "gpt-5"},
        "payload": {"prompt": "hi"},
    }
    return aiflow.TaskIn.model_validate({**body, **over})


def test_an_aiflow_request_becomes_a_task_with_its_webhook_and_type() -> None:
    callback = {"url": "https://hooks.example.com/done", "headers": {"X-Token": "t"}}
    sub = aiflow.plan(gateway(), task(callback=callback, inference_params={"temperature": 0.2}))
    assert (sub.kind, sub.model, sub.label) == ("chat", "gpt-5", "openai-gpt5")
    assert sub.input == {"prompt": "hi"} and sub.params == {"temperature": 0.2}
    assert sub.webhook_url == "https://hooks.example.com/done"
    assert aiflow.plan(gateway(), task(model_spec={})).model == "gpt-5"  # the type's model


def test_config_task_types_add_to_and_override_the_built_in_ones() -> None:
    gw = gateway(
        task_types={"openai-gpt5": {"kind": "chat", "model": "llama3"}, "t2i": {"kind": "image"}}
    )
    assert aiflow.plan(gw, task(model_spec={})).model == "llama3"
    assert aiflow.plan(gw, task(task_type="t2i", model_spec={"name": "llama3"})).kind == "image"
    assert aiflow.plan(gw, task(task_type="gpt-image-1", model_spec={})).kind == "image_edit"


@pytest.mark.parametrize(
    ("spec", "creds", "needle"),
    [
        ({"name": "gpt-5", "api_key": "sk-secret"}, "refuse", "not accepted"),
        ({"name": "gpt-5", "endpoint": "https://api.openai.com/v1"}, "refuse", "not accepted"),
        ({"name": "gpt-5", "endpoint": "https://evil.test/v1"}, ["api.openai.com"], "not allowed"),
        ({"name": "gpt-5", "endpoint": "file:///etc/passwd"}, ["api.openai.com"], "not allowed"),
        (
            {"name": "llama3", "endpoint": "https://api.openai.com/v1"},
            ["api.openai.com"],
            "no backend",
        ),
    ],
)
def test_client_endpoints_and_keys_are_refused_without_echoing_the_key(
    spec: dict[str, Any], creds: Any, needle: str
) -> None:
    conf = {"allow_hosts": creds} if isinstance(creds, list) else creds
    with pytest.raises(BadRequest) as refused:
        aiflow.plan(gateway(client_credentials=conf), task(model_spec=spec))
    assert needle in refused.value.message and "sk-secret" not in str(refused.value.as_dict())


def test_by_default_a_client_endpoint_and_key_are_dropped_and_named_as_ignored() -> None:
    gw = gateway()
    spec = {"name": "gpt-5", "endpoint": "https://evil.test/v1", "api_key": "sk-secret"}
    sub = aiflow.plan(gw, task(model_spec=spec))
    assert sub.pinned_instance is None and "sk-secret" not in repr(sub) and "evil" not in repr(sub)
    ignored = aiflow.ignored_fields(gw.settings.aiflow, aiflow.ModelSpec.model_validate(spec))
    assert ignored == ["model_spec.endpoint", "model_spec.api_key"]


def test_an_allowed_host_pins_the_task_to_the_instance_there_and_drops_the_key() -> None:
    routes = [
        {
            "name": "two",
            "models": ["gpt-5"],
            "provider": "mock",
            "instances": [
                {"name": "a", "endpoint": "http://127.0.0.1:9001/v1"},
                {"name": "b", "endpoint": "http://localhost:9001/v1"},
                {"name": "c", "endpoint": "http://localhost:9002/v1"},
            ],
        }
    ]
    conf = {"client_credentials": {"allow_hosts": ["LOCALHOST"]}}
    gw = Gateway(Settings.model_validate({"routes": routes, "aiflow": conf}), None, None)  # type: ignore[arg-type]
    spec = {"name": "gpt-5", "endpoint": "http://localhost:9002/v1/chat", "api_key": "sk-secret"}
    sub = aiflow.plan(gw, task(model_spec=spec))
    assert sub.pinned_instance == "c" and "sk-secret" not in repr(sub)
    other_port = {**spec, "endpoint": "http://localhost:7000/x"}
    assert aiflow.plan(gw, task(model_spec=other_port)).pinned_instance == "b"  # the first there
    ignored = aiflow.ignored_fields(gw.settings.aiflow, aiflow.ModelSpec.model_validate(spec))
    assert ignored == ["model_spec.api_key"]


def test_the_earlier_key_reads_as_allow_hosts_or_refuse_and_not_beside_the_new_one() -> None:
    assert gateway(client_endpoint_hosts=["a.test"]).settings.aiflow.allowed_hosts == ["a.test"]
    assert gateway(client_endpoint_hosts=[]).settings.aiflow.client_credentials == "refuse"
    with pytest.raises(ValueError, match=r"replaced by aiflow\.client_credentials"):
        gateway(client_endpoint_hosts=["a.test"], client_credentials="ignore")


def test_uploaded_files_are_listed_in_the_input_and_images_given_as_the_image() -> None:
    ref = {"file_id": "f1"}
    chat = aiflow.with_files(aiflow.plan(gateway(), task()), [ref])
    assert chat.input == {"prompt": "hi", "files": [ref]}
    edit = aiflow.plan(gateway(), task(task_type="gpt-image-1", payload={"prompt": "x"}))
    assert aiflow.with_files(edit, [ref, {"file_id": "f2"}]).input["image"] == [
        ref,
        {"file_id": "f2"},
    ]
    listed = aiflow.plan(gateway(), task(task_type="gpt-image-1", payload={"images": ["data:x"]}))
    assert aiflow.with_files(listed, []).input["image"] == ["data:x"]


def test_a_volcengine_request_keeps_user_id_as_a_label_and_its_options_as_params() -> None:
    body = volcengine.TaskIn.model_validate(
        {
            "prompt": "cat",
            "user_id": "u1",
            "provider": "volcengine",
            "model": "m",
            "seed": -1,
            "size": "1024x1024",
            "priority": "low",
        }
    )
    sub = volcengine.submission("image", body)
    assert (sub.kind, sub.model, sub.input, sub.label) == ("image", "m", "cat", "u1")
    assert sub.params == {"size": "1024x1024", "seed": -1} and sub.priority is Priority.LOW
    with pytest.raises(BadRequest, match="model and provider required"):
        volcengine.submission("image", volcengine.TaskIn(prompt="cat"))


def test_a_comma_separated_model_is_a_fan_out() -> None:
    assert tasksystem.models_of("gemini-2.5-flash, deepseek-r1:1.5b") == [
        "gemini-2.5-flash",
        "deepseek-r1:1.5b",
    ]
    for bad in ("", " , ", "a, a", ",".join(f"m{i}" for i in range(33))):
        with pytest.raises(BadRequest):
            tasksystem.models_of(bad)
