"""A fake in-house model server for the ``http`` provider: records every request, answers
with queued replies, else echoes the JSON body back with a usage block."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes import LoopbackServer


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON; None when empty or not JSON


class FakeServer(LoopbackServer):
    """Records every request; answers with the queued replies, else echoes the body back."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.replies: deque[web.Response] = deque()

    def reply(
        self, status: int = 200, body: Any = None, text: str | None = None, **kw: Any
    ) -> None:
        if text is None:
            self.replies.append(web.json_response(body, status=status, **kw))
        else:
            self.replies.append(web.Response(status=status, text=text, **kw))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.requests.append(Recorded(request.method, request.path, dict(request.headers), body))
        if request.path == "/slow":
            await asyncio.sleep(3)
        if self.replies:
            return self.replies.popleft()
        return web.json_response({"echo": body, "usage": {"tokens": 3}})

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)
