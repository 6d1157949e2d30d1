"""Request body size limit as plain ASGI middleware, answering in taskgate's JSON error shape.

A declared Content-Length over the limit is refused before anything is read; a body streamed
without one is cut off once it passes the limit (the 413 is raised from ``receive``, so it
reaches the app's error handler like any other HTTP error).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.exceptions import HTTPException

from taskgate.api.responses import error_body


class BodyLimit:
    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                return await self._refuse(send)
        seen = 0

        async def limited_receive() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited_receive, send)

    def _message(self) -> str:
        return f"request body over the limit of {self.max_bytes} bytes"

    async def _refuse(self, send: Any) -> None:
        body = orjson.dumps(error_body("payload_too_large", self._message()))
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
