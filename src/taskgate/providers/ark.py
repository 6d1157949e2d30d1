"""The ``ark`` provider: Volcengine Ark (火山方舟): Doubao chat, Seedream images and Seedance
videos.

An instance's ``endpoint`` is the API's base URL including ``/api/v3`` (by default
``https://ark.cn-beijing.volces.com/api/v3``); its ``secret`` is the Ark API key, sent as the
bearer key. Options (route or instance): ``upstream_model`` (a model id or an endpoint id
``ep-...``; by default the task's model), ``read_timeout``, ``max_output_bytes``,
``output_urls_private`` (where the URLs of its outputs may point; see
:mod:`taskgate.providers.web`) and ``callback_url`` (a URL of yours that Ark notifies when a
video job changes state; set by the admin, never by a task).

``chat`` is OpenAI's protocol (``/chat/completions``), served by the ``openai`` provider's
code: the same inputs, params, streaming and output, with ``reasoning`` from thinking models
(``doubao-seed-1-6``, ``deepseek-r1``).

``image`` (Seedream, ``/images/generations``): input a prompt string or ``{"prompt": ...}``;
params ``size`` (Seedream 3.0: ``1024x1024``, ``864x1152``, ``1152x864``, ``1280x720``,
``720x1280``, ``832x1248``, ``1248x832``, ``1512x648``), ``response_format``, ``seed``,
``guidance_scale`` and ``watermark`` (``false`` unless the task says otherwise: Ark's own
default is to stamp "AI生成" on the image). Images are copied into files as the ``openai``
provider copies them.

``video`` (Seedance) is a job on Ark's side: ``run`` creates a content generation task
(``POST /contents/generations/tasks``) and returns it as a :class:`Job`; ``poll`` reads it
(``GET .../tasks/{id}``) until it has succeeded, then downloads the video into a file. Input
a prompt string, or ``{"prompt", "image"}`` (first frame), ``{"prompt", "image",
"last_frame"}`` or ``{"prompt", "reference_images": [...]}``, images as ``{"file_id"}``,
``data:`` URIs or ``http(s)`` URLs Ark can read. Params ``ratio``, ``duration``,
``resolution``, ``fps``, ``seed``, ``camerafixed`` and ``watermark`` (``false`` by default)
become Ark's text commands (``--ratio 16:9``) after the prompt. ``cancel_job`` deletes the
task: Ark cancels a queued task; a running one cannot be stopped, which is logged.

Ark's errors are ``{"error": {"code", "message", "param", "type"}}``; the code says more than
the HTTP status (:data:`CODE_ERRORS`): ``*SensitiveContentDetected*`` is ``ContentRefused``,
``ServerOverloaded`` ``Overloaded``, ``AuthenticationError`` ``AuthFailed``. A video job that
fails on Ark's side is mapped by its code in the same way.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson

from taskgate import errors
from taskgate.providers import media
from taskgate.providers import openai_media as om
from taskgate.providers.base import Call, Job, Pending, Result
from taskgate.providers.openai import (
    OpenAIProvider,
    as_dict,
    headers,
    passthrough,
    read_object,
    upstream_model,
    usage_of,
)
from taskgate.providers.registry import register_provider
from taskgate.providers.web import bad_response

log = logging.getLogger("taskgate.providers.ark")

DEFAULT_ENDPOINT = "https://ark.cn-beijing.volces.com/api/v3"
TASKS = "/contents/generations/tasks"
IMAGE_PARAMS = ("size", "response_format", "seed", "guidance_scale")
VIDEO_COMMANDS = ("resolution", "ratio", "duration", "fps", "seed", "camerafixed")
VIDEO_FIELDS = (
    "id",
    "model",
    "resolution",
    "ratio",
    "duration",
    "frames",
    "framespersecond",
    "seed",
    "created_at",
    "updated_at",
)
COMMAND_VALUE = re.compile(r"[\w.:-]+", re.ASCII)
# Ark's error codes, matched as parts of the code ("OutputVideoSensitiveContentDetected.
# PolicyViolation", "RateLimitExceeded.EndpointRPMExceeded"), first match wins.
CODE_ERRORS: tuple[tuple[str, type[errors.ProviderError]], ...] = (
    ("SensitiveContentDetected", errors.ContentRefused),
    ("AuthenticationError", errors.AuthFailed),
    ("AccessDenied", errors.AuthFailed),
    ("AccountOverdueError", errors.AuthFailed),
    ("ServerOverloaded", errors.Overloaded),
    ("InternalServiceError", errors.Overloaded),
    ("RateLimitExceeded", errors.RateLimited),
    ("InvalidParameter", errors.InvalidInput),
    ("MissingParameter", errors.InvalidInput),
)


@register_provider("ark")
class ArkProvider(OpenAIProvider):
    name = "ark"
    kinds = frozenset({"chat", "image", "video"})
    default_endpoint = DEFAULT_ENDPOINT

    def image_body(self, call: Call) -> dict[str, Any]:
        body = {"model": upstream_model(call), "prompt": om.prompt_of(call.input, "image")}
        body |= passthrough(call.params, IMAGE_PARAMS)
        return body | {"watermark": bool(call.params.get("watermark", False))}

    async def _video(self, call: Call) -> Job:
        body = await video_body(call)
        async with self._post(call, TASKS, body) as resp:
            data = await read_object(resp, call)
        if not isinstance(data.get("id"), str) or not data["id"]:
            raise bad_response("a video task reply without an id", orjson.dumps(data), call)
        return Job(data["id"], {"model": body["model"]})

    async def poll(self, call: Call, job: Job) -> Result | Pending:
        url = self._url(call, f"{TASKS}/{job.id}")
        try:
            async with self._request(call, "GET", url, None, headers(call)) as resp:
                data = await read_object(resp, call)
        except errors.InvalidInput as exc:
            if exc.details.get("status") != 404:
                raise
            gone = f"video job {job.id} is gone on Ark's side: {exc.message}"
            raise errors.job_ended(
                errors.BadResponse(gone, provider_code=exc.details.get("provider_code"))
            ) from exc
        return await self._job_state(call, job, data)

    async def _job_state(self, call: Call, job: Job, data: dict[str, Any]) -> Result | Pending:
        status = data.get("status")
        if status in ("queued", "running"):
            return Pending(progress={"status": status})
        if status == "succeeded":
            return await self._video_result(call, data)
        if status == "failed":
            raise errors.job_ended(self.reported_error(call, data.get("error")))
        if status == "cancelled":
            raise errors.PermanentError(
                f"Ark cancelled video job {job.id} (cancelled on Ark's side, not by taskgate)",
                provider_code="cancelled",
            )
        raise bad_response(f"video job {job.id} in unknown status", orjson.dumps(data), call)

    async def _video_result(self, call: Call, data: dict[str, Any]) -> Result:
        url = as_dict(data.get("content")).get("video_url")
        if not isinstance(url, str) or not url:
            raise bad_response("a succeeded video job without video_url", orjson.dumps(data), call)
        video = await om.fetch(self, call, url, "video")
        meta = {k: data[k] for k in VIDEO_FIELDS if data.get(k) is not None}
        meta["source_url"] = om.without_query(url)
        return Result({"video": meta}, video_usage(data), (video,))

    async def cancel_job(self, call: Call, job: Job) -> None:
        """Delete the task. Ark cancels only queued tasks: a running one answers an error,
        which is logged (the video will finish, unused), not raised."""
        url = self._url(call, f"{TASKS}/{job.id}")
        try:
            async with self._request(call, "DELETE", url, None, headers(call)):
                pass
        except errors.ProviderError as exc:
            log.info("Ark did not cancel video job %s: %s", job.id, exc.message)

    def error_for(
        self, status: int | None, message: str, code: str | None, wait: float | None = None
    ) -> errors.ProviderError:
        cls = next((c for part, c in CODE_ERRORS if code and part in code), None)
        if cls is None:
            return super().error_for(status, message, code, wait)
        return cls(message, provider_code=code, status=status, retry_after=wait)


# --- video requests ----------------------------------------------------------------------


async def video_body(call: Call) -> dict[str, Any]:
    spec = call.input if isinstance(call.input, dict) else {"prompt": call.input}
    prompt = spec.get("prompt") or ""
    if not isinstance(prompt, str):
        raise errors.InvalidInput("video input must be a prompt string or {'prompt': ...}")
    images = await frames(call, spec)
    if not prompt and not images:
        raise errors.InvalidInput("video input needs a prompt, an image or both")
    text = " ".join([prompt, *commands(call.params)]).strip()
    body: dict[str, Any] = {"model": upstream_model(call)}
    body["content"] = [{"type": "text", "text": text}, *images]
    if callback := call.option("callback_url"):
        body["callback_url"] = str(callback)
    return body


def commands(params: dict[str, Any]) -> list[str]:
    """Params as Ark's text commands; ``watermark`` is always said (``false`` by default).
    ``aspect_ratio`` (the Volcengine AI Server's name, and Jimeng's) is Ark's ``ratio``."""
    if "aspect_ratio" in params and "ratio" not in params:
        params = {**params, "ratio": params["aspect_ratio"]}
    values = passthrough(params, VIDEO_COMMANDS) | {"watermark": params.get("watermark", False)}
    return [f"--{name} {command_value(name, value)}" for name, value in values.items()]


def command_value(name: str, value: Any) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if not COMMAND_VALUE.fullmatch(text):  # a space would smuggle in another command
        raise errors.InvalidInput(f"param {name}: {value!r} is not a valid value")
    return text


async def frames(call: Call, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The input images with Ark's roles: a first frame (with a last frame if given) or
    reference images."""
    refs: list[tuple[Any, str | None]] = []
    last = spec.get("last_frame")
    if spec.get("image") is not None:
        refs.append((spec["image"], None if last is None else "first_frame"))
    if last is not None:
        refs.append((last, "last_frame"))
    references = spec.get("reference_images") or []
    if not isinstance(references, list):
        raise errors.InvalidInput("reference_images must be a list of images")
    refs += [(ref, "reference_image") for ref in references]
    return [await image_item(call, ref, role) for ref, role in refs]


async def image_item(call: Call, ref: Any, role: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "image_url",
        "image_url": {"url": await media.input_url(call, ref, "image")},
    }
    return item | {"role": role} if role else item


def video_usage(data: dict[str, Any]) -> dict[str, Any]:
    """A video job's tokens, and its length in ``seconds`` (priced per second)."""
    usage = usage_of(data.get("usage"))
    duration = data.get("duration")
    if isinstance(duration, int | float) and not isinstance(duration, bool) and duration > 0:
        usage["seconds"] = duration
    return usage
