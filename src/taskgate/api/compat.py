"""What the compatible APIs' routers (the AIFlow API in api/aiflow.py, the Volcengine AI Server
API in api/volcengine.py, the AI Task System API in api/tasksystem.py) share: each answers
refusals in its own API's error shape, reads JSON bodies strictly (as the OpenAI API does too),
reads JSON fields of forms, and turns a task's stored files into absolute, signed URLs. None
of this touches tasks: the Gateway does.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.responses import Response

from taskgate.api.auth import gateway_of
from taskgate.api.responses import JSON, STATUS_TYPES, as_api_error, error_headers
from taskgate.api.strict import StrictRoute, malformed_message
from taskgate.errors import BadRequest
from taskgate.files import Files
from taskgate.models import ApiKey, StoredFile, Task

# (HTTP status, message, taskgate's error object) -> the dialect's error response
Render = Callable[[int, str, dict[str, Any]], Response]
Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def refusal(exc: Exception) -> tuple[int, str, dict[str, Any]]:
    """A refused request (bad key, bad body, unknown model or id; or an unexpected failure)
    as status, message and taskgate's error object. Schema errors are 400 here: these
    systems' clients know no 422."""
    if isinstance(exc, RequestValidationError):
        if (message := malformed_message(exc)) is not None:
            return 400, message, {"type": "bad_request", "message": message, "field": "body"}
        problems = [_describe(e) for e in exc.errors()]
        message = "; ".join(problems) or "invalid request"
        return 400, message, {"type": "invalid_request", "message": message}
    if isinstance(exc, HTTPException):
        message = str(exc.detail)
        type_ = STATUS_TYPES.get(exc.status_code, "error")
        return exc.status_code, message, {"type": type_, "message": message}
    error = as_api_error(exc)
    return error.status_code, error.message, error.as_dict()


def _describe(error: Any) -> str:
    # the field and what is wrong with it, never the value sent (it may hold a secret)
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
    return f"{where}: {error.get('msg', 'invalid')}"


def route_class(render: Render) -> type[APIRoute]:
    """An APIRoute whose refusals, including the key check and schema validation that
    FastAPI runs before the endpoint, come out through ``render``."""
    return answering_route(lambda _, exc: refused(render, exc))


def answering_route(answer: Callable[[Request, Exception], Response]) -> type[APIRoute]:
    """An APIRoute whose refusals are answered by ``answer`` (for a dialect whose errors
    need more than status, message and taskgate's error object, such as AIFlow's codes)."""

    class CompatRoute(StrictRoute):
        def get_route_handler(self) -> Handler:
            handler = super().get_route_handler()

            async def answering(request: Request) -> Response:
                try:
                    return await handler(request)
                except Exception as exc:
                    return answer(request, exc)

            return answering

    return CompatRoute


def refused(render: Render, exc: Exception) -> Response:
    """The answer to a request that raised ``exc``, in a dialect's shape (``render``)."""
    response = render(*refusal(exc))
    response.headers.update(error_headers(exc))
    return response


def detail_error(status: int, message: str, error: dict[str, Any]) -> Response:
    """A refusal as AIFlow and AI Task System (FastAPI apps) answered: ``detail``, plus
    taskgate's ``error`` object."""
    return JSON({"detail": message, "error": error}, status_code=status)


SHAPES = ("taskgate", "tasksystem")  # the values of ``?api=`` where two APIs share a path


def shape_asked(value: str | None) -> str | None:
    """The shape a client asked for with ``?api=`` on a path two APIs share (None: none
    asked); another value is a 400."""
    if value is not None and value not in SHAPES:
        raise BadRequest("api must be taskgate or tasksystem", field="api")
    return value


def shape_of(origin: str | None) -> str:
    """The shape a record answers in by default: that of the API that made it (taskgate's
    own for the APIs without a shape of their own on these paths)."""
    return origin if origin in SHAPES else "taskgate"


def base_url(request: Request) -> str:
    """The server's URL as the client reached it, without a trailing slash."""
    return str(request.base_url).rstrip("/")


async def save_upload(files: Files, key: ApiKey, upload: UploadFile) -> StoredFile:
    """A multipart upload stored as a file of the caller's tenant (every API's uploads)."""
    content_type = upload.content_type or "application/octet-stream"
    data = await upload.read()
    return await files.save(key.tenant, data, content_type, upload.filename or "upload")


def json_field(name: str, raw: str | None, default: Any = None) -> Any:
    """A form field that carries JSON (AIFlow's multipart form); its text is never echoed."""
    if raw is None or not raw.strip():
        return default
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest(f"form field {name!r} must be a JSON string", field=name) from None


def file_urls(request: Request, task: Task, media: str = "") -> list[str]:
    """Absolute, signed URLs of the task's stored output files (``/v1/files/{id}?expires=
    ...&signature=...``: they download without a key until they expire; see
    taskgate.files.signing), those whose content type starts with ``media`` when given."""
    files = task.result.get("files") if isinstance(task.result, dict) else None
    links, base = gateway_of(request).file_links, str(request.base_url)
    return [
        links.url(f, base)
        for f in files or []
        if isinstance(f, dict) and str(f.get("content_type", "")).startswith(media)
    ]


def with_absolute_urls(request: Request, result: Any) -> Any:
    """The stored result with each file's ``url`` made absolute and signed."""
    return gateway_of(request).file_links.result(result, str(request.base_url))
