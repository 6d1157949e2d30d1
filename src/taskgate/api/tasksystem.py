"""The AI Task System API (its Async and Enterprise editions, and the web page its gateway
served), so its clients work unchanged against taskgate.

- ``POST /v1/chat/completions`` with ``{prompt, model, conversation_id, mode}``, as JSON or a
  form (urlencoded or multipart, the page's attachments as ``files``), answers ``{batch_id,
  conversation_id, message, task_ids}`` (and AI Task System (Async)'s ``task_id`` and
  ``status``). A comma-separated ``model`` fans out to one task per model (a batch; one model
  is a batch of one); ``mode=image`` makes images instead. The turn joins the conversation
  named, or a new one when none is (an unknown conversation is a 404), so each task is sent
  the earlier turns. Attached images and videos are stored as the tenant's files and sent as
  parts of the user's message.
- ``POST /v1/images/generations`` with ``{prompt, model, conversation_id}`` answers
  ``{task_id, conversation_id, status, message}``. The image is a turn of the conversation
  named (or of a new one): its prompt and the stored image join the history.
- ``GET /files/{id}.{ext}``: an attachment, where the histories link it.
- ``GET /v1/batches/{id}``, ``GET /v1/tasks/{id}``, ``GET /v1/conversations`` and ``GET
  /v1/conversations/{id}/history`` are the native API's (api/native.py): the tasks and
  conversations made here (``api`` "tasksystem") answer there in AI Task System's shapes
  (api/tasksystem_shapes.py).

``/v1/chat/completions`` is also OpenAI's path: api/openai_api.py owns the route and answers
bodies with ``messages`` itself; every other body comes here through
:func:`taskgate.api.openai_api.serve_other_chat`, registered when this module is imported.
Errors are FastAPI's ``{"detail": message}``, as AI Task System answered, with taskgate's error
object beside it under ``error``.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.responses import Response

from taskgate.api import openai_api
from taskgate.api.auth import caller, gateway, gateway_of
from taskgate.api.compat import detail_error, refused, route_class, save_upload
from taskgate.api.native import download_headers
from taskgate.api.responses import JSON
from taskgate.api.schemas import DetailError, errors
from taskgate.api.tasksystem_shapes import TASKSYSTEM
from taskgate.errors import BadRequest
from taskgate.files import Files, clean_type
from taskgate.gateway import Gateway
from taskgate.models import ApiKey
from taskgate.submission import Submission

MAX_MODELS = 32  # as the native API's batches


router = APIRouter(
    tags=["AI Task System API"],
    route_class=route_class(detail_error),
    responses=errors(DetailError),
)


class PromptIn(BaseModel):
    prompt: str = Field(min_length=1, max_length=1_000_000)
    model: str = Field(min_length=1, max_length=2000)
    conversation_id: str | None = Field(None, max_length=40)


class ChatIn(PromptIn):
    """A chat: its prompt may be empty when files are sent; ``mode=image`` makes images."""

    prompt: str = Field(max_length=1_000_000)
    mode: Literal["text", "image"] = "text"


def models_of(value: str) -> list[str]:
    """AI Task System (Enterprise)'s fan-out: ``"gemini-2.5-flash, deepseek-r1:1.5b"`` is two
    models."""
    models = [m.strip() for m in value.split(",") if m.strip()]
    if not models or len(set(models)) != len(models) or len(models) > MAX_MODELS:
        raise BadRequest(
            f"model must name 1 to {MAX_MODELS} distinct models, comma-separated", field="model"
        )
    return models


async def conversation_for(gw: Gateway, key: ApiKey, body: PromptIn) -> str:
    """The conversation named (it must be the caller's), or a new one titled by the prompt."""
    if body.conversation_id:
        conversation, _ = await gw.conversations.get(key, body.conversation_id)
        return conversation.id
    title = body.prompt if len(body.prompt) <= 20 else body.prompt[:20] + "..."
    return (await gw.conversations.create(key, title, TASKSYSTEM)).id


# --- chat --------------------------------------------------------------------------------


async def chat_completions(request: Request) -> Response:
    """AI Task System's chat, for ``POST /v1/chat/completions`` bodies that are not OpenAI's."""
    try:
        key = await caller(request)
        body, uploads = await _chat_body(request)
        return await _chat(gateway_of(request), key, body, uploads)
    except Exception as exc:
        return refused_here(exc)


def refused_here(exc: Exception) -> Response:
    return refused(detail_error, exc)


async def _chat_body(request: Request) -> tuple[ChatIn, list[UploadFile]]:
    """The body as JSON, or as a form (AI Task System's web page posts multipart forms,
    with its attachments as ``files``), and the files sent."""
    uploads: list[UploadFile] = []
    if "form" in request.headers.get("content-type", ""):
        form = await request.form()
        raw: Any = {k: v for k, v in form.items() if isinstance(v, str)}
        uploads = [f for f in form.getlist("files") if isinstance(f, UploadFile) and sent(f)]
    else:
        try:
            raw = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise BadRequest("malformed JSON body") from None
    if not isinstance(raw, dict):
        raise BadRequest("the body must be a JSON object or a form")
    if raw.get("conversation_id") in ("", "null"):
        raw["conversation_id"] = None
    try:
        body = ChatIn.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
    if not body.prompt.strip() and not uploads:
        raise BadRequest("prompt must not be empty", field="prompt")
    return body, uploads


def sent(upload: UploadFile) -> bool:
    """Whether a form's file field holds a file (a form with none chosen sends an empty
    part without a name)."""
    return bool(upload.filename) or bool(upload.size)


async def _chat(gw: Gateway, key: ApiKey, body: ChatIn, uploads: list[UploadFile]) -> Response:
    models = models_of(body.model)
    kind = "image" if body.mode == "image" else "chat"
    if uploads and kind == "image":
        raise BadRequest("files are sent with mode=text only", field="files")
    for model in models:  # refuse before a file or a conversation is stored
        gw.routing.route_for(kind, model)
    parts = [media_part(i, u) for i, u in enumerate(uploads, 1)]
    async with gw.request_files.discarded_if_refused() as saved:
        for part, upload in zip(parts, uploads, strict=True):
            f = await save_upload(kept_files(gw), key, upload)
            saved.append(f.id)
            part[part["type"]] = {"file_id": f.id}
        sub = Submission(
            kind=kind,
            model=models[0],
            input=chat_input(body.prompt, parts),
            params={},
            conversation_id=await conversation_for(gw, key, body),
            api=TASKSYSTEM,
        )
        batch, tasks = await gw.submit_batch(key, sub, models)
    reply = {
        "batch_id": batch.id,
        "conversation_id": sub.conversation_id,
        "message": "Tasks dispatched successfully",
        "task_ids": [t.id for t in tasks],
        "task_id": tasks[0].id,
        "status": tasks[0].status.value,
    }
    return JSON(reply)


def media_part(number: int, upload: UploadFile) -> dict[str, Any]:
    """The chat part a file becomes, its file still to be named: images and videos reach
    the model (``image_url``, ``video_url``; providers/media.py inlines them); other files
    are refused, as no chat backend reads them."""
    content_type = clean_type(upload.content_type or "")
    for media in ("image", "video"):
        if content_type.startswith(media + "/"):
            return {"type": f"{media}_url"}
    raise BadRequest(
        f"file {number} is {content_type}: only images and videos can be sent to a model",
        field="files",
    )


def kept_files(gw: Gateway) -> Files:
    if gw.request_files.files is None:
        raise BadRequest("this server keeps no files", field="files")
    return gw.request_files.files


def chat_input(prompt: str, parts: list[dict[str, Any]]) -> Any:
    """A chat turn's input: the prompt, or with files one user message of parts."""
    if not parts:
        return prompt
    text = [{"type": "text", "text": prompt}] if prompt else []
    return {"messages": [{"role": "user", "content": text + parts}]}


openai_api.serve_other_chat(chat_completions, refused_here)


# --- images ------------------------------------------------------------------------------


@router.post("/v1/images/generations", summary="Image generation (AI Task System)")
async def images_generations(
    body: PromptIn, key: ApiKey = Depends(caller), gw: Gateway = Depends(gateway)
) -> JSON:
    """Queue an image task: ``{task_id, conversation_id, status, message}``; poll
    ``GET /v1/tasks/{task_id}`` (its ``result.files`` hold the image)."""
    gw.routing.route_for("image", body.model)
    conversation_id = await conversation_for(gw, key, body)
    sub = Submission(
        kind="image",
        model=body.model,
        input=body.prompt,
        params={},
        conversation_id=conversation_id,
        api=TASKSYSTEM,
    )
    task, _ = await gw.submit(key, sub)
    reply = {
        "task_id": task.id,
        "conversation_id": conversation_id,
        "status": task.status.value,
        "message": "Task dispatched successfully",
    }
    return JSON(reply)


# --- files -------------------------------------------------------------------------------


@router.get(
    "/files/{name}",
    summary="A stored file, at AI Task System's path",
    response_class=Response,
    responses={200: {"content": {"*/*": {}}, "description": "The file's bytes"}},
)
async def stored_file(name: str, request: Request, key: ApiKey = Depends(caller)) -> Response:
    """``/files/{id}.{ext}``: a file of the caller's tenant, as ``GET /v1/files/{id}``
    serves it. The histories of AI Task System's conversations link attachments here: its
    page shows a file as an image when its URL ends in an image's extension."""
    f, data = await request.app.state.files.open(name.partition(".")[0], key.scope)
    return Response(data, media_type=clean_type(f.content_type), headers=download_headers(f))
