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
    ("spec", "hosts", "needle"),
    [
        ({"name": "gpt-5", "api_key": "sk-secret"}, [], "not accepted"),
        ({"name": "gpt-5", "endpoint": "https://api.openai.com/v1"}, [], "not accepted"),
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
    spec: dict[str, Any], hosts: list[str], needle: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        aiflow.plan(gateway(client_endpoint_hosts=hosts), task(model_spec=spec))
    assert needle in refused.value.message and "sk-secret" not in str(refused.value.as_dict())


def test_an_allowed_host_keeps_the_configured_instance_and_drops_the_key() -> None:
    gw = gateway(client_endpoint_hosts=["API.openai.com"])
    spec = {"name": "gpt-5", "endpoint": "https://api.openai.com/v1/chat", "api_key": "sk-secret"}
    sub = aiflow.plan(gw, task(model_spec=spec))
    assert "sk-secret" not in repr(sub) and "api.openai.com" not in repr(sub)


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
