"""AIFlow's error answers: ``{error_code, message, details}`` with the HTTP status AIFlow
gives each code (its docs/error_codes.md and core/errors.py), so its clients read taskgate's
refusals as they read AIFlow's. Beside them: ``detail`` (the message, as AIFlow's answers
were before it had codes, and as FastAPI answers) and taskgate's own ``error`` object.

Each of taskgate's refusals maps to the closest code: a body that is not JSON is
``E1000004``, a missing field ``E1000003``, a bad field of the request the code of that part
(``model_spec`` E3000010, ``payload`` E3000011, ``callback`` E3000012, ``inference_params``
E4000006, an unknown ``task_type`` E3000009, an unknown model E4000002), any other bad
field ``E1000002``; a missing key ``E2000003``, a wrong one ``E2000002``; no such task
``E3000001``. A key over its limits keeps 429 and its ``Retry-After`` (AIFlow has no code
for it; ``E4000004``, "busy", is the closest, with ``details.retry_after`` as AIFlow's
docs show it), since clients and HTTP libraries retry a 429 after that delay.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from taskgate.api.compat import refusal
from taskgate.api.responses import JSON, error_headers
from taskgate.errors import LimitExceeded, Unauthorized

# AIFlow's codes that taskgate answers, with the HTTP status AIFlow gives each
STATUS = {
    "E1000001": 400,  # invalid request
    "E1000002": 400,  # invalid parameter
    "E1000003": 400,  # missing parameter
    "E1000004": 400,  # invalid JSON
    "E1000005": 404,  # resource not found
    "E1000099": 500,  # internal error
    "E2000002": 401,  # invalid API key
    "E2000003": 401,  # missing API key
    "E2000004": 403,  # forbidden
    "E3000001": 404,  # task not found
    "E3000005": 409,  # task already exists
    "E3000009": 400,  # invalid task type
    "E3000010": 400,  # invalid model spec
    "E3000011": 400,  # invalid payload
    "E3000012": 400,  # invalid callback
    "E4000002": 404,  # model not found
    "E4000004": 503,  # forwarder busy (answered 429 for a key over its limits, see above)
    "E4000006": 400,  # invalid inference params
    "E5000007": 413,  # file too large
    "E7000004": 503,  # service unavailable
}

# a request's part (taskgate's error ``field``, or the first part of a schema error's
# place) -> the code of a bad value there
PART_CODES = {
    "task_type": "E3000009",
    "kind": "E3000009",
    "model": "E4000002",
    "model_spec": "E3000010",
    "payload": "E3000011",
    "input": "E3000011",
    "callback": "E3000012",
    "webhook_url": "E3000012",
    "inference_params": "E4000006",
    "params": "E4000006",
}

# taskgate's error types with one code whatever the field
TYPE_CODES = {
    "forbidden": "E2000004",
    "conflict": "E3000005",
    "payload_too_large": "E5000007",
    "rate_limited": "E4000004",
    "internal_error": "E1000099",
    "unavailable": "E7000004",
    "unsupported_media_type": "E1000001",
    "method_not_allowed": "E1000001",
}


def aiflow_refusal(request: Request, exc: Exception) -> Response:
    """The answer to a refused AIFlow request, in AIFlow's shape with taskgate's beside it."""
    status, message, error = refusal(exc)
    code, details = classify(exc, error, request.path_params.get("task_id"))
    if not isinstance(exc, LimitExceeded):
        status = STATUS[code]
    body = {
        "error_code": code,
        "message": message,
        "details": details,
        "detail": message,
        "error": error,
    }
    response = JSON(body, status_code=status)
    response.headers.update(error_headers(exc))
    return response


def classify(
    exc: Exception, error: dict[str, Any], task_id: str | None = None
) -> tuple[str, dict[str, Any]]:
    """AIFlow's code for a refusal and the ``details`` that go with it (never a value the
    client sent: it may hold a secret)."""
    if isinstance(exc, RequestValidationError):
        return _schema_code(error, exc.errors())
    type_ = str(error.get("type", ""))
    field = error.get("field")
    if type_ == "not_found":
        return ("E3000001", {"task_id": task_id}) if task_id else ("E1000005", {})
    if type_ == "unauthorized":
        missing = isinstance(exc, Unauthorized) and exc.message.startswith("missing")
        return ("E2000003" if missing else "E2000002"), {}
    if type_ in TYPE_CODES:
        extra = {"retry_after": error["retry_after"]} if "retry_after" in error else {}
        return TYPE_CODES[type_], extra
    if field == "body":
        return "E1000004", {}
    if isinstance(field, str):
        return PART_CODES.get(field, "E1000002"), {"parameter": field}
    return ("E1000002" if type_ == "bad_request" else "E1000099"), {}


def _schema_code(error: dict[str, Any], problems: Any) -> tuple[str, dict[str, Any]]:
    """A body that is not JSON, or one that breaks the request's schema: AIFlow's list of
    ``validation_errors`` ({field, message, type}) and the code of the first problem."""
    if error.get("field") == "body":
        return "E1000004", {}
    listed = [
        {
            "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body",
            "message": str(e.get("msg", "invalid")),
            "type": str(e.get("type", "")),
        }
        for e in problems
    ]
    first = listed[0] if listed else {"field": "", "type": ""}
    if first["type"] == "missing":
        code = "E1000003"
    else:
        code = PART_CODES.get(first["field"].partition(".")[0], "E1000002")
    return code, {"validation_errors": listed}
