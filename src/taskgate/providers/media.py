"""Media going in and out of providers: input files a task references, and output files a
backend returns as base64 or as a URL (downloaded at once: a provider's URL may expire, so
it is never the only copy).

An input file may be given as ``{"file_id": "..."}`` (a file of the task's tenant in
taskgate's storage), a base64 ``data:`` URI, or, where the route allows it (option
``client_media_urls``), an ``http(s)://`` URL; anything else a client writes as a URL is
refused (:func:`client_url`, the one rule), and a URL on a route that does not allow it is
refused at submit (:func:`client_media_urls` finds them). Providers ask for the form their
backend needs: a URL (a data URI when the file is ours), or bytes (multipart), which taskgate
downloads from a client's URL itself (``Call.fetch_url``, providers/fetch.py). In chat
messages, a media part may name an uploaded file as
``{"type": "image_url", "image_url": {"file_id": ...}}``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import mimetypes
import re
from typing import Any
from urllib.parse import urlsplit

from taskgate import errors
from taskgate.config import Route
from taskgate.providers.base import Call, OutputFile


def is_file_ref(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("file_id"), str)


async def input_bytes(call: Call, ref: Any, what: str = "file") -> OutputFile:
    """The bytes of an input file given by id, data URI or, where the route allows clients'
    media URLs (:func:`client_url`), an http(s) URL downloaded now (``Call.fetch_url``)."""
    if is_file_ref(ref):
        return await call.read_file(ref["file_id"])
    if isinstance(ref, str):
        url = client_url(call, ref, what)
        if url.startswith("data:"):
            return from_data_uri(url, what)
        return await call.fetch_url(url, what)  # the route allows it: download it now
    raise errors.InvalidInput(
        f"{what} must be {{'file_id': ...}} (an uploaded file), a data: URI or, where the"
        " route allows them, an http(s) URL"
    )


async def input_url(call: Call, ref: Any, what: str = "file") -> str:
    """A URL the backend can read: a client's URL as :func:`client_url` allows it, or a
    data URI of a file of ours."""
    if isinstance(ref, str):
        return client_url(call, ref, what)
    f = await input_bytes(call, ref, what)
    return data_uri(f)


SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):", re.IGNORECASE)


def client_url(call: Call, url: str, what: str) -> str:
    """The one rule for a media URL a client gives, and the URL as the backend gets it
    (trimmed, its scheme in lower case): a base64 ``data:`` URI, or an ``http(s)://`` URL with
    a host where the route allows clients' media URLs (option ``client_media_urls``; by
    default they are refused, as the backend would fetch whatever a client names). Anything
    else is refused with InvalidInput: other schemes (``file:``, ``ftp:``, ``javascript:``),
    a scheme-relative ``//host/x`` and a relative path alike."""
    url = parse_client_url(url, what)
    if not url.startswith("data:") and not call.option("client_media_urls", False):
        raise errors.InvalidInput(
            f"{what}: media URLs from clients are refused here; upload the file"
            " (POST /v1/files) and give {'file_id': ...}, or a data: URI"
        )
    return url


# Where an input names media: these keys (and the lists under them), a chat part's media
# field, and the ``url`` of a media field given as an object.
MEDIA_KEYS = frozenset(
    {
        "image",
        "images",
        "mask",
        "masks",
        "file",
        "audio",
        "video",
        "first_frame",
        "last_frame",
        "reference_images",
        "image_url",
        "video_url",
        "audio_url",
    }
)


def client_media_urls(value: Any, kind: str) -> list[str]:
    """The http(s) URLs an input names as media (the whole input, for a transcription,
    may be its audio file): what a route must allow (option ``client_media_urls``)."""
    found: list[str] = []

    def walk(v: Any, media: bool) -> None:
        if isinstance(v, str):
            if media and _is_web_url(v):
                found.append(v.strip())
        elif isinstance(v, list):
            for item in v:
                walk(item, media)
        elif isinstance(v, dict):
            for key, item in v.items():
                walk(item, key in MEDIA_KEYS or (media and key == "url"))

    walk(value, kind == "transcription")
    return found


def _is_web_url(text: str) -> bool:
    match = SCHEME.match(text.strip())
    return match is not None and match.group(1).lower() in ("http", "https")


def allows_client_urls(route: Route) -> bool:
    """Whether every instance of the route takes clients' media URLs (its option
    ``client_media_urls``, else the route's): a task may run on any of them."""
    default = route.options.get("client_media_urls", False)
    return all(i.options.get("client_media_urls", default) for i in route.instances)


def parse_client_url(url: str, what: str) -> str:
    """A client's media URL that is a base64 ``data:`` URI or an ``http(s)://`` URL with a
    host, trimmed and with its scheme in lower case; anything else is InvalidInput."""
    url = url.strip()
    match = SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    url = scheme + url[len(scheme) :]
    if scheme == "data":
        if not url.partition(",")[0].endswith(";base64"):
            raise errors.InvalidInput(f"{what}: a data URI must be base64 (data:TYPE;base64,...)")
        return url
    if scheme in ("http", "https") and url[len(scheme) :].startswith("://"):
        if not urlsplit(url).hostname:
            raise errors.InvalidInput(f"{what}: the URL {url[:60]!r} has no host")
        return url
    raise errors.InvalidInput(
        f"{what} must be {{'file_id': ...}} (an uploaded file), a base64 data: URI or, where"
        f" the route allows them, an http(s) URL; not {url[:60]!r}"
    )


async def inline_file_images(call: Call) -> Call:
    """The call with the media of chat parts (``image_url``, ``video_url``: any ``*_url``
    field of a part) as the backend may get them: a client's URL as :func:`client_url`
    allows it, an uploaded file, ``{"type": "image_url", "image_url": {"file_id": ...}}``, as
    a data URI, the form every chat backend accepts. Other input is left as it is."""
    value = call.input
    if not (isinstance(value, dict) and isinstance(value.get("messages"), list)):
        return call
    messages = [await _inline_message(call, m) for m in value["messages"]]
    if all(new is old for new, old in zip(messages, value["messages"], strict=True)):
        return call  # no media part (most chats): the call as it is
    return dataclasses.replace(call, input={**value, "messages": messages})


async def _inline_message(call: Call, message: Any) -> Any:
    if not (isinstance(message, dict) and isinstance(message.get("content"), list)):
        return message
    return {**message, "content": [await _inline_part(call, p) for p in message["content"]]}


async def _inline_part(call: Call, part: Any) -> Any:
    if not isinstance(part, dict):
        return part
    out = dict(part)
    for key, media in part.items():
        if not (isinstance(key, str) and key.endswith("_url")):
            continue
        if isinstance(media, dict) and is_file_ref(media):
            rest = {k: v for k, v in media.items() if k != "file_id"}
            out[key] = {**rest, "url": data_uri(await call.read_file(media["file_id"]))}
        elif isinstance(media, dict) and isinstance(media.get("url"), str):
            out[key] = {**media, "url": client_url(call, media["url"], key)}
        elif isinstance(media, str):
            out[key] = client_url(call, media, key)
    return out


def data_uri(f: OutputFile) -> str:
    return f"data:{f.content_type};base64,{base64.b64encode(f.data).decode()}"


def is_data_uri(value: Any) -> bool:
    """Whether a value is a ``data:`` URI as :func:`parse_client_url` reads one (whitespace
    around it, its scheme in any case)."""
    return isinstance(value, str) and value.lstrip()[:5].lower() == "data:"


def from_data_uri(uri: str, what: str = "file") -> OutputFile:
    head, sep, payload = uri.strip().partition(",")
    if not is_data_uri(head) or not sep or not head.endswith(";base64"):
        raise errors.InvalidInput(f"{what}: a data URI must be base64 (data:TYPE;base64,...)")
    content_type = head[5:].removesuffix(";base64") or "application/octet-stream"
    return OutputFile(b64decode(payload, what), content_type, name_for(what, content_type))


def b64decode(text: str, what: str = "data") -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise errors.InvalidInput(f"{what}: not valid base64") from exc


def output_from_b64(text: str, content_type: str, name: str) -> OutputFile:
    """A base64 output of the backend; bad base64 from a backend is a bad response."""
    try:
        return OutputFile(base64.b64decode(text, validate=True), content_type, name)
    except (binascii.Error, ValueError) as exc:
        raise errors.BadResponse(f"{name}: the backend sent invalid base64") from exc


IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
)


def sniff_image(data: bytes) -> str | None:
    """The image type its first bytes show (a backend's label may be wrong or missing)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in IMAGE_MAGIC if data.startswith(magic)), None)


# The media types models deal in, so names do not depend on the host's /etc/mime.types.
EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/ogg": ".ogg",
    "audio/flac": ".flac",
    "audio/aac": ".aac",
    "audio/mp4": ".m4a",
    "audio/webm": ".webm",
}


def name_for(stem: str, content_type: str) -> str:
    kind = content_type.split(";")[0].strip().lower()
    ext = EXTENSIONS.get(kind) or mimetypes.guess_extension(kind) or ".bin"
    return f"{stem}{ext}"
