"""A fake Volcengine Ark server (``/api/v3``) over real HTTP on 127.0.0.1.

    async with FakeArk(key="ark-test") as fake:           # in the test's event loop
        url = fake.base_url                                # http://127.0.0.1:PORT/api/v3
    with in_thread(FakeArk(key="ark-test")) as fake:      # its own loop, for sync tests

It checks the bearer key (401 ``AuthenticationError``) and every request's shape (400
``InvalidParameter`` / ``MissingParameter``, 404 for a model it does not serve), all with Ark's
error body ``{"error": {"code", "message", "param", "type"}}``, and records every API request
in ``fake.requests``.

- ``POST /chat/completions``: OpenAI's protocol, as the fake OpenAI server answers it
  (``doubao-seed-1-6*`` and ``deepseek-r1*`` also reason).
- ``POST /images/generations``: Seedream (``doubao-seedream-*``); sizes checked as Ark does
  (:data:`SEEDREAM_3_SIZES`); images are :func:`tests.fakes.shelf.fake_image` of the prompt,
  as URLs on the fake (``fake.shelf``) or base64.
- ``POST /contents/generations/tasks``: Seedance (``doubao-seedance-*``); content and text
  commands (``--ratio 16:9``) checked; the task is kept in ``fake.tasks``. It stays ``queued``
  until first polled, then ``running`` until it has been polled ``fake.polls_to_finish`` times
  (None: never by itself) or ``fake.finish(task_id)`` is called (from any thread); then it
  ``succeeded`` with a ``video_url`` on the fake serving :func:`fake_video` as video/mp4, or
  ``failed`` if scripted so.
- ``GET /contents/generations/tasks/{id}``: the task as Ark shows it; 404 when unknown.
- ``DELETE /contents/generations/tasks/{id}``: a queued task is cancelled (and its id added
  to ``fake.cancelled``); a finished one is deleted; a running one answers 400 (the real
  code for that case is not documented; this fake says ``InvalidAction.TaskRunning``).

The state lives in this object, not in any connection, so a taskgate server process can
stop and start again while a task runs here. ``fake.script(*modes)`` queues behaviours, one
taken by each API request that follows (creating, polling and deleting tasks included):

    rate_limit      429 RateLimitExceeded.EndpointRPMExceeded with Retry-After: 1
    overloaded      429 ServerOverloaded
    server_error    500 InternalServiceError
    sensitive       400 InputTextSensitiveContentDetected
    garbage         200 with a body that is not JSON
    revoked         401 quoting the key it got
    slow / hold     as the fake OpenAI server
    expired_url     answer, but the next output URL handed out (image or video) answers 403
    task_sensitive  the next task created fails with OutputVideoSensitiveContentDetected
    task_error      the next task created fails with InternalServiceError
"""

from __future__ import annotations

import base64
import functools
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import openai_server
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.shelf import fake_image, fake_video

SEEDREAM_3_SIZES = (
    "1024x1024",
    "864x1152",
    "1152x864",
    "1280x720",
    "720x1280",
    "832x1248",
    "1248x832",
    "1512x648",
)
CHAT_FIELDS = openai_server.CHAT_FIELDS | {"thinking", "frequency_penalty", "presence_penalty"}
COMMANDS: dict[str, tuple[str, ...] | None] = {  # name → allowed values (None: an integer)
    "ratio": ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "keep_ratio", "adaptive"),
    "resolution": ("480p", "720p", "1080p"),
    "duration": tuple(str(d) for d in range(2, 13)),
    "fps": ("16", "24"),
    "framespersecond": ("16", "24"),
    "seed": None,
    "camerafixed": ("true", "false"),
    "watermark": ("true", "false"),
}
COMMAND = re.compile(r"--(\w+)\s+(\S+)")
TASK_FAILURES = {
    "task_sensitive": (
        "OutputVideoSensitiveContentDetected",
        "The request failed because the output video may contain sensitive information.",
    ),
    "task_error": ("InternalServiceError", "The service encountered an unexpected error."),
}


def ark_error(
    status: int, code: str, message: str, param: str = "", headers: dict[str, str] | None = None
) -> web.Response:
    error = {"code": code, "message": f"{message} Request id: 0217{secrets.token_hex(8)}"}
    body = {"error": error | {"param": param, "type": "BadRequest" if status == 400 else ""}}
    return web.json_response(body, status=status, headers=headers)


CANNED = {
    "rate_limit": lambda: ark_error(
        429,
        "RateLimitExceeded.EndpointRPMExceeded",
        "The request has exceeded the RPM rate limit of the endpoint.",
        headers={"Retry-After": "1"},
    ),
    "overloaded": lambda: ark_error(
        429, "ServerOverloaded", "The service is currently unable to handle additional requests."
    ),
    "server_error": lambda: ark_error(
        500, "InternalServiceError", "The service encountered an unexpected internal error."
    ),
    "sensitive": lambda: ark_error(
        400,
        "InputTextSensitiveContentDetected",
        "The request failed because the input text may contain sensitive information.",
    ),
    "garbage": lambda: web.Response(text="this is not json", content_type="application/json"),
}


@dataclass
class FakeTask:
    id: str
    model: str
    commands: dict[str, str]
    failure: tuple[str, str] | None  # (code, message) it will fail with
    created_at: int = field(default_factory=lambda: int(time.time()))
    status: str = "queued"
    polls: int = 0
    finish: bool = False
    video_url: str | None = None
    updated_at: int = 0


class FakeArk(FakeOpenAI):
    prefix = "/api/v3"
    chat_fields = CHAT_FIELDS
    reasoning_models = ("doubao-seed-1-6", "deepseek-r1")
    modes = frozenset(CANNED) | {"revoked", "slow", "hold", "expired_url", *TASK_FAILURES}

    def __init__(
        self, key: str = "ark-fake-key", polls_to_finish: int | None = 2, slow_seconds: float = 5
    ) -> None:
        super().__init__(key, slow_seconds)
        self.polls_to_finish = polls_to_finish
        self.tasks: dict[str, FakeTask] = {}
        self.cancelled: list[str] = []
        self._next_failure: tuple[str, str] | None = None

    def finish(self, task_id: str | None = None) -> None:
        """Let a task (or every task) end at its next poll; callable from any thread."""
        for task in [self.tasks[task_id]] if task_id else list(self.tasks.values()):
            task.finish = True

    def routes(self, app: web.Application) -> None:
        super().routes(app)  # OpenAI's paths stay, harmless: Ark's own are under /api/v3
        tasks = f"{self.prefix}/contents/generations/tasks"
        app.router.add_post(f"{self.prefix}/images/generations", self._seedream)
        app.router.add_post(tasks, self._create_task)
        app.router.add_get(tasks + "/{id}", self._get_task)
        app.router.add_delete(tasks + "/{id}", self._delete_task)

    # --- Ark's errors --------------------------------------------------------------------

    def error(self, status: int, message: str, code: str | None = None, **kw: Any) -> web.Response:
        return ark_error(status, code or "InvalidParameter", message, **kw)

    def unauthorized(self, token: str) -> web.Response:
        return ark_error(
            401, "AuthenticationError", f"The API key {token} in the request is invalid."
        )

    def canned(self, mode: str | None) -> web.Response | None:
        if mode in TASK_FAILURES:
            self._next_failure = TASK_FAILURES[mode]
        return CANNED[mode]() if mode in CANNED else None

    # --- Seedream ------------------------------------------------------------------------

    async def _seedream(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, seedream_problem, self._answer_seedream)

    async def _answer_seedream(
        self, request: web.Request, body: dict[str, Any], mode: str | None
    ) -> web.StreamResponse:
        if not str(body["model"]).startswith("doubao-seedream"):
            return not_found(body["model"])
        png = fake_image(body["prompt"])
        if body.get("response_format") == "b64_json":
            item = {"b64_json": base64.b64encode(png).decode()}
        else:
            item = {"url": self.put_file(request, png, "image/png", ".png")}
        width, height = map(int, str(body.get("size", "1024x1024")).split("x"))
        usage = {"generated_images": 1, "output_tokens": width * height // 256}
        usage["total_tokens"] = usage["output_tokens"]
        reply = {"model": body["model"], "created": int(time.time()), "data": [item]}
        return web.json_response(reply | {"usage": usage})

    # --- Seedance tasks ------------------------------------------------------------------

    async def _create_task(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, task_problem, self._answer_create)

    async def _answer_create(
        self, request: web.Request, body: dict[str, Any], mode: str | None
    ) -> web.StreamResponse:
        if not str(body["model"]).startswith("doubao-seedance"):
            return not_found(body["model"])
        if (problem := seedance_problem(body)) is not None:
            return ark_error(400, "InvalidParameter", problem, "content")
        task_id = f"cgt-{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)[:5]}"
        failure, self._next_failure = self._next_failure, None
        self.tasks[task_id] = FakeTask(task_id, body["model"], commands_of(body), failure)
        return web.json_response({"id": task_id})

    async def _get_task(self, request: web.Request) -> web.StreamResponse:
        answer = functools.partial(self._answer_get, request.match_info["id"])
        return await self._serve(request, lambda _: None, answer)

    async def _answer_get(
        self, task_id: str, request: web.Request, body: Any, mode: str | None
    ) -> web.StreamResponse:
        task = self.tasks.get(task_id)
        if task is None:
            return ark_error(404, "ResourceNotFound", f"The specified task {task_id} is not found.")
        self._advance(task, request)
        return web.json_response(task_json(task))

    def _advance(self, task: FakeTask, request: web.Request) -> None:
        if task.status not in ("queued", "running"):
            return
        task.polls += 1
        task.updated_at = int(time.time())
        limit = self.polls_to_finish
        if not task.finish and (limit is None or task.polls < limit):
            task.status = "running"
        elif task.failure is not None:
            task.status = "failed"
        else:
            task.status = "succeeded"
            task.video_url = self.put_file(request, fake_video(task.id), "video/mp4", ".mp4")

    async def _delete_task(self, request: web.Request) -> web.StreamResponse:
        answer = functools.partial(self._answer_delete, request.match_info["id"])
        return await self._serve(request, lambda _: None, answer)

    async def _answer_delete(
        self, task_id: str, request: web.Request, body: Any, mode: str | None
    ) -> web.StreamResponse:
        task = self.tasks.get(task_id)
        if task is None:
            return ark_error(404, "ResourceNotFound", f"The specified task {task_id} is not found.")
        if task.status == "queued":
            task.status = "cancelled"
            self.cancelled.append(task_id)
        elif task.status in ("succeeded", "failed"):
            del self.tasks[task_id]
        else:
            message = f"The task {task_id} is {task.status}: only a queued task can be cancelled."
            return ark_error(400, "InvalidAction.TaskRunning", message)
        return web.json_response({})


def not_found(model: Any) -> web.Response:
    return ark_error(
        404,
        "InvalidEndpointOrModel.NotFound",
        f"The model or endpoint {model} does not exist or you do not have access to it.",
    )


# --- validation --------------------------------------------------------------------------


def required(body: Any, names: tuple[str, ...]) -> str | tuple[str, str] | None:
    if not isinstance(body, dict):
        return "The request body is not valid JSON."
    if any(not body.get(name) for name in names):
        message = "The request failed because it is missing one or multiple required parameters."
        return (message, "MissingParameter")
    return None


def seedream_problem(body: Any) -> str | tuple[str, str] | None:
    if (problem := required(body, ("model", "prompt"))) is not None:
        return problem
    checks = (
        ("size", size_ok(body)),
        ("response_format", body.get("response_format", "url") in ("url", "b64_json")),
        ("watermark", isinstance(body.get("watermark", True), bool)),
        ("seed", isinstance(body.get("seed", -1), int) and -1 <= body.get("seed", -1) < 2**31),
        ("guidance_scale", number_in(body.get("guidance_scale", 2.5), 1, 10)),
    )
    bad = next((name for name, ok in checks if not ok), None)
    if bad is None:
        return None
    return (f"The parameter `{bad}` specified in the request is not valid.", "InvalidParameter")


def number_in(value: Any, low: float, high: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


def size_ok(body: dict[str, Any]) -> bool:
    size = body.get("size", "1024x1024")
    if str(body["model"]).startswith("doubao-seedream-3-0"):
        return size in SEEDREAM_3_SIZES
    if size in ("1K", "2K", "4K"):
        return True
    match = re.fullmatch(r"(\d+)x(\d+)", str(size))
    return bool(match) and 1280 * 720 <= int(match[1]) * int(match[2]) <= 4096 * 4096


def task_problem(body: Any) -> str | tuple[str, str] | None:
    if (problem := required(body, ("model", "content"))) is not None:
        return problem
    content = body["content"]
    if not isinstance(content, list) or not all(isinstance(c, dict) for c in content):
        return "The parameter `content` specified in the request is not valid."
    for item in content:
        if (problem := content_problem(item)) is not None:
            return problem
    return None


def content_problem(item: dict[str, Any]) -> str | None:
    if item.get("type") == "text":
        return None if isinstance(item.get("text"), str) else "content.text must be a string."
    if item.get("type") != "image_url":
        return f"The content type {item.get('type')!r} is not supported."
    url = (item.get("image_url") or {}).get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://", "data:image/")):
        return "content.image_url.url must be an image URL or a data:image/...;base64 URI."
    if item.get("role", "first_frame") not in ("first_frame", "last_frame", "reference_image"):
        return f"The image role {item.get('role')!r} is not supported."
    return None


def seedance_problem(body: dict[str, Any]) -> str | None:
    images = [c for c in body["content"] if c["type"] == "image_url"]
    model = str(body["model"])
    if "t2v" in model and images:
        return f"The model {model} does not support image input."
    if "i2v" in model and not images:
        return f"The model {model} requires an image input."
    for name, value in commands_of(body).items():
        allowed = COMMANDS.get(name, ())
        if allowed is None and not re.fullmatch(r"-?\d+", value):
            return f"The text command --{name} {value} is not valid."
        if allowed and value not in allowed:
            return f"The text command --{name} {value} is not valid."
    return None


def commands_of(body: dict[str, Any]) -> dict[str, str]:
    text = " ".join(c.get("text", "") for c in body["content"] if c["type"] == "text")
    return dict(COMMAND.findall(text))


def task_json(task: FakeTask) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": task.id,
        "model": task.model,
        "status": task.status,
        "created_at": task.created_at,
        "updated_at": task.updated_at or task.created_at,
    }
    if task.status == "failed" and task.failure is not None:
        code, message = task.failure
        out["error"] = {"code": code, "message": message}
    if task.status == "succeeded":
        out["content"] = {"video_url": task.video_url}
        out["usage"] = {"completion_tokens": 108900, "total_tokens": 108900}
        out |= {
            "resolution": task.commands.get("resolution", "720p"),
            "ratio": task.commands.get("ratio", "16:9"),
            "duration": int(task.commands.get("duration", "5")),
            "framespersecond": int(task.commands.get("fps", "24")),
            "seed": int(task.commands.get("seed", "11")),
        }
    return out
