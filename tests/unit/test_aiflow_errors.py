"""AIFlow's error codes for taskgate's refusals (api/aiflow_errors.py), without a server:
each refusal's code, the HTTP status AIFlow gives that code, and the details beside it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from taskgate.api import aiflow_errors
from taskgate.api.compat import refusal
from taskgate.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InternalError,
    LimitExceeded,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
)


def code_of(exc: Exception, task_id: str | None = None) -> tuple[str, dict[str, Any]]:
    return aiflow_errors.classify(exc, refusal(exc)[2], task_id)


def schema_error(*errors: dict[str, Any]) -> RequestValidationError:
    return RequestValidationError(list(errors))


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (BadRequest("unknown task_type 'x'", field="task_type"), "E3000009"),
        (BadRequest("unknown kind 'x'", field="kind"), "E3000009"),
        (BadRequest("unknown model 'x': no route serves it", field="model"), "E4000002"),
        (
            BadRequest("model_spec.endpoint: host 'x' is not allowed", field="model_spec"),
            "E3000010",
        ),
        (BadRequest("form field 'payload' must be a JSON string", field="payload"), "E3000011"),
        (BadRequest("webhook_url refused: loopback", field="webhook_url"), "E3000012"),
        (BadRequest("bad", field="inference_params"), "E4000006"),
        (BadRequest("Invalid 'temperature'", field="temperature"), "E1000002"),
        (BadRequest("input and params must be storable JSON"), "E1000002"),
        (Unauthorized("missing API key"), "E2000003"),
        (Unauthorized("invalid or revoked API key"), "E2000002"),
        (Forbidden("no"), "E2000004"),
        (NotFound("no file 'f'"), "E1000005"),
        (Conflict("idempotency key reused"), "E3000005"),
        (PayloadTooLarge("too big"), "E5000007"),
        (HTTPException(413, "request body over the limit"), "E5000007"),
        (HTTPException(415, "Content-Type must be application/json"), "E1000001"),
        (InternalError("oops"), "E1000099"),
        (RuntimeError("a bug"), "E1000099"),
        (Unavailable("the store cannot be reached"), "E7000004"),
        (LimitExceeded("over", limit="requests_per_minute", retry_after=7), "E4000004"),
    ],
)
def test_each_refusal_maps_to_the_closest_aiflow_code(exc: Exception, code: str) -> None:
    assert code_of(exc)[0] == code
    assert code in aiflow_errors.STATUS


def test_the_details_name_the_task_the_parameter_and_the_wait() -> None:
    assert code_of(NotFound("no task 't1'"), "t1") == ("E3000001", {"task_id": "t1"})
    bad = BadRequest("Invalid 'temperature'", field="temperature")
    assert code_of(bad) == ("E1000002", {"parameter": "temperature"})
    limited = LimitExceeded("over", limit="requests_per_minute", retry_after=7)
    assert code_of(limited) == ("E4000004", {"retry_after": 7})


def test_schema_errors_list_aiflows_validation_errors_without_the_values_sent() -> None:
    missing = {"type": "missing", "loc": ("body", "task_type"), "msg": "Field required"}
    wrong = {
        "type": "dict_type",
        "loc": ("body", "payload"),
        "msg": "Input should be a valid dictionary",
        "input": "sk-secret",
    }
    code, details = code_of(schema_error(missing, wrong))
    assert code == "E1000003"
    assert details == {
        "validation_errors": [
            {"field": "task_type", "message": "Field required", "type": "missing"},
            {
                "field": "payload",
                "message": "Input should be a valid dictionary",
                "type": "dict_type",
            },
        ]
    }
    assert code_of(schema_error(wrong))[0] == "E3000011"
    nested = {"type": "string_type", "loc": ("body", "model_spec", "name"), "msg": "x"}
    assert code_of(schema_error(nested))[0] == "E3000010"
    other = {"type": "literal_error", "loc": ("body", "priority"), "msg": "x"}
    assert code_of(schema_error(other))[0] == "E1000002"


def test_a_body_that_is_not_json_is_invalid_json_and_says_where() -> None:
    raw = b'{"a": 1,\n "b": }'
    error = {"type": "json_invalid", "loc": ("body", 15), "msg": "JSON decode error"}
    exc = RequestValidationError([{**error, "ctx": {"error": "unexpected character"}}], body=raw)
    status, message, _ = refusal(exc)
    assert status == 400
    assert message == "malformed JSON body: unexpected character at line 2 column 7"
    assert code_of(exc) == ("E1000004", {})


@pytest.mark.parametrize(
    ("code", "status"),
    [("E1000004", 400), ("E2000002", 401), ("E2000004", 403), ("E3000001", 404)],
)
def test_statuses_are_aiflows(code: str, status: int) -> None:
    # as AIFlow's core/errors.py ERROR_CODE_TO_HTTP_STATUS has them
    assert aiflow_errors.STATUS[code] == status
