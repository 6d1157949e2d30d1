"""The AI Task System API (its Async and Enterprise editions), so its clients work unchanged
against taskgate.

- ``POST /v1/chat/completions`` with ``{prompt, model, conversation_id}``, as JSON or a form
  (urlencoded or multipart), answers ``{batch_id, conversation_id, message, task_ids}`` (and
  AI Task System (Async)'s ``task_id`` and ``status``). A comma-separated ``model`` fans out
  to one task per model (a batch; one model is a batch of one). The turn joins the
  conversation named, or a new one when none is (an unknown conversation is a 404), so each
  task is sent the earlier turns.
- ``POST /v1/images/generations`` with ``{prompt, model, conversation_id}`` answers
  ``{task_id, conversation_id, status, message}``. The image is a turn of the conversation
  named (or of a new one): its prompt and the stored image join the history.
- ``GET /v1/batches/{id}``, ``GET /v1/tasks/{id}`` and ``GET /v1/conversations/{id}/history``
  are the native API's (api/native.py), which carry AI Task System's batch fields.

``/v1/chat/completions`` is also OpenAI's path: api/openai_api.py owns the route and answers
bodies with ``messages`` itself; every other body comes here through
:func:`taskgate.api.openai_api.serve_other_chat`, registered when this module is imported.
Errors are FastAPI's ``{"detail": message}``, as AI Task System answered, with taskgate's error
object beside it under ``error``.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from starlette.responses import Response

from taskgate.api import openai_api
from taskgate.api.auth import caller, gateway, gateway_of
from taskgate.api.compat import detail_error, refused, route_class
from taskgate.api.responses import JSON
from taskgate.api.schemas import DetailError, errors
from taskgate.errors import BadRequest
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
    return (await gw.conversations.create(key, title)).id


# --- chat --------------------------------------------------------------------------------


async def chat_completions(request: Request) -> Response:
    """AI Task System's chat, for ``POST /v1/chat/completions`` bodies that are not OpenAI's."""
    try:
        key = await caller(request)
        return await _chat(gateway_of(request), key, await _prompt_body(request))
    except Exception as exc:
        return refused_here(exc)


def refused_here(exc: Exception) -> Response:
    return refused(detail_error, exc)


async def _prompt_body(request: Request) -> PromptIn:
    """The body as JSON, or as a form (AI Task System's web page posts forms)."""
    if "form" in request.headers.get("content-type", ""):
        form = await request.form()
        raw: Any = {k: v for k, v in form.items() if isinstance(v, str)}
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
        return PromptIn.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


async def _chat(gw: Gateway, key: ApiKey, body: PromptIn) -> Response:
    models = models_of(body.model)
    for model in models:  # refuse before a conversation is made
        gw.routing.route_for("chat", model)
    conversation_id = await conversation_for(gw, key, body)
    sub = Submission(
        kind="chat",
        model=models[0],
        input=body.prompt,
        params={},
        conversation_id=conversation_id,
    )
    batch, tasks = await gw.submit_batch(key, sub, models)
    reply = {
        "batch_id": batch.id,
        "conversation_id": conversation_id,
        "message": "Tasks dispatched successfully",
        "task_ids": [t.id for t in tasks],
        "task_id": tasks[0].id,
        "status": tasks[0].status.value,
    }
    return JSON(reply)


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
    )
    task, _ = await gw.submit(key, sub)
    reply = {
        "task_id": task.id,
        "conversation_id": conversation_id,
        "status": task.status.value,
        "message": "Task dispatched successfully",
    }
    return JSON(reply)
