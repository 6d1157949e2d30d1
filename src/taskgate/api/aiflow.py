"""The AIFlow API, so its clients work unchanged against taskgate.

``POST /api/v1/tasks_json`` and ``POST /api/v1/tasks_form`` (multipart: ``task_type``,
``model_spec``, ``payload``, ``inference_params``, ``callback`` as JSON strings, and
``files``) accept a task; ``GET /api/v1/tasks/{id}`` (and ``/status``, ``/result``) read it;
``DELETE /api/v1/tasks/{id}`` cancels it. Errors are AIFlow's ``{error_code, message,
details}`` with the status AIFlow gives each code (api/aiflow_errors.py), plus FastAPI's
``detail`` (AIFlow's answers before it had codes) and taskgate's error object (``error``).

- ``task_type`` picks the kind of task (config ``aiflow.task_types``; built in:
  ``openai-gpt5`` chat on ``gpt-5``, ``text-generation`` chat, ``image-generation`` image,
  ``gpt-image-1`` image_edit); ``model_spec.name`` picks the model, and so the route.
- ``payload`` is the task's input; uploaded ``files`` are stored in taskgate's files and
  listed in it as ``files: [{"file_id"}]`` (the first also as ``image`` for image and video
  kinds); ``inference_params`` are its params; ``callback.url`` is its webhook, POSTed with
  ``callback.headers`` (kept like secrets, never shown) beside taskgate's signature headers,
  its body AIFlow's ``{task_id, status, result, error}`` beside taskgate's event
  (taskgate.callbacks). Headers a client may not set are refused (400).
- A client's ``model_spec.endpoint`` and ``api_key`` (every AIFlow example sends them) are
  what ``aiflow.client_credentials`` says: ``ignore`` (the default) drops both, the task
  runs on its model's route and the answer's ``message`` says so; ``refuse`` answers 400;
  ``{allow_hosts: [...]}`` pins a task whose endpoint is on a listed host to the route's
  configured instance at that host (its own secret; the client's key dropped). taskgate
  calls the backends its configuration names; a client's key is never stored, logged or
  echoed.
- Statuses are AIFlow's PENDING, PROCESSING, SUCCESS, FAILED, TIMEOUT; a cancelled task
  shows as FAILED with ``error_type: "cancelled"`` (AIFlow's clients poll until one of
  SUCCESS, FAILED, TIMEOUT, and would never stop on a status they do not know).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, SecretStr, ValidationError

from taskgate.api.aiflow_errors import aiflow_refusal
from taskgate.api.auth import caller, gateway
from taskgate.api.compat import answering_route, json_field, save_upload, with_absolute_urls
from taskgate.api.responses import JSON
from taskgate.api.schemas import AiflowError, errors
from taskgate.callbacks import AIFLOW, aiflow_result, aiflow_status, check_headers
from taskgate.callbacks import Callback as CallbackOut
from taskgate.config import AiflowSettings, AiflowTaskType, Instance, Route
from taskgate.errors import BadRequest
from taskgate.gateway import Gateway
from taskgate.models import ApiKey, Priority, Status, Task
from taskgate.submission import Submission
from taskgate.views import iso

BUILTIN_TASK_TYPES = {
    "openai-gpt5": AiflowTaskType(kind="chat", model="gpt-5"),
    "text-generation": AiflowTaskType(kind="chat"),
    "image-generation": AiflowTaskType(kind="image"),
    "gpt-image-1": AiflowTaskType(kind="image_edit", model="gpt-image-1"),
}
IMAGE_INPUT_KINDS = frozenset({"image", "image_edit", "video"})


router = APIRouter(
    prefix="/api/v1",
    tags=["AIFlow API"],
    route_class=answering_route(aiflow_refusal),
    responses=errors(AiflowError),
)


class ModelSpec(BaseModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    endpoint: str | None = Field(None, max_length=2000)
    api_key: SecretStr | None = None  # never stored; SecretStr keeps it out of any repr
    version: str | None = None


class Callback(BaseModel):
    url: str = Field(min_length=1, max_length=2000)
    headers: dict[str, str] | None = None


class TaskIn(BaseModel):
    """AIFlow's task request (fields it does not know are ignored, as AIFlow did)."""

    task_type: str = Field(min_length=1, max_length=100)
    model_spec: ModelSpec
    payload: dict[str, Any] = Field(default_factory=dict)
    inference_params: dict[str, Any] | None = None
    callback: Callback | None = None
    priority: Literal["critical", "default", "low"] = "default"  # taskgate's own


def task_type(gw: Gateway, name: str) -> AiflowTaskType:
    known = {**BUILTIN_TASK_TYPES, **gw.settings.aiflow.task_types}
    if name not in known:
        names = ", ".join(sorted(known))
        raise BadRequest(f"unknown task_type {name!r}; known: {names}", field="task_type")
    return known[name]


def plan(gw: Gateway, body: TaskIn) -> Submission:
    """The submission for a request, checked (task type, model, client endpoint) before
    anything is stored; pinned to an instance when the client's endpoint names one."""
    ttype = task_type(gw, body.task_type)
    model = body.model_spec.name or ttype.model
    if model is None:
        raise BadRequest(
            f"model_spec.name is required for task_type {body.task_type!r}", field="model_spec"
        )
    route = gw.routing.route_for(ttype.kind, model)
    pinned = client_instance(gw.settings.aiflow, body.model_spec, route)
    return Submission(
        kind=ttype.kind,
        model=model,
        input=body.payload,
        params=body.inference_params or {},
        priority=Priority.parse(body.priority),
        webhook_url=body.callback.url if body.callback else None,
        label=body.task_type,
        pinned_instance=pinned,
        callback=callback_of(body.callback),
    )


def callback_of(callback: Callback | None) -> CallbackOut | None:
    """How the task's webhook is sent: in AIFlow's body shape, with the client's headers
    (checked here, before anything is stored)."""
    if callback is None:
        return None
    return CallbackOut(AIFLOW, check_headers(callback.headers))


def client_instance(conf: AiflowSettings, spec: ModelSpec, route: Route) -> str | None:
    """The configured instance a client's ``model_spec.endpoint`` pins the task to (only
    with ``allow_hosts``); None: it runs on any instance of its route. Refuses as configured.
    Messages name the host, never the key."""
    if spec.endpoint is None and spec.api_key is None:
        return None
    if conf.client_credentials == "refuse":
        raise BadRequest(
            "model_spec.endpoint and model_spec.api_key are not accepted: taskgate calls the "
            "backends its configuration names, with their own keys; remove them from the "
            "request (an administrator may ignore or allow them: aiflow.client_credentials)",
            field="model_spec",
        )
    if conf.client_credentials == "ignore" or spec.endpoint is None:
        return None  # a key alone is dropped: the route's own key is used
    host = _host(spec.endpoint)
    if host not in conf.allowed_hosts:
        raise BadRequest(
            f"model_spec.endpoint: host {host or '?'!r} is not allowed here", field="model_spec"
        )
    instance = instance_at(route, spec.endpoint)
    if instance is None:
        raise BadRequest(
            f"model_spec.endpoint: this model's route ({route.name!r}) has no backend at {host!r}",
            field="model_spec",
        )
    return instance.name


def instance_at(route: Route, endpoint: str) -> Instance | None:
    """The route's instance at the endpoint's host: of several there, the first on its port
    too (else the first at the host)."""
    at_host = [i for i in route.instances if i.endpoint and _host(i.endpoint) == _host(endpoint)]
    on_port = [i for i in at_host if _port(i.endpoint or "") == _port(endpoint)]
    found = on_port or at_host
    return found[0] if found else None


def ignored_fields(conf: AiflowSettings, spec: ModelSpec) -> list[str]:
    """The ``model_spec`` fields a task was accepted without (named in the answer)."""
    endpoint_used = conf.client_credentials not in ("ignore", "refuse")
    names = [] if spec.endpoint is None or endpoint_used else ["model_spec.endpoint"]
    return names + ([] if spec.api_key is None else ["model_spec.api_key"])


def _port(url: str) -> int | None:
    parts = urlsplit(url)
    try:
        return parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # a port out of range
        return None


def _host(url: str) -> str:
    """The host of an http(s) URL, lower-cased; '' for anything else."""
    parts = urlsplit(url)
    return (parts.hostname or "").lower() if parts.scheme in ("http", "https") else ""


def with_files(sub: Submission, refs: list[dict[str, str]]) -> Submission:
    """The task's input with its uploaded files listed (and the first as ``image`` where the
    kind takes an input image and the payload names none)."""
    data = dict(sub.input)
    if sub.kind == "image_edit" and "image" not in data and data.get("images"):
        data["image"] = data["images"]  # AIFlow's gpt-image-1 payload lists ``images``
    if refs:
        data["files"] = refs
        if sub.kind in IMAGE_INPUT_KINDS and "image" not in data:
            data["image"] = refs[0] if len(refs) == 1 else refs
    return dataclasses.replace(sub, input=data)


async def _accept(gw: Gateway, key: ApiKey, sub: Submission, ignored: list[str]) -> JSON:
    task, created = await gw.submit(key, sub)
    message = "Task created successfully"
    if ignored:
        message += (
            f"; {' and '.join(ignored)} ignored: taskgate calls the backend its configuration"
            " names for this model, with its own key"
        )
    body = {
        "task_id": task.id,
        # AIFlow answers a creation PENDING, though taskgate may have claimed it already
        "status": Status.PENDING.value if created else task.status.value,
        "created_at": iso(task.created_at),
        "message": message,
    }
    return JSON(body, status_code=201)


@router.post("/tasks_json", status_code=201)
async def create_task_json(
    body: TaskIn, key: ApiKey = Depends(caller), gw: Gateway = Depends(gateway)
) -> JSON:
    """Queue a task from AIFlow's JSON request: ``{task_id, status, created_at, message}``."""
    sub = with_files(plan(gw, body), [])
    ignored = ignored_fields(gw.settings.aiflow, body.model_spec)
    return await _accept(gw, key, sub, ignored)


@router.post("/tasks_form", status_code=201)
async def create_task_form(
    request: Request,
    task_type: str = Form(),
    model_spec: str = Form(description="JSON: {name, endpoint?, api_key?}"),
    payload: str | None = Form(None, description="JSON object: the task's input"),
    inference_params: str | None = Form(None, description="JSON object: the task's params"),
    callback: str | None = Form(None, description="JSON: {url, headers?}"),
    files: list[UploadFile] | None = File(None, description="stored, listed in the input"),
    key: ApiKey = Depends(caller),
    gw: Gateway = Depends(gateway),
) -> JSON:
    """Queue a task from AIFlow's multipart form; the files go to taskgate's storage first
    (once the request is checked; a submission refused after that removes them again)."""
    raw = {
        "task_type": task_type,
        "model_spec": json_field("model_spec", model_spec),
        "payload": json_field("payload", payload, {}),
        "inference_params": json_field("inference_params", inference_params),
        "callback": json_field("callback", callback),
    }
    try:
        body = TaskIn.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    sub = plan(gw, body)
    async with gw.request_files.discarded_if_refused() as stored:
        for f in files or []:
            stored.append((await save_upload(request.app.state.files, key, f)).id)
        refs = [{"file_id": file_id} for file_id in stored]
        ignored = ignored_fields(gw.settings.aiflow, body.model_spec)
        return await _accept(gw, key, with_files(sub, refs), ignored)


# --- reading and cancelling -------------------------------------------------------------


def result_of(request: Request, task: Task) -> dict[str, Any] | None:
    """AIFlow's ``result{output, model, timestamp}``, with taskgate's usage and files."""
    return aiflow_result(task, with_absolute_urls(request, task.result))


def task_view(request: Request, task: Task) -> dict[str, Any]:
    error = task.error or {}
    return {
        "task_id": task.id,
        "status": aiflow_status(task),
        "task_type": task.label or task.kind,
        "model_spec": {"name": task.model},
        "payload": task.input,
        "inference_params": task.params,
        "result": result_of(request, task),
        "error": error.get("message"),
        "error_type": error.get("type"),
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
        "retry_count": max(task.attempts - 1, 0),
        "max_retries": max(task.max_attempts - 1, 0),
    }


@router.get("/tasks/{task_id}")
async def get_task(
    task_id: str, request: Request, key: ApiKey = Depends(caller), gw: Gateway = Depends(gateway)
) -> JSON:
    """The task: ``{task_id, status, task_type, result{output, model, timestamp}, ...}``."""
    return JSON(task_view(request, await gw.get(key, task_id)))


@router.get("/tasks/{task_id}/status")
async def get_status(
    task_id: str, key: ApiKey = Depends(caller), gw: Gateway = Depends(gateway)
) -> JSON:
    task = await gw.get(key, task_id)
    return JSON(
        {
            "task_id": task.id,
            "status": aiflow_status(task),
            "created_at": iso(task.created_at),
            "updated_at": iso(task.updated_at),
        }
    )


@router.get("/tasks/{task_id}/result")
async def get_result(
    task_id: str, request: Request, key: ApiKey = Depends(caller), gw: Gateway = Depends(gateway)
) -> JSON:
    """202 while the task runs; then its result, or its error (a failed task is not a
    server error here, unlike AIFlow's 500)."""
    task = await gw.get(key, task_id)
    body: dict[str, Any] = {"task_id": task.id, "status": aiflow_status(task)}
    if not task.terminal:
        return JSON({**body, "detail": "Task is still running"}, status_code=202)
    body["result"] = result_of(request, task)
    if task.status is not Status.SUCCESS:
        body["error"] = (task.error or {}).get("message")
        body["error_type"] = (task.error or {}).get("type")
    return JSON(body)


@router.delete("/tasks/{task_id}")
async def cancel_task(
    task_id: str, key: ApiKey = Depends(caller), gw: Gateway = Depends(gateway)
) -> JSON:
    """Cancel the task (it stays readable; an ended task is left as it is)."""
    task = await gw.cancel(key, task_id)
    message = "Task cancelled" if task.status is Status.CANCELLED else "Task had already ended"
    return JSON({"task_id": task.id, "status": aiflow_status(task), "message": message})
