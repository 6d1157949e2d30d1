"""taskgate's own API: ``/v1/tasks``, ``/v1/files`` and ``/v1/keys``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, File, Form, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from taskgate.api import schemas as out
from taskgate.api import tasksystem_shapes
from taskgate.api.auth import KEY_NEEDED, KeyRing, admin, caller, gateway, gateway_of, has_key
from taskgate.api.compat import base_url, save_upload, shape_asked, shape_of
from taskgate.api.responses import JSON
from taskgate.api.schemas import declare
from taskgate.api.strict import StrictRoute, check_media_type, json_body
from taskgate.api.tasksystem_shapes import TASKSYSTEM
from taskgate.config import Limits
from taskgate.errors import Forbidden, NotFound
from taskgate.files import FileLinks, clean_type, file_json
from taskgate.gateway import Gateway
from taskgate.models import ApiKey, Conversation, Message, Priority, Status, StoredFile
from taskgate.store import TaskFilter
from taskgate.submission import MAX_QUEUE_TIMEOUT, MAX_RUN_TIMEOUT, Submission
from taskgate.views import iso, keyset_page

router = APIRouter(route_class=StrictRoute, responses=out.ERRORS)

SSE_TICK = 1.0  # seconds between position updates of a waiting task


class Body(BaseModel):
    """A request body: no fields beyond those declared, numbers finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class WorkIn(Body):
    """What a task and a batch both carry."""

    kind: str = Field(
        min_length=1, max_length=32, description="chat, image, ... or a plugin's kind"
    )
    input: Any = Field(None, description="the model input: a prompt, messages, ...")
    params: dict[str, Any] = Field(default_factory=dict, description="parameters for the model")
    priority: Literal["critical", "default", "low"] = "default"
    timeout: float | None = Field(
        None, gt=0, le=MAX_RUN_TIMEOUT, description="run timeout, seconds"
    )
    queue_timeout: float | None = Field(
        None,
        gt=0,
        le=MAX_QUEUE_TIMEOUT,
        description="longest wait in the queue before TIMEOUT, seconds",
    )
    conversation_id: str | None = Field(
        None, max_length=40, description="a chat turn: the conversation's earlier turns are sent"
    )
    webhook_url: str | None = Field(
        None,
        min_length=1,
        max_length=2000,
        description="POSTed a signed event when the task (or the whole batch) ends",
    )

    def submission(self, model: str, idempotency_key: str | None = None) -> Submission:
        return Submission(
            kind=self.kind,
            model=model,
            input=self.input,
            params=self.params,
            priority=Priority.parse(self.priority),
            timeout=self.timeout,
            queue_timeout=self.queue_timeout,
            idempotency_key=idempotency_key,
            conversation_id=self.conversation_id,
            webhook_url=self.webhook_url,
        )


class TaskIn(WorkIn):
    model: str = Field(min_length=1, max_length=200)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)


class BatchIn(WorkIn):
    models: list[str] = Field(min_length=1, max_length=32, description="one task per model")
    first_wins: bool = Field(False, description="the first success cancels the other tasks")


class LimitsIn(Body):
    """A key's limits (null: none); a PATCH changes only the ones it names."""

    requests_per_minute: int | None = Field(
        None, ge=1, le=2_147_483_647, description="tasks accepted per minute"
    )
    tokens_per_day: int | None = Field(
        None, ge=1, le=10**15, description="input and output tokens per UTC day"
    )
    cost_per_month: float | None = Field(
        None, gt=0, le=1e15, description="cost (by the configured prices) per UTC month"
    )

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class KeyIn(Body):
    tenant: str = Field(min_length=1, max_length=64)
    name: str = Field("", max_length=200)
    admin: bool = False
    limits: LimitsIn | None = None


class KeyPatch(Body):
    limits: LimitsIn


# POST /v1/tasks is served by the fast path (api/fastpath.py; FAST_ROUTES below): requests
# reach submit_task_fast, which calls submit_task itself. The router's entry documents it.
@router.post(
    "/v1/tasks",
    status_code=202,
    tags=["tasks"],
    responses={
        **declare(202, out.TaskOut, "Queued"),
        **declare(200, out.TaskOut, "The earlier task of this idempotency key"),
    },
)
async def submit_task(
    body: TaskIn,
    key: ApiKey = Depends(caller),
    gw: Gateway = Depends(gateway),
    idempotency_header: str | None = Header(None, alias="Idempotency-Key"),
) -> JSON:
    """Queue a task. Returns 202 with the task, or 200 with the earlier task when the same
    idempotency key and body were sent before."""
    sub = body.submission(body.model, body.idempotency_key or idempotency_header)
    task, created = await gw.submit(key, sub)
    return JSON(gw.task_json(task), status_code=202 if created else 200)


async def submit_task_fast(request: Request) -> JSON:
    """``submit_task`` without the router's dependency solving (see api/fastpath.py)."""
    key = await caller(request)
    check_media_type(request)
    try:
        body = TaskIn.model_validate(json_body(await request.body()))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    gw: Gateway = request.app.state.gateway
    return await submit_task(body, key, gw, request.headers.get("idempotency-key"))


FAST_ROUTES = {("POST", "/v1/tasks"): submit_task_fast}


API_SHAPE = Query(
    None,
    description="the shape of the answer: taskgate or tasksystem (AI Task System's); by "
    "default that of the API that made the record",
)


@router.get(
    "/v1/tasks/{task_id}",
    tags=["tasks"],
    responses=declare(200, out.TaskView | out.TaskSystemTask, "The task"),  # type: ignore[arg-type]
)
async def get_task(
    task_id: str,
    request: Request,
    wait: float = Query(0, ge=0, le=300, description="long-poll up to this many seconds"),
    api: str | None = API_SHAPE,
    key: ApiKey = Depends(caller),
    gw: Gateway = Depends(gateway),
) -> JSON:
    """A task with its result, its attempts and, while it waits, its position in its queue.

    A task submitted through AI Task System's API answers in its shape (``task_id``,
    ``status`` as its numbers: 0 waiting, 3 running, 1 succeeded, 2 ended otherwise,
    ``prompt``, ``response_text``, ...); ``?api=taskgate`` or ``?api=tasksystem`` asks for
    either shape of any task."""
    asked = shape_asked(api)
    task = await gw.wait(key, task_id, wait) if wait else await gw.get(key, task_id)
    if (asked or shape_of(task.api)) == TASKSYSTEM:
        return JSON(tasksystem_shapes.task_json(gw.signed(task), base_url(request)))
    return JSON(await gw.view(task))


@router.get(
    "/v1/tasks/{task_id}/logs", tags=["tasks"], responses=declare(200, out.TaskLogOut, "Its log")
)
async def task_logs(
    task_id: str, key: ApiKey = Depends(caller), gw: Gateway = Depends(gateway)
) -> JSON:
    """The task's own log, oldest first (its newest 200 entries): submitted, each attempt's
    start on an instance and its ending with the backend's message, retry decisions,
    backend jobs (their polls summed up), webhook tries, and the ending."""
    task = await gw.get(key, task_id)
    return JSON({"task_id": task.id, "entries": await gw.timeline(task)})


@router.get("/v1/tasks", tags=["tasks"], responses=declare(200, out.TaskPage, "A page of tasks"))
async def list_tasks(
    status: list[Status] = Query(default_factory=list),
    kind: str | None = None,
    model: str | None = None,
    route: str | None = Query(None, max_length=100, description="the route it runs on"),
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    cursor: str | None = Query(None, description="next_cursor of the previous page"),
    limit: int = Query(50, ge=1, le=500),
    key: ApiKey = Depends(caller),
    gw: Gateway = Depends(gateway),
) -> JSON:
    """Tasks of the caller's tenant, newest first."""
    f = TaskFilter(
        tenant=None,
        statuses=tuple(status),
        kind=kind,
        model=model,
        route=route,
        created_after=created_after.timestamp() if created_after else None,
        created_before=created_before.timestamp() if created_before else None,
        before_id=cursor,
        limit=limit + 1,
    )
    page, next_cursor = keyset_page(await gw.list_tasks(key, f), limit)
    return JSON({"data": [gw.task_json(t) for t in page], "next_cursor": next_cursor})


@router.delete(
    "/v1/tasks/{task_id}",
    tags=["tasks"],
    responses=declare(200, out.TaskView, "The task, as it is now"),
)
async def cancel_task(
    task_id: str, key: ApiKey = Depends(caller), gw: Gateway = Depends(gateway)
) -> JSON:
    """Cancel a queued or running task (a running call is stopped). An ended task is
    returned unchanged."""
    task = await gw.cancel(key, task_id)
    return JSON(await gw.view(task, history=False))


# --- conversations ---------------------------------------------------------------------------


class ConversationIn(Body):
    title: str = Field("", max_length=200)


@router.post(
    "/v1/conversations",
    status_code=201,
    tags=["conversations"],
    responses=declare(201, out.ConversationOut, "Started"),
)
async def create_conversation(
    body: ConversationIn | None = None,
    key: ApiKey = Depends(caller),
    gw: Gateway = Depends(gateway),
) -> JSON:
    """Start a conversation; chat tasks and batches name it with ``conversation_id``."""
    c = await gw.conversations.create(key, body.title if body else "")
    return JSON(conversation_json(c, []), status_code=201)


@router.get(
    "/v1/conversations",
    tags=["conversations"],
    responses=declare(200, out.ConversationPage, "A page of conversations"),
)
async def list_conversations(
    cursor: str | None = Query(None, description="next_cursor of the previous page"),
    limit: int = Query(50, ge=1, le=500),
    api: str | None = Query(
        None, description="taskgate or tasksystem: only that API's part of the answer"
    ),
    key: ApiKey = Depends(caller),
    gw: Gateway = Depends(gateway),
) -> JSON:
    """The tenant's conversations, the newest first (without their messages): ``data`` and
    ``next_cursor``. Beside them, ``conversations`` lists those started through AI Task
    System's API as its clients read them (``conversation_id``, ``title``, ``modified``),
    the latest changed first, up to ``limit``. ``?api=taskgate`` or ``?api=tasksystem``
    answers only that part."""
    asked = shape_asked(api)
    out: dict[str, Any] = {}
    if asked != TASKSYSTEM:
        found = await gw.conversations.page(key, cursor, limit + 1)
        page, next_cursor = keyset_page(found, limit)
        out |= {"data": [conversation_json(c) for c in page], "next_cursor": next_cursor}
    if asked != "taskgate":
        latest = await gw.conversations.latest(key, TASKSYSTEM, limit)
        out["conversations"] = [tasksystem_shapes.conversation_entry(c) for c in latest]
    return JSON(out)


@router.get(
    "/v1/conversations/{conversation_id}",
    tags=["conversations"],
    responses=declare(200, out.ConversationOut, "The conversation"),
)
async def get_conversation(
    conversation_id: str, key: ApiKey = Depends(caller), gw: Gateway = Depends(gateway)
) -> JSON:
    """A conversation with its turns in order: each user prompt, then each model's answer."""
    c, turns = await gw.conversations.get(key, conversation_id)
    return JSON(conversation_json(c, turns, gw.file_links))


@router.get(
    "/v1/conversations/{conversation_id}/history",
    tags=["conversations"],
    responses=declare(200, out.HistoryOut | out.TaskSystemHistory, "Its turns"),  # type: ignore[arg-type]
)
async def conversation_history(
    conversation_id: str,
    request: Request,
    api: str | None = API_SHAPE,
    key: ApiKey = Depends(caller),
    gw: Gateway = Depends(gateway),
) -> JSON:
    """The turns in order: ``{conversation_id, history}``.

    A conversation started through AI Task System's API answers as its server did: a list
    of messages, task by task (the prompt as a ``user`` message with the URLs of its
    ``files``, then the model's answer, or a placeholder with ``is_loading`` while it runs;
    a failed task not at all). ``?api=taskgate`` or ``?api=tasksystem`` asks for either
    shape of any conversation."""
    asked = shape_asked(api)
    c, turns = await gw.conversations.get(key, conversation_id)
    if (asked or shape_of(c.api)) == TASKSYSTEM:
        base = base_url(request)
        return JSON(await tasksystem_shapes.conversation_history(gw, key, c, turns, base))
    history = [message_json(m, gw.file_links) for m in turns]
    return JSON({"conversation_id": c.id, "history": history})


@router.delete(
    "/v1/conversations/{conversation_id}",
    tags=["conversations"],
    responses=declare(200, out.Deleted, "Deleted"),
)
async def delete_conversation(
    conversation_id: str, key: ApiKey = Depends(caller), gw: Gateway = Depends(gateway)
) -> JSON:
    """Delete a conversation and its turns (its tasks remain)."""
    await gw.conversations.delete(key, conversation_id)
    return JSON({"id": conversation_id, "deleted": True})


def conversation_json(
    c: Conversation, turns: list[Message] | None = None, links: FileLinks | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": c.id,
        "title": c.title,
        "created_at": iso(c.created_at),
        "updated_at": iso(c.updated_at),
    }
    if turns is not None:
        out["messages"] = [message_json(m, links) for m in turns]
    return out


def message_json(m: Message, links: FileLinks | None) -> dict[str, Any]:
    """A turn; an answer that made files (``{"files": [{id, url}]}``) links them signed."""
    return {
        "role": m.role,
        "content": links.result(m.content) if links else m.content,
        "model": m.model,
        "task_id": m.task_id,
        "created_at": iso(m.created_at),
    }


# --- batches ---------------------------------------------------------------------------------


@router.post(
    "/v1/batches", status_code=202, tags=["batches"], responses=declare(202, out.BatchOut, "Queued")
)
async def submit_batch(
    body: BatchIn, key: ApiKey = Depends(caller), gw: Gateway = Depends(gateway)
) -> JSON:
    """Fan one request out to several models: a task per model, accepted together."""
    batch, tasks = await gw.submit_batch(
        key, body.submission(body.models[0]), body.models, body.first_wins
    )
    return JSON(gw.batch_json(batch, tasks), status_code=202)


@router.get(
    "/v1/batches/{batch_id}", tags=["batches"], responses=declare(200, out.BatchOut, "The batch")
)
async def get_batch(
    batch_id: str,
    request: Request,
    wait: float = Query(0, ge=0, le=300, description="long-poll until every task has ended"),
    key: ApiKey = Depends(caller),
    gw: Gateway = Depends(gateway),
) -> JSON:
    """A batch: its aggregate status and a result per model, with the fields AI Task
    System's clients read (``user_prompt``, ``results[{task_id, model_name, status,
    response_text, error_msg, cost_time}]``, ``status`` there being its numbers)."""
    found = await gw.wait_batch(key, batch_id, wait) if wait else await gw.get_batch(key, batch_id)
    return JSON(await gw.batch_view(*found, base=base_url(request)))


@router.delete(
    "/v1/batches/{batch_id}",
    tags=["batches"],
    responses=declare(200, out.BatchOut, "The batch, as it is now"),
)
async def cancel_batch(
    batch_id: str, key: ApiKey = Depends(caller), gw: Gateway = Depends(gateway)
) -> JSON:
    """Cancel every task of the batch that has not ended."""
    return JSON(gw.batch_json(*await gw.cancel_batch(key, batch_id)))


@router.get(
    "/v1/tasks/{task_id}/events",
    tags=["tasks"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "Its events"}},
)
async def task_events(
    task_id: str, key: ApiKey = Depends(caller), gw: Gateway = Depends(gateway)
) -> StreamingResponse:
    """Server-sent events: queued, position, started, progress, retrying, finished."""
    await gw.get(key, task_id)  # 404 before the stream starts
    return StreamingResponse(event_stream(gw, key, task_id), media_type="text/event-stream")


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def event_stream(gw: Gateway, key: ApiKey, task_id: str) -> AsyncIterator[bytes]:
    async with gw.events.subscribe(f"task:{task_id}") as sub:
        task = await gw.get(key, task_id)
        view = await gw.view(task, history=False)
        if task.status is Status.PENDING:
            yield _sse("queued", view)
        elif not task.terminal:  # running already: as the worker's "started" event says it
            yield _sse("started", {**view, "attempt": task.attempts, "instance": task.instance})
        position = view.get("position")
        while not task.terminal:
            message = await sub.get(SSE_TICK)
            if message is None or message["type"] in ("finished", "retrying", "started"):
                if message is not None and message["type"] != "finished":
                    yield _sse(message["type"], message)
                task = await gw.get(key, task_id)
                if task.status is Status.PENDING:
                    now = await gw.store.tasks.position(task)
                    if now != position:
                        position = now
                        yield _sse("position", {"task_id": task_id, "position": now})
            else:
                yield _sse(message["type"], message)
        yield _sse("finished", await gw.view(task))


# --- webhooks --------------------------------------------------------------------------------


@router.get(
    "/v1/webhooks/secret", tags=["webhooks"], responses=declare(200, out.SecretOut, "The secret")
)
async def webhook_secret(key: ApiKey = Depends(caller), gw: Gateway = Depends(gateway)) -> JSON:
    """The secret that signs the tenant's webhooks: ``X-Taskgate-Signature`` is
    ``v1=`` + hex HMAC-SHA256 of ``"{X-Taskgate-Timestamp}.{body}"`` under it."""
    return JSON({"secret": await gw.webhooks.secret(key)})


@router.post(
    "/v1/webhooks/secret/rotate",
    tags=["webhooks"],
    responses=declare(200, out.SecretOut, "The new secret"),
)
async def rotate_webhook_secret(
    key: ApiKey = Depends(caller), gw: Gateway = Depends(gateway)
) -> JSON:
    """Replace the tenant's webhook secret; the next attempt of every delivery uses it."""
    return JSON({"secret": await gw.webhooks.secret(key, rotate=True)})


# --- models ----------------------------------------------------------------------------------


@router.get("/v1/models", tags=["models"], responses=declare(200, out.ModelList, "The models"))
async def list_models(_: ApiKey = Depends(caller), gw: Gateway = Depends(gateway)) -> JSON:
    """The model names taskgate routes, OpenAI-style: each route's declared names and globs
    (``source``: ``declared``, ``glob``) and the names its backends list (``discovered``);
    ``owned_by`` is the route."""
    return JSON({"object": "list", "data": gw.routing.models()})


# --- files -----------------------------------------------------------------------------------


@router.post(
    "/v1/files", status_code=201, tags=["files"], responses=declare(201, out.FileOut, "Stored")
)
async def upload_file(
    request: Request,
    file: UploadFile = File(description="the file's bytes"),
    purpose: str = Form("input"),
    key: ApiKey = Depends(caller),
) -> JSON:
    """Store a file of the caller's tenant; tasks reference it as ``{"file_id": ...}``.
    Bodies over ``max_body_bytes`` (100 MB by default) are refused with 413."""
    f = await save_upload(request.app.state.files, key, file)
    return JSON(
        {
            **file_json(f),
            "url": gateway_of(request).file_links.path(f.id),
            "object": "file",
            "bytes": f.size,
            "filename": f.name,
            "purpose": purpose,
            "created_at": int(f.created_at),
        },
        status_code=201,
    )


@router.get(
    "/v1/files/{file_id}",
    tags=["files"],
    response_class=Response,
    responses={200: {"content": {"*/*": {}}, "description": "The file's bytes"}},
    openapi_extra=KEY_NEEDED,  # unless the link is signed: the key is checked in the body
)
async def download_file(
    file_id: str,
    request: Request,
    expires: str | None = Query(None, description="of a signed link: until when, Unix seconds"),
    signature: str | None = Query(None, description="of a signed link: its signature"),
) -> Response:
    """A stored file (a task's output or an upload): by a signed link (``expires`` and
    ``signature``, as the APIs' answers give it; no key needed, 403 once expired or if
    altered), or of the caller's tenant with a key. A client that sends a key with a link
    gone bad (expired, altered) reads the file as with the key alone."""
    if expires is None and signature is None:
        tenant = (await caller(request)).scope
    else:
        tenant = None  # the signature names the file: whoever holds the link may read it
        try:
            gateway_of(request).file_links.check(file_id, expires, signature)
        except Forbidden:
            if not has_key(request):
                raise
            tenant = (await caller(request)).scope  # the link has gone bad: the key decides
    f, data = await request.app.state.files.open(file_id, tenant)
    return Response(data, media_type=clean_type(f.content_type), headers=download_headers(f))


# Shown in a browser tab rather than saved: media a browser plays without running anything.
# Everything else (HTML, SVG, PDF, scripts...) is sent as an attachment: a file a tenant
# uploaded must never run as a page of taskgate's origin.
INLINE_TYPES = re.compile(r"(image/(png|jpeg|gif|webp|avif|bmp)|audio/[\w.+-]+|video/[\w.+-]+)")


def download_headers(f: StoredFile) -> dict[str, str]:
    """Headers that keep a stored file inert in a browser: its type is not sniffed, it runs
    no script and loads nothing, and only plain images, audio and video show inline."""
    how = "inline" if INLINE_TYPES.fullmatch(clean_type(f.content_type)) else "attachment"
    return {
        "content-disposition": f'{how}; filename="{re.sub(r"[^A-Za-z0-9._-]", "_", f.name)}"',
        "x-content-type-options": "nosniff",
        "content-security-policy": "default-src 'none'; sandbox",
    }


# --- keys (admin) ------------------------------------------------------------------------


async def keyring(request: Request) -> KeyRing:
    ring: KeyRing = request.app.state.keys
    return ring


LIMITS = tuple(Limits.model_fields)


def key_json(k: ApiKey) -> dict[str, Any]:
    out = {n: v for n, v in k.as_dict().items() if n not in LIMITS}
    limits = {n: getattr(k, n) for n in LIMITS}
    return {
        **out,
        "created_at": iso(k.created_at),
        "revoked_at": iso(k.revoked_at),
        "limits": limits,
    }


@router.post(
    "/v1/keys", status_code=201, tags=["keys"], responses=declare(201, out.KeyCreated, "Created")
)
async def create_key(
    body: KeyIn, _: ApiKey = Depends(admin), gw: Gateway = Depends(gateway)
) -> JSON:
    """Create a key, with its limits if given. Its secret is in this response only."""
    limits = Limits(**body.limits.changes()) if body.limits else None
    key, secret = await gw.store.keys.create(body.tenant, body.name, body.admin, limits)
    return JSON({**key_json(key), "key": secret}, status_code=201)


@router.patch(
    "/v1/keys/{key_id}", tags=["keys"], responses=declare(200, out.KeyOut, "The key, changed")
)
async def change_key(
    key_id: str, body: KeyPatch, _: ApiKey = Depends(admin), ring: KeyRing = Depends(keyring)
) -> JSON:
    """Change a key's limits: those named (null lifts one); the others stay. Every gateway
    holds the key to them at once (within ``auth_cache_seconds`` if the events channel
    is down)."""
    key = await ring.set_limits(key_id, body.limits.changes())
    if key is None:
        raise NotFound(f"no active key {key_id!r}")
    return JSON(key_json(key))


@router.get("/v1/keys", tags=["keys"], responses=declare(200, out.KeyList, "The keys"))
async def list_keys(
    tenant: str | None = None, _: ApiKey = Depends(admin), gw: Gateway = Depends(gateway)
) -> JSON:
    return JSON({"data": [key_json(k) for k in await gw.store.keys.find(tenant)]})


@router.delete("/v1/keys/{key_id}", tags=["keys"], responses=declare(200, out.Revoked, "Revoked"))
async def revoke_key(
    key_id: str,
    _: ApiKey = Depends(admin),
    ring: KeyRing = Depends(keyring),
) -> JSON:
    if not await ring.revoke(key_id):
        raise NotFound(f"no active key {key_id!r}")
    return JSON({"id": key_id, "revoked": True})
