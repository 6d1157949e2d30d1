"""A task's callback (taskgate.callbacks): which headers a client may have sent, how they join
taskgate's own on a delivery, and the AIFlow fields beside taskgate's event."""

from __future__ import annotations

import time
from typing import Any

import pytest

from taskgate import callbacks
from taskgate.callbacks import AIFLOW, Callback, check_headers, sent_headers
from taskgate.errors import BadRequest
from taskgate.models import Priority, Status, Task

SECRET = "Bearer cb-secret-9f2e61"


def test_ordinary_headers_are_kept_as_given() -> None:
    given = {"Authorization": SECRET, "X-Client-Trace": "abc-1", "User-Agent": "my-app/2"}
    assert check_headers(given) == given
    assert check_headers(None) == {} == check_headers({})


@pytest.mark.parametrize(
    "name",
    [
        "Host",
        "content-length",
        "Content-Type",
        "Content-Encoding",
        "Transfer-Encoding",
        "Connection",
        "Keep-Alive",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Upgrade",
        "X-Taskgate-Signature",
        "x-taskgate-event-id",
        "X-TASKGATE-TIMESTAMP",
        "X-Taskgate-Anything",
    ],
)
def test_headers_taskgate_or_http_owns_are_refused(name: str) -> None:
    with pytest.raises(BadRequest, match="may not be set: taskgate sets it") as err:
        check_headers({name: SECRET})
    assert repr(name) in err.value.message and SECRET not in err.value.message
    assert err.value.details["field"] == "callback.headers"


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ({f"X-H{i}": "v" for i in range(21)}, "at most 20 headers"),
        ({"": SECRET}, "a header name must have 1 to 100"),
        ({"X" * 101: SECRET}, "a header name must have 1 to 100"),
        ({"Bad Name": SECRET}, "a header name must"),
        ({"X-Évil": SECRET}, "a header name must"),
        ({"X-Split": SECRET + "\r\nX-Injected: 1"}, "printable ASCII on one line"),
        ({"X-Nul": "a\0b"}, "printable ASCII on one line"),
        ({"X-Long": "v" * 4097}, "over 4096 characters"),
        ({"Authorization": SECRET, "authorization": SECRET}, "is given twice"),
        ({f"X-H{i}": "v" * 4000 for i in range(5)}, "at most 16384 characters in all"),
    ],
)
def test_malformed_too_many_or_too_long_headers_are_refused(
    headers: dict[str, str], needle: str
) -> None:
    with pytest.raises(BadRequest, match=needle) as err:
        check_headers(headers)
    assert SECRET not in err.value.message  # a value is never echoed


def test_a_delivery_sends_the_clients_headers_and_taskgates_own_which_win() -> None:
    ours = {"Content-Type": "application/json", "User-Agent": "taskgate-webhooks", "X-A": "1"}
    assert sent_headers(None, ours) == ours
    sent = sent_headers({"Authorization": SECRET, "x-a": "client", "user-agent": "app/1"}, ours)
    assert sent == {
        "Authorization": SECRET,
        "user-agent": "app/1",  # the one header of ours a client may replace
        "Content-Type": "application/json",
        "X-A": "1",
    }


def test_a_callbacks_headers_stay_out_of_its_repr() -> None:
    cb = Callback(AIFLOW, {"Authorization": SECRET})
    assert SECRET not in repr(cb) and "aiflow" in repr(cb)


def task(status: Status, **changes: Any) -> Task:
    now = time.time()
    fields: dict[str, Any] = {
        "id": "t1",
        "tenant": "acme",
        "api_key_id": "k",
        "kind": "image_edit",
        "model": "gpt-image-1",
        "route": "r",
        "priority": Priority.DEFAULT,
        "status": status,
        "input": {},
        "params": {},
        "created_at": now,
        "updated_at": now,
        "finished_at": now,
    }
    return Task(**{**fields, **changes})


def test_the_aiflow_body_holds_what_an_aiflow_receiver_reads_beside_the_event() -> None:
    stored = {"output": {"text": "hi"}, "usage": {"images": 1}, "files": [{"url": "/v1/files/f"}]}
    done = task(Status.SUCCESS, result=stored)
    event = {"id": "evt_t1_finished", "type": "task.finished", "created_at": "x", "data": {}}
    body = callbacks.body(AIFLOW, done, event)
    assert {k: body[k] for k in event} == event
    assert (body["task_id"], body["status"], body["error"]) == ("t1", "SUCCESS", None)
    assert body["result"]["output"] == {"text": "hi"} and body["result"]["model"] == "gpt-image-1"
    assert body["result"]["files"] == stored["files"] and body["result"]["timestamp"]
    failed = callbacks.aiflow_fields(task(Status.FAILED, error={"type": "x", "message": "no"}))
    assert failed == {
        "task_id": "t1",
        "status": "FAILED",
        "result": None,
        "error": "no",
        "error_type": "x",
    }
    cancelled = callbacks.aiflow_fields(task(Status.CANCELLED, error={"type": "cancelled"}))
    assert (cancelled["status"], cancelled["error_type"]) == ("FAILED", "cancelled")
    assert callbacks.body(None, done, event) == event == callbacks.body("later", done, event)
