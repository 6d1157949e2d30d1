"""Request body size limit as plain ASGI middleware.

The 413 is raised from ``receive`` when the app reads the body: at once for a declared
Content-Length over the limit (nothing is read), and once a body streamed without one passes
the limit. So it reaches the route that reads the body like any other refusal, and comes out
in that API's error shape. Only requests whose body a route reads (POST, PUT, PATCH) are
limited: an event stream (a GET) also calls ``receive``, to hear the client hang up, and a
body it never reads must not cut it off.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException

WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class BodyLimit:
    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in WITH_BODY:
            return await self.app(scope, receive, send)
        declared = next(
            (int(v) for n, v in scope["headers"] if n == b"content-length" and v.isdigit()), 0
        )
        seen = 0

        async def limited_receive() -> Any:
            nonlocal seen
            if declared > self.max_bytes:
                raise HTTPException(413, self._message())
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited_receive, send)

    def _message(self) -> str:
        return f"request body over the limit of {self.max_bytes} bytes"
