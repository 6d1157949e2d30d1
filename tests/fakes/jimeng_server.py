"""A fake Volcengine visual API (the Jimeng actions) over real HTTP on 127.0.0.1.

    async with FakeJimeng(access_key="AK...", secret_key="SK...") as fake:
        url = fake.base_url                     # the instance's endpoint

It serves ``POST /?Action=...&Version=2022-08-31`` for ``CVProcess`` (images, at once),
``CVSync2AsyncSubmitTask`` and ``CVSync2AsyncGetResult`` (videos, as tasks), and the output
files at ``GET /tos/{name}`` (short-lived signed URLs in real life).

Every API request must carry a valid Volcengine signature, verified here by code written
apart from the provider's signer (:func:`expected_signature`): without ``Authorization``
401 MissingAuthenticationToken; an ``X-Date`` more than 15 minutes off 400
InvalidTimestamp; another access key 401 InvalidAccessKey; a wrong scope, body hash or
signature 401 SignatureDoesNotMatch; all in the gateway's shape
``{"ResponseMetadata": {..., "Error": {"CodeN", "Code", "Message"}}}``. Bodies are checked
(``req_key`` per action, the image sizes and the video aspect ratios the models offer, the
JSON types) and refused with the service's shape ``{"code": 50215, "message": ...}``.

Images come back as base64, or with ``return_url`` as URLs only. A video task answers
``in_queue``, then ``generating``, and is ``done`` once polled ``polls_to_finish`` times
(``None``: only when the test calls ``fake.finish(task_id)``); ``fake.expire(task_id)``
makes it ``expired``; an unknown id is ``not_found``. ``fake.requests`` records every API
request. ``fake.script(*modes)`` queues behaviours, one taken by each API request that passes
the signature check:

    qps_limit          429, code 50429 (QPS limit)
    concurrency_limit  429, code 50430 (concurrency limit)
    internal           500, code 50500
    text_risk          400, code 50412 Text Risk Not Pass (the prompt was refused)
    post_img_risk      400, code 50511 Post Img Risk Not Pass (the output was refused)
    post_video_risk    400, code 50516 Post Video Risk Not Pass
    access_denied      401, code 50400 Access Denied
    http_500           500 with an HTML body, as a proxy in front would answer
    garbage            200 with a body that is not JSON
    expired_url        answer normally, but the URLs in the answer have already expired
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
import struct
import time
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes import LoopbackServer, Scripted

VERSION = "2022-08-31"
ACTIONS = ("CVProcess", "CVSync2AsyncSubmitTask", "CVSync2AsyncGetResult")
IMAGE_KEYS = ("jimeng_high_aes_general_v21_L",)
VIDEO_KEYS = ("jimeng_vgfm_t2v_l20",)
SIZES = {(512, 512), (512, 384), (384, 512), (512, 341), (341, 512), (512, 288), (288, 512)}
RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "21:9")
MAX_SKEW = 15 * 60
SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
AUTH = re.compile(
    r"HMAC-SHA256 Credential=(?P<ak>[^/,\s]+)/(?P<scope>[^,\s]+), "
    r"SignedHeaders=(?P<signed>[^,\s]+), Signature=(?P<sig>[0-9a-f]{64})$"
)
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64
INVALID = "Input invalid for this service."

SERVICE_ERRORS: dict[str, tuple[int, int, str]] = {
    "qps_limit": (429, 50429, "Request Has Reached API Limit, Please Try Later"),
    "concurrency_limit": (429, 50430, "Request Has Reached API Concurrent Limit, Please Try Later"),
    "internal": (500, 50500, "Internal Error"),
    "text_risk": (400, 50412, "Text Risk Not Pass"),
    "post_img_risk": (400, 50511, "Post Img Risk Not Pass"),
    "post_video_risk": (400, 50516, "Post Video Risk Not Pass"),
    "access_denied": (401, 50400, "Access Denied: Access Denied"),
}
OTHER_MODES = ("http_500", "garbage", "expired_url")


@dataclass(frozen=True)
class Recorded:
    action: str
    headers: dict[str, str]
    body: Any  # the parsed JSON, or None


@dataclass
class VideoTask:
    req_key: str
    prompt: str
    aspect_ratio: str
    polls: int = 0
    status: str = "in_queue"


class FakeJimeng(Scripted, LoopbackServer):
    def __init__(
        self,
        access_key: str = "AKLTfakeaccesskey",
        secret_key: str = "fake-secret-key==",
        polls_to_finish: int | None = 2,
        region: str = "cn-north-1",
        service: str = "cv",
    ) -> None:
        self.access_key, self.secret_key = access_key, secret_key
        self.region, self.service = region, service
        self.polls_to_finish = polls_to_finish
        self.requests: list[Recorded] = []
        self.tasks: dict[str, VideoTask] = {}
        self.files: dict[str, tuple[bytes, str]] = {}
        self.expired: set[str] = set()
        Scripted.__init__(self)

    def finish(self, task_id: str) -> None:
        self.tasks[task_id].status = "done"

    def expire(self, task_id: str) -> None:
        self.tasks[task_id].status = "expired"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/", self._api)
        app.router.add_get("/tos/{name}", self._file)

    # --- the API -----------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        action = request.query.get("Action", "")
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.requests.append(Recorded(action, dict(request.headers), body))
        if action not in ACTIONS or request.query.get("Version") != VERSION:
            version = request.query.get("Version")
            return gateway(
                404,
                100008,
                "InvalidActionOrVersion",
                f"Could not find operation {action} for version {version}",
                action,
            )
        refused = self._check_signature(request, raw, action)
        if refused is not None:
            return refused
        mode = self.next_mode()
        if mode in SERVICE_ERRORS:
            return service_error(*SERVICE_ERRORS[mode])
        if mode == "http_500":
            return web.Response(
                status=500,
                text="<html><h1>500 Internal Server Error</h1></html>",
                content_type="text/html",
            )
        if mode == "garbage":
            return web.Response(text="upstream said: not json", content_type="application/json")
        if not isinstance(body, dict) or not isinstance(body.get("req_key"), str):
            return service_error(400, 50215, INVALID)
        handler = {
            "CVProcess": self._image,
            "CVSync2AsyncSubmitTask": self._submit,
            "CVSync2AsyncGetResult": self._result,
        }[action]
        return handler(body, expired=mode == "expired_url")

    def _image(self, body: dict[str, Any], expired: bool) -> web.Response:
        if body["req_key"] not in IMAGE_KEYS or image_problem(body):
            return service_error(400, 50215, INVALID)
        png = solid_png(body["width"], body["height"], colour(body["prompt"]))
        data: dict[str, Any] = {"binary_data_base64": [], "image_urls": None}
        if body.get("return_url"):
            data["image_urls"] = [self._store(png, "image/png", ".png", expired)]
        else:
            data["binary_data_base64"] = [base64.b64encode(png).decode()]
        data["algorithm_base_resp"] = {"status_code": 0, "status_message": "Success"}
        return success(data)

    def _submit(self, body: dict[str, Any], expired: bool) -> web.Response:
        prompt, ratio = body.get("prompt"), body.get("aspect_ratio", "16:9")
        if body["req_key"] not in VIDEO_KEYS or not isinstance(prompt, str) or not prompt:
            return service_error(400, 50215, INVALID)
        if ratio not in RATIOS or not isinstance(body.get("seed", -1), int):
            return service_error(400, 50215, INVALID)
        task_id = str(uuid.uuid4().int)[:19]
        self.tasks[task_id] = VideoTask(body["req_key"], prompt, ratio)
        return success({"task_id": task_id})

    def _result(self, body: dict[str, Any], expired: bool) -> web.Response:
        task = self.tasks.get(str(body.get("task_id")))
        if task is None:
            return success({"status": "not_found", "video_url": ""})
        if task.req_key != body["req_key"]:
            return service_error(400, 50215, INVALID)
        task.polls += 1
        if task.status in ("in_queue", "generating"):
            done = self.polls_to_finish is not None and task.polls >= self.polls_to_finish
            task.status = "done" if done else ("generating" if task.polls > 1 else "in_queue")
        if task.status != "done":
            return success({"status": task.status, "video_url": ""})
        url = self._store(MP4, "video/mp4", ".mp4", expired)
        return success({"status": "done", "video_url": url, "aigc_meta_tagged": False})

    def _store(self, data: bytes, content_type: str, ext: str, expired: bool) -> str:
        name = uuid.uuid4().hex + ext
        self.files[name] = (data, content_type)
        if expired:
            self.expired.add(name)
        signature = hashlib.sha256(name.encode()).hexdigest()
        return f"{self.base_url}/tos/{name}?X-Tos-Expires=3600&X-Tos-Signature={signature}"

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name in self.expired:
            return web.Response(status=403, text=TOS_EXPIRED, content_type="application/xml")
        if name not in self.files:
            return web.Response(status=404, text="NoSuchKey", content_type="text/plain")
        data, content_type = self.files[name]
        return web.Response(body=data, content_type=content_type)

    # --- the signature -----------------------------------------------------------------

    def _check_signature(
        self, request: web.Request, raw: bytes, action: str
    ) -> web.Response | None:
        header = request.headers.get("Authorization")
        if not header:
            return gateway(
                401,
                100003,
                "MissingAuthenticationToken",
                "Request is missing Authentication Token.",
                action,
            )
        match = AUTH.match(header)
        x_date = request.headers.get("X-Date", "")
        if not fresh(x_date):
            return gateway(
                400, 100006, "InvalidTimestamp", "The signature of the request is expired.", action
            )
        if match is None:
            return gateway(401, 100010, "SignatureDoesNotMatch", SIGNATURE_MESSAGE, action)
        if match["ak"] != self.access_key:
            message = f"The accesskey [{match['ak']}] included in the request is invalid."
            return gateway(401, 100009, "InvalidAccessKey", message, action)
        signed = match["signed"].split(";")
        scope = f"{x_date[:8]}/{self.region}/{self.service}/request"
        claimed_hash = request.headers.get("X-Content-Sha256", hashlib.sha256(raw).hexdigest())
        ok = (
            match["scope"] == scope
            and {"host", "x-date"} <= set(signed)
            and claimed_hash == hashlib.sha256(raw).hexdigest()
            and hmac.compare_digest(match["sig"], self.expected(request, signed, raw, scope))
        )
        if ok:
            return None
        return gateway(401, 100010, "SignatureDoesNotMatch", SIGNATURE_MESSAGE, action)

    def expected(self, request: web.Request, signed: list[str], raw: bytes, scope: str) -> str:
        return expected_signature(
            self.secret_key,
            request.method,
            request.rel_url.raw_path,
            list(request.rel_url.query.items()),
            [(name, request.headers.get(name, "")) for name in signed],
            raw,
            request.headers.get("X-Date", ""),
            scope,
        )


SIGNATURE_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your Secret Access Key and signing method. Consult the service documentation "
    "for details."
)
TOS_EXPIRED = (
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    "<Message>Request has expired</Message></Error>"
)


def pct(text: str) -> str:
    """RFC 3986 percent-encoding, byte by byte (UTF-8), upper-case hex."""
    return "".join(
        chr(b) if chr(b) in SAFE else "%{:02X}".format(b)  # noqa: UP032
        for b in text.encode("utf-8")
    )


def expected_signature(
    secret_key: str,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: list[tuple[str, str]],
    body: bytes,
    x_date: str,
    scope: str,
) -> str:
    """The signature Volcengine would compute for this request, from its documentation."""
    ordered = sorted(((pct(k), pct(v)) for k, v in query), key=lambda kv: kv[0])
    header_lines = [f"{k.lower()}:{v.strip()}\n" for k, v in sorted(headers)]
    canonical = "\n".join(
        (
            method,
            path or "/",
            "&".join("=".join(kv) for kv in ordered),
            "".join(header_lines),
            ";".join(k.lower() for k, _ in sorted(headers)),
            hashlib.sha256(body).hexdigest(),
        )
    )
    to_sign = "HMAC-SHA256\n{}\n{}\n{}".format(  # noqa: UP032
        x_date, scope, hashlib.sha256(canonical.encode()).hexdigest()
    )
    parts = scope.split("/")  # date, region, service, "request"
    key = functools.reduce(
        lambda k, part: hmac.new(k, part.encode(), "sha256").digest(), parts, secret_key.encode()
    )
    return hmac.new(key, to_sign.encode(), "sha256").hexdigest()


def fresh(x_date: str) -> bool:
    try:
        signed_at = datetime.strptime(x_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return False
    return abs(time.time() - signed_at.timestamp()) <= MAX_SKEW


# --- replies -----------------------------------------------------------------------------


def request_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:18].upper()


def success(data: dict[str, Any]) -> web.Response:
    return web.json_response(
        {
            "code": 10000,
            "data": data,
            "message": "Success",
            "request_id": request_id(),
            "status": 10000,
            "time_elapsed": "104.852309ms",
        }
    )


def service_error(http_status: int, code: int, message: str) -> web.Response:
    body = {
        "code": code,
        "data": None,
        "message": message,
        "request_id": request_id(),
        "status": code,
        "time_elapsed": "36.799829ms",
    }
    return web.json_response(body, status=http_status)


def gateway(status: int, code_n: int, code: str, message: str, action: str) -> web.Response:
    meta = {
        "RequestId": request_id(),
        "Action": action,
        "Version": VERSION,
        "Service": "cv",
        "Region": "cn-north-1",
        "Error": {"CodeN": code_n, "Code": code, "Message": message},
    }
    return web.json_response({"ResponseMetadata": meta}, status=status)


def image_problem(body: dict[str, Any]) -> bool:
    """True when the CVProcess body breaks the model's rules (the service answers 50215)."""
    prompt, width, height = body.get("prompt"), body.get("width", 512), body.get("height", 512)
    if not isinstance(prompt, str) or not prompt or (width, height) not in SIZES:
        return True
    scale = body.get("scale", 3.5)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 1 <= scale <= 10:
        return True
    flags = ("use_sr", "return_url", "use_pre_llm")
    return any(not isinstance(body.get(f, False), bool) for f in flags) or not isinstance(
        body.get("seed", -1), int
    )


def colour(prompt: str) -> tuple[int, int, int]:
    digest = hashlib.sha256(prompt.encode()).digest()
    return digest[0], digest[1], digest[2]


def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(row * height, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


FakeJimeng.modes = frozenset(SERVICE_ERRORS) | frozenset(OTHER_MODES)
