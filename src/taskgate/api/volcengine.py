"""The Volcengine AI Server API, so its clients work unchanged against taskgate.

``POST /api/v1/ai/{image|video|text}/task`` accepts a task (``prompt``, ``model`` and
``provider`` required), ``GET /api/v1/ai/task/result/{id}`` reads it,
``DELETE /api/v1/ai/task/{id}`` cancels it, ``GET /api/v1/ai/tasks?user_id&type&limit&offset``
lists them. Every answer, errors included, is the Volcengine AI Server's envelope
``{success, data, message}``.

- The type is the task's kind (``text`` is ``chat``); ``model`` picks the route, as
  everywhere in taskgate. ``provider`` is required, as the Volcengine AI Server requires
  it, and echoed, but it does not choose anything: the route's configured provider runs the
  model.
- ``size``, ``aspect_ratio``, ``max_tokens``, ``temperature`` and ``seed`` become params.
- ``user_id`` is a label kept on the task and a filter of the listing, inside the caller's
  tenant: it is never identity (the API key is), so another tenant using the same
  ``user_id`` sees nothing of these tasks.
- Statuses ``pending|processing|completed|failed`` (a timed-out or cancelled task is
  ``failed``, with ``error``); results in ``image_url``, ``video_url`` (absolute, signed
  links to taskgate's ``/v1/files/{id}``, read without a key until they expire) and
  ``text_result``.
- ``DELETE`` cancels (the task stays readable, as every taskgate task does).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from taskgate.api.auth import caller, gateway
from taskgate.api.compat import file_urls, route_class
from taskgate.api.responses import JSON
from taskgate.api.schemas import Envelope, errors
from taskgate.errors import BadRequest
from taskgate.gateway import Gateway
from taskgate.models import ApiKey, Priority, Status, Task
from taskgate.params import COMMON, MAX_INT64
from taskgate.store import TaskFilter
from taskgate.submission import Submission
from taskgate.views import iso, output_text

KINDS = {"image": "image", "video": "video", "text": "chat"}
TYPES = {kind: name for name, kind in KINDS.items()}
PARAMS = ("size", "aspect_ratio", "max_tokens", "temperature", "seed")
STATUSES = {
    Status.PENDING: "pending",
    Status.PROCESSING: "processing",
    Status.SUCCESS: "completed",
}
MESSAGES = {
    "pending": "任务排队中",
    "processing": "任务处理中",
    "completed": "任务完成",
    "failed": "任务失败",
}
MAX_OFFSET = 10_000
MAX_TOKENS = int(COMMON["max_tokens"][1])
MAX_TEMPERATURE = COMMON["temperature"][1]


def envelope(data: Any, message: str, status: int = 200) -> JSON:
    return JSON({"success": status < 400, "data": data, "message": message}, status_code=status)


def _render(status: int, message: str, error: dict[str, Any]) -> Response:
    return envelope(None, message, status)


router = APIRouter(
    prefix="/api/v1/ai",
    tags=["Volcengine AI Server API"],
    route_class=route_class(_render),
    responses=errors(Envelope),
)


class TaskIn(BaseModel):
    """The Volcengine AI Server's unified request; ``prompt``, ``model`` and ``provider`` are
    required (checked in :func:`submission`, so that a missing one is the Volcengine AI
    Server's 400 with its message, not a schema error)."""

    prompt: str = Field("", max_length=100_000)
    user_id: str | None = Field(None, max_length=200)
    provider: str | None = Field(None, max_length=100)
    model: str | None = Field(None, max_length=200)
    size: str | None = Field(None, max_length=100)
    aspect_ratio: str | None = Field(None, max_length=100)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    temperature: float | None = Field(None, ge=0, le=MAX_TEMPERATURE, allow_inf_nan=False)
    seed: int | None = Field(None, ge=-MAX_INT64 - 1, le=MAX_INT64)
    priority: Literal["critical", "default", "low"] | None = None  # taskgate's own


def submission(kind: str, body: TaskIn) -> Submission:
    missing = [f for f in ("model", "provider", "prompt") if not getattr(body, f)]
    if missing:
        raise BadRequest(f"{' and '.join(missing)} required", field=missing[0])
    assert body.model is not None
    return Submission(
        kind=kind,
        model=body.model,
        input=body.prompt,
        params={p: getattr(body, p) for p in PARAMS if getattr(body, p) is not None},
        priority=Priority.parse(body.priority) if body.priority else Priority.DEFAULT,
        label=body.user_id,
    )


@router.post("/{task_type}/task")
async def create_task(
    task_type: Literal["image", "video", "text"],
    body: TaskIn,
    key: ApiKey = Depends(caller),
    gw: Gateway = Depends(gateway),
) -> JSON:
    """Queue an image, video or text task: ``data{task_id, status, provider, model}``."""
    task, created = await gw.submit(key, submission(KINDS[task_type], body))
    data = {
        "task_id": task.id,
        # its creation answers pending, though taskgate may have claimed the task already
        "status": STATUSES[Status.PENDING] if created else status_of(task),
        "type": task_type,
        "provider": body.provider,
        "model": task.model,
        "user_id": task.label,
    }
    return envelope(data, "任务创建成功")


# --- reading, cancelling, listing ---------------------------------------------------------


def status_of(task: Task) -> str:
    return STATUSES.get(task.status, "failed")


def task_view(request: Request, task: Task) -> dict[str, Any]:
    """The Volcengine AI Server's task: ``{task_id, type, status, created, updated}`` and, once
    it has ended, ``image_url``, ``video_url``, ``text_result`` (or ``error``)."""
    images, videos = file_urls(request, task, "image/"), file_urls(request, task, "video/")
    out: dict[str, Any] = {
        "task_id": task.id,
        "type": TYPES.get(task.kind, task.kind),
        "status": status_of(task),
        "model": task.model,
        "user_id": task.label,
        "prompt": task.input if isinstance(task.input, str) else None,
        "created": iso(task.created_at),
        "updated": iso(task.updated_at),
        "image_url": images[0] if images else None,
        "video_url": videos[0] if videos else None,
        "text_result": output_text(task),
    }
    if len(images) > 1:
        out["image_urls"] = images
    if task.error:
        out["error"] = task.error.get("message")
        out["error_type"] = task.error.get("type")
    return out


@router.get("/task/result/{task_id}")
async def get_result(
    task_id: str, request: Request, key: ApiKey = Depends(caller), gw: Gateway = Depends(gateway)
) -> JSON:
    view = task_view(request, await gw.get(key, task_id))
    return envelope(view, MESSAGES[view["status"]])


@router.delete("/task/{task_id}")
async def cancel_task(
    task_id: str, request: Request, key: ApiKey = Depends(caller), gw: Gateway = Depends(gateway)
) -> JSON:
    """Cancel the task; it stays readable (an ended task is left as it is)."""
    task = await gw.cancel(key, task_id)
    message = "任务已取消" if task.status is Status.CANCELLED else "任务已结束"
    return envelope(task_view(request, task), message)


@router.get("/tasks")
async def list_tasks(
    request: Request,
    user_id: str | None = Query(None, max_length=200, description="the label given at submit"),
    task_type: Literal["image", "video", "text"] | None = Query(None, alias="type"),
    limit: int = Query(10, ge=1, le=100),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    key: ApiKey = Depends(caller),
    gw: Gateway = Depends(gateway),
) -> JSON:
    """The caller's tasks, newest first, with this ``user_id`` label and ``type``."""
    f = TaskFilter(
        tenant=None,
        kind=KINDS[task_type] if task_type else None,
        label=user_id,
        limit=offset + limit + 1,
    )
    found = (await gw.list_tasks(key, f))[offset:]
    page = [task_view(request, t) for t in found[:limit]]
    data = {"tasks": page, "limit": limit, "offset": offset, "has_more": len(found) > limit}
    return envelope(data, "查询成功")
