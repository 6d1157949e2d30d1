"""Output files a fake backend serves from itself at signed, expiring URLs, as OpenAI (Azure
blob storage) and Ark (TOS object storage) hand out their images and videos.

``shelf.put(...)`` keeps the bytes and gives the URL (with a fake signature in its query);
``GET /files/{name}`` serves them. A file put with ``expired=True`` answers 403 with an object
store's XML error, like a signed URL past its expiry; an unknown name or a URL without its
signature answers the same. ``shelf.downloads`` records the names fetched.
"""

from __future__ import annotations

import hashlib
import secrets

from aiohttp import web

from taskgate.providers.mock import solid_png

EXPIRED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    "<Message>Request has expired</Message><RequestId>fake</RequestId></Error>"
)


class Shelf:
    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.expired: set[str] = set()
        self.downloads: list[str] = []

    def put(self, root: str, data: bytes, content_type: str, ext: str, expired: bool) -> str:
        """Keep a file; its URL on the fake whose base is ``root`` (``http://host:port``)."""
        name = secrets.token_hex(8) + ext
        self.files[name] = (data, content_type)
        if expired:
            self.expired.add(name)
        return f"{root}/files/{name}?X-Expires=3600&X-Signature={secrets.token_hex(16)}"

    def add_route(self, app: web.Application) -> None:
        app.router.add_get("/files/{name}", self.serve)

    async def serve(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.downloads.append(name)
        signed = "X-Signature" in request.query
        if name in self.expired or name not in self.files or not signed:
            return web.Response(status=403, text=EXPIRED, content_type="application/xml")
        data, content_type = self.files[name]
        return web.Response(body=data, content_type=content_type)


def fake_image(prompt: str) -> bytes:
    """The image a fake makes for a prompt: a small real PNG whose colour the prompt fixes."""
    digest = hashlib.sha256(prompt.encode()).digest()
    return solid_png(8, (digest[0], digest[1], digest[2]))


def fake_video(task_id: str) -> bytes:
    """The bytes of a fake video: an MP4 ``ftyp`` box, then the task id."""
    return b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomavc1" + task_id.encode()


def root_of(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"
