"""A webhook receiver over real HTTP on 127.0.0.1: what a taskgate user runs to get events.

    with in_thread(WebhookReceiver()) as hooks:          # or: async with WebhookReceiver()
        url = hooks.url("orders")                         # http://127.0.0.1:PORT/hooks/orders
        ...
        [req] = hooks.wait_for(1)                         # Received(path, headers, body, at)

It takes ``POST /hooks/{name}`` only (405 for another method, 404 for another path), records
every request in ``hooks.requests`` with its raw body and headers (before answering, so a
request that is never answered is still seen), and answers 200 ``{"ok": true}``.
``hooks.script(*modes)`` queues behaviours, one taken by each request that follows;
``hooks.default`` is the mode once the script is used up:

    ok        200
    fail      500 with a JSON error body
    gone      410 (a receiver that wants no more)
    slow      429 with Retry-After: 1
    hang      answer nothing for ``hang_seconds`` (the sender's timeout, or its death, ends it)
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.fakes import LoopbackServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def event_id(self) -> str:
        return self.headers.get("X-Taskgate-Event-Id", "")


class WebhookReceiver(LoopbackServer):
    def __init__(self, hang_seconds: float = 60.0) -> None:
        self.requests: list[Received] = []
        self.default = "ok"
        self.hang_seconds = hang_seconds
        self._script: deque[str] = deque()

    def url(self, name: str = "hook") -> str:
        return f"{self.base_url}/hooks/{name}"

    def script(self, *modes: str) -> None:
        self._script.extend(modes)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hooks/{name}", self._hook)

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items()}
        self.requests.append(Received(request.path, headers, body, time.time()))
        mode = self._script.popleft() if self._script else self.default
        if mode == "fail":
            return web.json_response({"error": "receiver is down"}, status=500)
        if mode == "gone":
            return web.json_response({"error": "no such hook"}, status=410)
        if mode == "slow":
            return web.json_response(
                {"error": "slow down"}, status=429, headers={"Retry-After": "1"}
            )
        if mode == "hang":
            await asyncio.sleep(self.hang_seconds)
        return web.json_response({"ok": True})

    def wait_for(self, n: int, timeout: float = 20.0) -> list[Received]:
        """Block until at least ``n`` requests came (for tests that drive a server process)."""
        end = time.monotonic() + timeout
        while len(self.requests) < n:
            assert time.monotonic() < end, f"{len(self.requests)} of {n} webhooks came"
            time.sleep(0.02)
        return list(self.requests)

    async def arrived(self, n: int, timeout: float = 10.0) -> list[Received]:
        """:meth:`wait_for` for tests in the receiver's own event loop."""
        end = time.monotonic() + timeout
        while len(self.requests) < n:
            assert time.monotonic() < end, f"{len(self.requests)} of {n} webhooks came"
            await asyncio.sleep(0.01)
        return list(self.requests)
