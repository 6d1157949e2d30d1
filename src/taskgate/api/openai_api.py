"""The OpenAI API dialect, under ``/openai/v1``: point OpenAI's SDKs there
(``base_url="http://HOST:PORT/openai/v1"``, ``api_key`` a taskgate key).

Every call is a task like any other (queued at its priority, counted against its route's
capacity, retried and failed over, listed in ``GET /v1/tasks``); the handler holds the request
open until the task ends and answers in OpenAI's shape, with the task's id in the
``X-Taskgate-Task-Id`` header. Optional headers: ``X-Taskgate-Priority`` (``critical``,
``default``, ``low``), ``X-Taskgate-Queue-Timeout`` (seconds the task may wait for its first
start; 600 by default) and ``Idempotency-Key``. How long a caller is kept waiting, and what
happens when the client hangs up, is in api/openai_watch.py.

``POST /v1/chat/completions`` is shared with the AI Task System API (AI Task System's clients
send ``{prompt, model, conversation_id}`` there, as JSON or a form): a JSON body with
``messages`` is OpenAI's, anything else goes to the handler that API registers with
:func:`serve_other_chat` (until one does, it is a 400 that says so).

Chat completions skip FastAPI's routing (see api/fastpath.py and :data:`FAST_ROUTES`): they
are the dialect's hot path. Errors are always OpenAI's error object (see api/openai_wire.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from taskgate.api import openai_wire as wire
from taskgate.api.auth import KEY_NEEDED, caller, gateway_of
from taskgate.api.openai_watch import ChatStream, WaitEnded, Watch
from taskgate.api.responses import JSON
from taskgate.api.schemas import OpenAIError, errors
from taskgate.api.strict import StrictRoute, check_media_type
from taskgate.errors import ApiError
from taskgate.models import ApiKey, Status, Task
from taskgate.params import COMMON
from taskgate.submission import Submission

Handler = Callable[[Request], Awaitable[Response]]
PREFIX = "/openai/v1"
HEADERS_WITHIN = 5.0  # a stream's headers wait this long for the first token (or an error)
KEEPALIVE = 15.0  # seconds between SSE comments while a stream has nothing to send


class OpenAIRoute(StrictRoute):
    """A route whose refusals (bad key, schema, unknown model), and unexpected failures,
    come out in OpenAI's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return wire.refusal(exc)

        return answer


router = APIRouter(route_class=OpenAIRoute, tags=["OpenAI API"], responses=errors(OpenAIError))


# --- chat completions --------------------------------------------------------------------


class ChatCompletionIn(BaseModel):
    """OpenAI's chat completion request (documentation: the fast path reads the body)."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None


async def chat_completions(request: Request) -> Response:
    try:
        key = await caller(request)
        check_media_type(request)
        return await _chat(request, key, wire.json_object(await request.body()))
    except Exception as exc:
        return wire.refusal(exc)


async def _chat(request: Request, key: ApiKey, body: dict[str, Any]) -> Response:
    chat = wire.chat_request(body, request.headers)
    watch = Watch(gateway_of(request), key, request)
    response: Response | None = None
    try:
        task = await watch.submit(chat.submission)
        if chat.stream:
            response = await _stream(watch, ChatStream(task, chat.include_usage))
        else:
            response = _answer(await watch.ended(), wire.completion)
    except WaitEnded as ended:
        response = ended.answer
    finally:
        if not isinstance(response, EventStream):  # a stream closes the watch when it ends
            await watch.close()
    return response


async def _stream(watch: Watch, chat: ChatStream) -> Response:
    """Hold the headers until the first token or the end (so a task that fails at once gets
    its HTTP status), at most :data:`HEADERS_WITHIN`; then stream the rest."""
    first = await watch.next(HEADERS_WITHIN)
    while first is not None and first.get("type") not in ("progress", "finished"):
        first = await watch.next(HEADERS_WITHIN)
    if first is not None and first["type"] == "finished":
        task = await watch.final(first)
        if task.status is not Status.SUCCESS:
            return wire.task_failure(task)
    return EventStream(watch, _chunks(watch, chat, first))


async def _chunks(watch: Watch, chat: ChatStream, first: Any) -> AsyncIterator[bytes]:
    yield chat.opening()
    message = first
    while True:
        if message is None:
            yield b": keep-alive\n\n"
        elif message.get("type") == "finished":
            yield chat.closing(await watch.final(message))
            return
        elif piece := chat.on_event(message):
            yield piece
        try:
            message = await watch.next(KEEPALIVE)
        except WaitEnded as ended:
            yield b"data: " + ended.answer.body + b"\n\n" + wire.DONE
            return


class EventStream(StreamingResponse):
    """Server-sent chunks; the watch is closed however the stream ends (a client that hangs
    up mid-stream cancels the task)."""

    def __init__(self, watch: Watch, chunks: AsyncIterator[bytes]) -> None:
        task = watch.current
        headers = {"cache-control": "no-cache", "x-taskgate-task-id": task.id}
        super().__init__(chunks, media_type="text/event-stream", headers=headers)
        self.watch = watch

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.watch.close()


async def shared_chat_completions(request: Request) -> Response:
    """``POST /v1/chat/completions``: OpenAI's shape here, another dialect's elsewhere. A
    body that cannot be read (over ``max_body_bytes``) is nobody's yet: the other dialect,
    whose errors carry OpenAI's ``error`` object too, answers it."""
    try:
        body = await _openai_chat_body(request)
    except Exception as exc:
        return (_other_refusal[0] if _other_refusal else wire.refusal)(exc)
    if body is None:
        if _other_chat:
            return await _other_chat[0](request)
        return wire.error(
            400,
            "POST /v1/chat/completions takes OpenAI chat completions ({model, messages}); "
            f"or use the OpenAI API under {PREFIX}",
            param="messages",
        )
    try:
        return await _chat(request, await caller(request), body)
    except Exception as exc:
        return wire.refusal(exc)


async def _openai_chat_body(request: Request) -> dict[str, Any] | None:
    if "json" not in request.headers.get("content-type", "json"):
        return None
    try:
        body = wire.json_object(await request.body())
    except ApiError:
        return None
    return body if "messages" in body else None


_other_chat: list[Handler] = []
_other_refusal: list[Callable[[Exception], Response]] = []


def serve_other_chat(
    handler: Handler, refusal: Callable[[Exception], Response] = wire.refusal
) -> None:
    """Let another dialect answer ``POST /v1/chat/completions`` requests that are not
    OpenAI's (no ``messages``, or not JSON), and refuse in its shape those whose body cannot
    be read. The request's body can be read again."""
    _other_chat[:] = [handler]
    _other_refusal[:] = [refusal]


@router.post(
    f"{PREFIX}/chat/completions", summary="Chat completion (OpenAI)", openapi_extra=KEY_NEEDED
)
async def documented_chat(request: Request, body: ChatCompletionIn) -> Response:
    """OpenAI's chat completion, plain or ``stream: true`` (SSE ``chat.completion.chunk`` s
    token by token, then ``data: [DONE]``). Served by the fast path; this documents it."""
    return await chat_completions(request)


@router.post(
    "/v1/chat/completions",
    summary="Chat completion (OpenAI shape, or AI Task System's)",
    openapi_extra=KEY_NEEDED,
)
async def documented_shared_chat(request: Request) -> Response:
    """A body with ``messages`` is OpenAI's chat completion; others go to the AI Task System API."""
    return await shared_chat_completions(request)


FAST_ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", f"{PREFIX}/chat/completions"): chat_completions,
    ("POST", "/v1/chat/completions"): shared_chat_completions,
}


# --- images, audio, embeddings -------------------------------------------------------------


class ImageIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt: str
    model: str
    n: int | None = Field(None, ge=1, le=10)
    size: str | None = None
    response_format: Literal["url", "b64_json"] | None = None


@router.post(f"{PREFIX}/images/generations", summary="Image generation (OpenAI)")
async def images_generations(
    request: Request, body: ImageIn, key: ApiKey = Depends(caller)
) -> Response:
    """Images as taskgate URLs (``/v1/files/{id}``, absolute and signed: they download
    without a key until they expire) or, with ``response_format: b64_json``, inline."""
    sub, b64 = wire.image_request(body.model_dump(exclude_none=True), request.headers)
    links, base = gateway_of(request).file_links, str(request.base_url)
    return await _run(
        request, key, sub, lambda t: wire.images_reply(t, lambda f: links.url(f, base), b64)
    )


class EmbeddingIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    input: str | list[str] | list[int] | list[list[int]]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, le=COMMON["dimensions"][1])


@router.post(f"{PREFIX}/embeddings", summary="Embeddings (OpenAI)")
async def embeddings(
    request: Request, body: EmbeddingIn, key: ApiKey = Depends(caller)
) -> Response:
    """Embeddings of a string or a list of strings, as floats or base64 (float32)."""
    sub = wire.embedding_request(body.model_dump(exclude_none=True), request.headers)
    fmt = body.encoding_format
    return await _run(request, key, sub, lambda t: wire.embeddings_reply(t, fmt))


@router.post(f"{PREFIX}/audio/transcriptions", summary="Transcription (OpenAI)")
async def audio_transcriptions(
    request: Request,
    file: UploadFile = File(description="the audio"),
    model: str = Form(),
    language: str | None = Form(None),
    prompt: str | None = Form(None),
    response_format: Literal["json", "text", "srt", "verbose_json", "vtt"] = Form("json"),
    temperature: float | None = Form(None, ge=0, le=1, allow_inf_nan=False),
    key: ApiKey = Depends(caller),
) -> Response:
    """The upload is stored in taskgate's files (as ``POST /v1/files`` would), then
    transcribed by a ``transcription`` task that names it. A request refused (its model,
    its headers) stores nothing."""
    params = {"language": language, "prompt": prompt, "temperature": temperature}
    params = {k: v for k, v in params.items() if v is not None}
    params["response_format"] = response_format
    sub = wire.submission("transcription", model, None, params, request.headers)
    gateway_of(request).routing.route_for(sub.kind, sub.model)
    data = await file.read()
    content_type = file.content_type or "application/octet-stream"
    stored = await request.app.state.files.save(
        key.tenant, data, content_type, file.filename or "audio"
    )
    sub = dataclasses.replace(sub, input={"file": {"file_id": stored.id}})
    return await _run(
        request, key, sub, lambda t: wire.transcription_reply(t, response_format), [stored.id]
    )


async def _run(
    request: Request,
    key: ApiKey,
    sub: Submission,
    reply: Callable[[Task], Any],
    uploads: Sequence[str] = (),
) -> Response:
    """Submit, wait for the end, answer with ``reply(task)`` or the failure. The files
    ``uploads`` names were stored for this request: a refused submission removes them."""
    watch = Watch(gateway_of(request), key, request)
    try:
        async with gateway_of(request).request_files.discarded_if_refused() as stored:
            stored += uploads
            await watch.submit(sub)
        return _answer(await watch.ended(), reply)
    except WaitEnded as ended:
        return ended.answer
    finally:
        await watch.close()


def _answer(task: Task, reply: Callable[[Task], Any]) -> Response:
    if task.status is not Status.SUCCESS:
        return wire.task_failure(task)
    headers = {"x-taskgate-task-id": task.id}
    body = reply(task)
    if isinstance(body, tuple):  # (content, media type): a transcript as text
        content, media_type = body
        if media_type != "application/json":
            return PlainTextResponse(content, headers=headers)
        body = content
    return JSON(body, headers=headers)


# --- models --------------------------------------------------------------------------------


@router.get(f"{PREFIX}/models", summary="Models (OpenAI)")
async def list_models(request: Request, _: ApiKey = Depends(caller)) -> JSON:
    """Every model name a client can send: declared and discovered names (a route's globs,
    such as ``gpt-4o*``, are no model a client can ask for; ``/v1/models`` lists them)."""
    models = [m for m in gateway_of(request).routing.models() if m["source"] != "glob"]
    return JSON({"object": "list", "data": [wire.model_entry(m) for m in models]})


@router.get(PREFIX + "/models/{model:path}", summary="One model (OpenAI)")
async def retrieve_model(model: str, request: Request, _: ApiKey = Depends(caller)) -> JSON:
    route = gateway_of(request).routing.resolve(model)
    if route is None:
        return wire.error(
            404, f"The model '{model}' does not exist", param="model", code="model_not_found"
        )
    return JSON(wire.model_entry({"id": model, "object": "model", "owned_by": route.name}))


@router.api_route(
    PREFIX + "/{path:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def unknown(path: str, request: Request) -> JSON:
    """Anything else under the prefix: OpenAI's 404, not taskgate's."""
    return wire.error(404, f"Invalid URL ({request.method} {PREFIX}/{path})", code="unknown_url")
