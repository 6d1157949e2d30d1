"""JSON request bodies read strictly, by every route of every API.

Starlette reads a JSON body with the standard library, which takes ``NaN``, ``Infinity``
and numbers beyond a double (``1e400``, read as infinity). None of those is JSON, and a
non-finite number stored in a task breaks whatever later does arithmetic on it. orjson
refuses them (and nesting deeper than 1,024 levels); its ``JSONDecodeError`` is the standard
library's, so FastAPI answers it as the malformed body it is (``json_invalid``). A body of
another content type on a route that takes JSON is a 415.

orjson reads an integer beyond 64 bits as a double, as JavaScript does.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import Response

from taskgate.api.responses import as_api_error
from taskgate.errors import ApiError

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class StrictRoute(APIRoute):
    """An APIRoute whose JSON body, if it takes one, must be strict JSON, and whose
    unexpected failures are an :class:`~taskgate.errors.InternalError` (a JSON 500 answered
    by the app's handlers, not Starlette's last resort, which closes the connection)."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        body = self.body_field
        takes_json = body is not None and not isinstance(body.field_info, params.Form)

        async def strict(request: Request) -> Response:
            if takes_json:
                check_media_type(request)
            try:
                return await handler(StrictJSONRequest(request.scope, request.receive))
            except (ApiError, HTTPException, RequestValidationError):
                raise
            except Exception as exc:  # answered here, so the connection is kept alive
                raise as_api_error(exc) from exc

        return strict


def check_media_type(request: Request) -> None:
    """A body sent as anything but JSON (``application/json``, ``+json``) is a 415; a
    request that names no type is read as JSON."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media and not (media == "application/json" or media.endswith("+json")):
        raise HTTPException(415, "Content-Type must be application/json")


def json_body(raw: bytes) -> Any:
    """A body parsed as :class:`StrictRoute` parses it, for handlers that read it themselves;
    a malformed one is the same error FastAPI raises (``json_invalid``)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestValidationError([malformed(exc)], body=raw) from None


def malformed(exc: orjson.JSONDecodeError) -> dict[str, Any]:
    """FastAPI's error for a body that is not JSON, with the parser's reason."""
    return {
        "type": "json_invalid",
        "loc": ("body", exc.pos),
        "msg": "JSON decode error",
        "ctx": {"error": exc.msg},
    }


def malformed_message(exc: RequestValidationError) -> str | None:
    """ "malformed JSON body", the parser's reason and where in the body it stopped (line
    and column), when that is what ``exc`` says; None when it is about the body's fields."""
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            why = (error.get("ctx") or {}).get("error")
            message = f"malformed JSON body: {why}" if why else "malformed JSON body"
            return message + _where(exc.body, error.get("loc", ()))
    return None


def _where(body: Any, loc: Any) -> str:
    """' at line L column C' of the offset in ``loc`` (FastAPI's ``("body", offset)``)."""
    offset = loc[1] if len(loc) == 2 and isinstance(loc[1], int) else None
    if offset is None or not isinstance(body, str | bytes):
        return ""
    before = body[:offset]
    newline = "\n" if isinstance(before, str) else b"\n"
    line = before.count(newline) + 1  # type: ignore[arg-type]
    column = offset - before.rfind(newline)  # type: ignore[arg-type]
    return f" at line {line} column {column}"
