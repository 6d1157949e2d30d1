"""The ``jimeng`` provider: Jimeng (即梦) images and videos on Volcengine's visual API.

Every call is ``POST {endpoint}/?Action=<Action>&Version=2022-08-31`` with a JSON body that
names the model in ``req_key``, signed with Volcengine's request signature
(:mod:`taskgate.providers.volcsign`). An instance's ``endpoint`` is the API's base URL (by
default ``https://visual.volcengineapi.com``); its secret is ``ACCESS_KEY:SECRET_KEY`` in the
one environment variable ``secret_env`` names. Options (route or instance): ``region``
(``cn-north-1``) and ``service`` (``cv``) of the signature, ``image_req_key``
(``jimeng_high_aes_general_v21_L``), ``video_req_key`` (``jimeng_vgfm_t2v_l20``),
``read_timeout``, ``max_output_bytes`` and ``output_urls_private`` (where the URLs of its
outputs may point; see :mod:`taskgate.providers.web`).

``image`` runs ``CVProcess`` at once. Input: the prompt as a string or ``{"prompt": ...}``.
Params: ``size`` ("512x384") or ``width``/``height`` (one of :data:`SIZES`, checked before the
call), ``seed``, ``scale``, ``use_sr``, ``use_pre_llm``, ``return_url`` (the backend answers
with short-lived URLs instead of base64; either way the images are copied into files).

``video`` (text to video) is a job on the backend: ``CVSync2AsyncSubmitTask`` gives a task id,
``run`` returns it as a :class:`Job`, and ``poll`` asks ``CVSync2AsyncGetResult`` (the result
action of the submit/get-result pair; ``CVGetResult`` belongs to the ``CVSubmitTask`` pair)
until the status is ``done``, then downloads ``video_url`` into a file. Params:
``aspect_ratio`` (one of :data:`ASPECT_RATIOS`), ``seed``. The API has no cancel.

Errors are read from both of Volcengine's shapes: the gateway's
``{"ResponseMetadata": {"Error": {"Code", "Message"}}}`` (signature, key, clock, throttling)
and the service's ``{"code", "message", "request_id"}`` (:data:`REFUSED`, :data:`THROTTLED`,
:data:`INTERNAL`). The secret, and the secret key on its own, are blanked out of any text
that goes into an error (:mod:`taskgate.providers.redact`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from taskgate import errors
from taskgate.config import Route
from taskgate.providers import media, volcsign
from taskgate.providers.base import Call, Job, OutputFile, Pending, Result
from taskgate.providers.openai import as_dict, loads, parse_object
from taskgate.providers.redact import scrub
from taskgate.providers.registry import register_provider
from taskgate.providers.web import WebProvider, bad_response, download, retry_after, snippet

DEFAULT_ENDPOINT = "https://visual.volcengineapi.com"
VERSION = "2022-08-31"
IMAGE_REQ_KEY = "jimeng_high_aes_general_v21_L"
VIDEO_REQ_KEY = "jimeng_vgfm_t2v_l20"
SUCCESS = 10000
SIZES = frozenset(
    {(512, 512), (512, 384), (384, 512), (512, 341), (341, 512), (512, 288), (288, 512)}
)
ASPECT_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9")
RUNNING = frozenset({"in_queue", "generating"})
GONE = frozenset({"not_found", "expired"})  # the backend no longer has the task
# The service's codes (Volcengine visual API, "通用返回字段及错误码" and the Jimeng pages):
REFUSED = frozenset(
    {50411, 50412, 50413, 50511, 50512, 50516, 50517, 50518, 50519}
)  # input or output failed content review
THROTTLED = frozenset({50429, 50430})  # QPS limit, concurrency limit
INTERNAL = frozenset({50500, 50501, 50520, 50521, 50522})  # the service or its reviewer failed
DENIED = frozenset({50400})  # "Access Denied": the account may not use this req_key
# The gateway's codes that mean our credentials, or our clock, are wrong.
AUTH_CODES = frozenset(
    {
        "SignatureDoesNotMatch",
        "InvalidAccessKey",
        "MissingAuthenticationToken",
        "MissingSignature",
        "InvalidTimestamp",
        "InvalidCredential",
        "AccessDenied",
        "LackPolicy",
    }
)
TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false"}


def utcnow() -> datetime:
    return datetime.now(UTC)


@register_provider("jimeng")
class JimengProvider(WebProvider):
    kinds = frozenset({"image", "video"})

    def __init__(self, route: Route) -> None:
        super().__init__(route)
        self.clock: Callable[[], datetime] = utcnow  # X-Date; tests turn it back

    async def run(self, call: Call) -> Result | Job:
        if call.kind == "image":
            reply = await self._action(call, "CVProcess", image_body(call))
            return await self._images(call, reply)
        if call.kind == "video":
            req_key = str(call.option("video_req_key", VIDEO_REQ_KEY))
            reply = await self._action(call, "CVSync2AsyncSubmitTask", video_body(call, req_key))
            task_id = as_dict(reply.get("data")).get("task_id")
            if not task_id:
                raise bad_response("a submit reply without data.task_id", orjson.dumps(reply), call)
            return Job(str(task_id), {"req_key": req_key})
        raise errors.InvalidInput(f"the jimeng provider serves image and video, not {call.kind!r}")

    async def poll(self, call: Call, job: Job) -> Result | Pending:
        req_key = str(job.data.get("req_key") or call.option("video_req_key", VIDEO_REQ_KEY))
        body = {"req_key": req_key, "task_id": job.id}
        reply = await self._action(call, "CVSync2AsyncGetResult", body)
        data = as_dict(reply.get("data"))
        status = data.get("status")
        if status in RUNNING:
            return Pending(progress={"status": status})
        if status in GONE:  # retryable: the next attempt submits a new task
            raise errors.job_ended(
                errors.BadResponse(
                    f"jimeng task {job.id} is {status} on the backend", provider_code=str(status)
                )
            )
        url = data.get("video_url")
        if status != "done" or not isinstance(url, str) or not url:
            raise bad_response(
                "a result that is neither running nor a video", orjson.dumps(reply), call
            )
        video = await download(self, call, url, "video")
        video = replace(video, name=media.name_for("video", video.content_type))
        output = {"task_id": job.id, "request_id": reply.get("request_id")}
        return Result(output, {"videos": 1}, (video,))

    async def _action(self, call: Call, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """One signed call; the reply when its code is success, else the error it means."""
        async with self._post(call, action, body) as resp:
            reply = parse_object(await resp.read(), call)
        if reply.get("code") != SUCCESS:
            raise service_error(reply, 200, call, None)
        return reply

    def _post(
        self, call: Call, action: str, body: dict[str, Any]
    ) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]:
        url = action_url(call, action)
        raw = orjson.dumps(body)
        headers = volcsign.sign(credentials(call), "POST", url, raw, self.clock())
        return self._request(call, "POST", url, raw, headers)

    async def _images(self, call: Call, reply: dict[str, Any]) -> Result:
        data = as_dict(reply.get("data"))
        encoded = [b for b in data.get("binary_data_base64") or [] if isinstance(b, str) and b]
        urls = [u for u in data.get("image_urls") or [] if isinstance(u, str) and u]
        files = [image_file(text, i) for i, text in enumerate(encoded, 1)]
        if not files:  # return_url: the images only exist at short-lived URLs
            files = [await self._download_image(call, url, i) for i, url in enumerate(urls, 1)]
        if not files:
            raise bad_response("a reply without images", orjson.dumps(reply), call)
        output = {"images": len(files), "request_id": reply.get("request_id")}
        return Result(output, {"images": len(files)}, tuple(files))

    async def _download_image(self, call: Call, url: str, i: int) -> OutputFile:
        f = await download(self, call, url, f"image-{i}")
        kind = media.sniff_image(f.data) or f.content_type
        return replace(f, content_type=kind, name=media.name_for(f"image-{i}", kind))

    async def http_error(self, resp: aiohttp.ClientResponse, call: Call) -> errors.ProviderError:
        text = await resp.text(errors="replace")
        wait = retry_after(resp.headers.get("Retry-After"))
        data = as_dict(loads(text))
        if "ResponseMetadata" in data:
            return gateway_error(data, resp.status, call, wait)
        if "code" in data:
            return service_error(data, resp.status, call, wait)
        return errors.from_http_status(resp.status, snippet(text, call), retry_after=wait)


# --- requests ----------------------------------------------------------------------------


def action_url(call: Call, action: str) -> str:
    base = (call.instance.endpoint or DEFAULT_ENDPOINT).rstrip("/")
    return f"{base}/?Action={action}&Version={VERSION}"


def credentials(call: Call) -> volcsign.Credentials:
    region = str(call.option("region", "cn-north-1"))
    service = str(call.option("service", "cv"))
    secret = call.instance.secret.get_secret_value() if call.instance.secret else ""
    if not secret:
        raise errors.AuthFailed(
            f"instance {call.instance.name!r} has no secret: name an environment variable"
            " holding ACCESS_KEY:SECRET_KEY in its secret_env"
        )
    try:
        return volcsign.Credentials.from_secret(secret, region, service)
    except ValueError as exc:
        raise errors.AuthFailed(f"instance {call.instance.name!r}: {exc}") from None


def prompt_of(call: Call) -> str:
    value = call.input
    prompt = value.get("prompt") if isinstance(value, dict) else value
    if not isinstance(prompt, str) or not prompt.strip():
        raise errors.InvalidInput("jimeng input must be a prompt: a string or {'prompt': '...'}")
    return prompt


def image_body(call: Call) -> dict[str, Any]:
    width, height = image_size(call.params)
    p = call.params
    body: dict[str, Any] = {
        "req_key": str(call.option("image_req_key", IMAGE_REQ_KEY)),
        "prompt": prompt_of(call),
        "width": width,
        "height": height,
        "seed": typed(p, "seed", int, -1),
        "scale": typed(p, "scale", float, 3.5),
        "use_sr": typed(p, "use_sr", bool, True),
        "return_url": typed(p, "return_url", bool, False),
        "logo_info": {"add_logo": False},
    }
    if "use_pre_llm" in p:
        body["use_pre_llm"] = typed(p, "use_pre_llm", bool, False)
    return body


def image_size(params: dict[str, Any]) -> tuple[int, int]:
    """``size`` ("WxH") or ``width``/``height`` (512 each by default), one of :data:`SIZES`."""
    size = params.get("size")
    if size is not None:
        w, sep, h = str(size).lower().partition("x")
        if not sep or not w.strip().isdigit() or not h.strip().isdigit():
            raise errors.InvalidInput(f"size must be WIDTHxHEIGHT, such as 512x384, not {size!r}")
        dims = (int(w), int(h))
    else:
        dims = (typed(params, "width", int, 512), typed(params, "height", int, 512))
    if dims not in SIZES:
        allowed = ", ".join(f"{w}x{h}" for w, h in sorted(SIZES, reverse=True))
        raise errors.InvalidInput(f"size {dims[0]}x{dims[1]} is not offered; use one of {allowed}")
    return dims


def video_body(call: Call, req_key: str) -> dict[str, Any]:
    ratio = call.params.get("aspect_ratio", "16:9")
    if ratio not in ASPECT_RATIOS:
        raise errors.InvalidInput(
            f"aspect_ratio {ratio!r} is not offered; use one of {', '.join(ASPECT_RATIOS)}"
        )
    seed = typed(call.params, "seed", int, -1)
    return {"req_key": req_key, "prompt": prompt_of(call), "seed": seed, "aspect_ratio": ratio}


def typed(params: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    """A param of the JSON type the API wants (an int is a fine float; a bool is no number)."""
    value = params.get(name, default)
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise errors.InvalidInput(f"param {name} must be {TYPE_NAMES[kind]}, not {value!r}")
    return value


# --- replies -----------------------------------------------------------------------------


def image_file(text: str, i: int) -> OutputFile:
    f = media.output_from_b64(text, "application/octet-stream", f"image-{i}")
    kind = media.sniff_image(f.data) or "image/png"
    return replace(f, content_type=kind, name=media.name_for(f"image-{i}", kind))


# --- errors ------------------------------------------------------------------------------


def service_error(
    data: dict[str, Any], status: int, call: Call, wait: float | None
) -> errors.ProviderError:
    """An error of the visual service: ``{"code": 50412, "message": "Text Risk Not Pass"}``."""
    code = data.get("code")
    message = scrub(f"jimeng {code}: {data.get('message') or '(no message)'}", call)
    kw: dict[str, Any] = {"provider_code": str(code), "status": status}
    if code in REFUSED:
        return errors.ContentRefused(message, **kw)
    if code in THROTTLED:
        return errors.RateLimited(message, retry_after=wait, **kw)
    if code in INTERNAL:
        return errors.Overloaded(message, retry_after=wait, **kw)
    if code in DENIED:
        return errors.AuthFailed(message, **kw)
    if status >= 400:
        return errors.from_http_status(status, message, provider_code=str(code), retry_after=wait)
    return errors.BadResponse(message, **kw)


def gateway_error(
    data: dict[str, Any], status: int, call: Call, wait: float | None
) -> errors.ProviderError:
    """An error of Volcengine's gateway: ``{"ResponseMetadata": {"Error": {"Code": ...}}}``."""
    error = as_dict(as_dict(data.get("ResponseMetadata")).get("Error"))
    code = str(error.get("Code") or status)
    message = scrub(f"volcengine {code}: {error.get('Message') or '(no message)'}", call)
    if code in AUTH_CODES:
        return errors.AuthFailed(message, provider_code=code, status=status)
    return errors.from_http_status(status, message, provider_code=code, retry_after=wait)
