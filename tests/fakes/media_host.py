"""A web host of media files a client names by URL (for downloads of clients' media URLs,
providers/fetch.py): ``/cat.png``; ``/sized`` and ``/chunked``, over ``LIMIT`` bytes with a
``Content-Length`` and chunked (160 MiB, unless the reader hangs up first: ``sent`` and
``cut`` tell); ``/slow``, which answers after 30 s; ``/hop``, a redirect to ``/cat.png`` on
127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from tests.fakes import LoopbackServer

PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)
LIMIT = 64 * 1024


class MediaHost(LoopbackServer):
    """Serves an image, a large body (with its length, or chunked and endless as far as any
    limit goes), one that comes too late, and a redirect to its image at 127.0.0.1."""

    def __init__(self) -> None:
        self.paths: list[str] = []  # every request's path
        self.sent: dict[str, int] = {}  # bytes written, by path
        self.cut: set[str] = set()  # paths whose reader hung up before the end

    def routes(self, app: web.Application) -> None:
        app.middlewares.append(self._record)
        app.router.add_get("/cat.png", self.cat)
        app.router.add_get("/sized", self.sized)
        app.router.add_get("/chunked", self.chunked)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/hop", self.hop)

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.paths.append(request.path)
        return await handler(request)

    async def cat(self, request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    async def sized(self, request: web.Request) -> web.Response:
        return web.Response(body=bytes(LIMIT + 1), content_type="image/png")

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        self.sent["/chunked"] = 0
        try:
            for _ in range(10_000):  # 160 MiB, unless the reader stops first
                await resp.write(bytes(16 * 1024))
                self.sent["/chunked"] += 16 * 1024
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.cut.add("/chunked")
            raise
        return resp

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(body=PNG, content_type="image/png")

    async def hop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{self.port}/cat.png")
