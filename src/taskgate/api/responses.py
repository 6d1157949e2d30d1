"""JSON responses serialised with orjson (several times faster than the standard encoder),
and the error an exception answers."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import Response

from taskgate.errors import ApiError, InternalError

log = logging.getLogger("taskgate.api")

# the error type of a refusal Starlette or FastAPI raise as an HTTPException, by status
STATUS_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_body(type_: str, message: str, **details: Any) -> dict[str, Any]:
    return {"error": {"type": type_, "message": message, **details}}


def as_api_error(exc: Exception) -> ApiError:
    """What a request that raised ``exc`` answers, in any API: an :class:`ApiError` as it
    is; anything else is a fault of ours, logged with its traceback and answered 500
    without its text (it may quote anything)."""
    if isinstance(exc, ApiError):
        return exc
    log.error("unexpected error answering a request", exc_info=exc)
    return InternalError("internal error; the server's log has the details")


def error_headers(exc: Exception) -> dict[str, str]:
    """The headers an error's answer carries in every API (``Retry-After`` of a 503)."""
    if isinstance(exc, ApiError):
        return exc.headers
    if isinstance(exc, HTTPException):
        return dict(exc.headers or {})
    return {}
