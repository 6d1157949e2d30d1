"""A task's callback beyond taskgate's own webhook event: the headers a client asked to be
sent with it, and the body shape of the API it came through.

AIFlow's clients name ``callback: {url, headers}``: the URL is the task's webhook, and its
receiver reads AIFlow's fields (``task_id``, ``status``, ``result`` on success, ``error``
on failure, as AIFlow's gateway POSTed them). So such a task's event carries those fields
beside taskgate's (``id``, ``type``, ``created_at``, ``data``), and its deliveries carry the
headers (often a bearer token for the receiver) beside taskgate's signature headers.

The headers are kept like secrets: checked here at submit (a header the HTTP exchange or the
signature owns, a malformed one, too many or too long are refused, naming the header, never
its value), stored apart from the task (``task_callbacks``, copied into its delivery rows;
both removed with the task), and never shown in a response, view, event, log line or task log.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from taskgate.errors import BadRequest
from taskgate.models import Status, Task
from taskgate.views import iso

AIFLOW = "aiflow"

MAX_HEADERS = 20
MAX_NAME = 100
MAX_VALUE = 4096
MAX_TOTAL = 16384  # characters of all names and values together

# What the HTTP exchange, the body or the signature owns: a client may not set these.
RESERVED = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)
RESERVED_PREFIX = "x-taskgate-"
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP field name (RFC 9110)
VALUE = re.compile(r"[\t\x20-\x7e]*")  # visible ASCII, space, tab: no line breaks


@dataclass(frozen=True, slots=True)
class Callback:
    """How a task's webhook is sent: in ``dialect``'s body shape (None: taskgate's event
    alone), with ``headers`` (checked; kept out of any repr, as they hold secrets)."""

    dialect: str | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False)


def check_headers(
    headers: Mapping[str, str] | None, where: str = "callback.headers"
) -> dict[str, str]:
    """The headers a client asked for, or BadRequest saying which one is refused and why."""
    out: dict[str, str] = {}
    if not headers:
        return out
    if len(headers) > MAX_HEADERS:
        raise BadRequest(f"{where}: at most {MAX_HEADERS} headers", field=where)
    seen: set[str] = set()
    for name, value in headers.items():
        _check_header(name, value, where)
        if name.lower() in seen:
            raise BadRequest(f"{where}: {name!r} is given twice", field=where)
        seen.add(name.lower())
        out[name] = value
    if sum(len(n) + len(v) for n, v in out.items()) > MAX_TOTAL:
        raise BadRequest(f"{where}: at most {MAX_TOTAL} characters in all", field=where)
    return out


def _check_header(name: str, value: str, where: str) -> None:
    if not (0 < len(name) <= MAX_NAME and TOKEN.fullmatch(name)):
        raise BadRequest(
            f"{where}: a header name must have 1 to {MAX_NAME} letters, digits or"
            " !#$%&'*+-.^_`|~ characters",
            field=where,
        )
    lower = name.lower()
    if lower in RESERVED or lower.startswith(RESERVED_PREFIX):
        raise BadRequest(
            f"{where}: {name!r} may not be set: taskgate sets it (Host, Content-Length,"
            " Content-Type, X-Taskgate-* and hop-by-hop headers are its own)",
            field=where,
        )
    if len(value) > MAX_VALUE:
        raise BadRequest(
            f"{where}: the value of {name!r} is over {MAX_VALUE} characters", field=where
        )
    if not VALUE.fullmatch(value):
        raise BadRequest(
            f"{where}: the value of {name!r} must be printable ASCII on one line", field=where
        )


def sent_headers(client: Mapping[str, str] | None, ours: dict[str, str]) -> dict[str, str]:
    """The headers of one delivery: the client's, then taskgate's (its signature, content
    type), which win over any the client named, but for ``User-Agent``."""
    if not client:
        return ours
    names = {k.lower() for k in client}
    kept = {k: v for k, v in ours.items() if not (k.lower() == "user-agent" and k.lower() in names)}
    mine = {k.lower() for k in kept}
    return {**{k: v for k, v in client.items() if k.lower() not in mine}, **kept}


# --- bodies ---------------------------------------------------------------------------


def aiflow_status(task: Task) -> str:
    """AIFlow's status of a task: a cancelled task is FAILED (AIFlow's clients wait for
    SUCCESS, FAILED or TIMEOUT, and would never stop on a status they do not know)."""
    return "FAILED" if task.status is Status.CANCELLED else task.status.value


def aiflow_result(task: Task, stored: Any) -> dict[str, Any] | None:
    """AIFlow's ``result{output, model, timestamp}``, with taskgate's usage and files, of a
    task whose stored result is ``stored`` (its file URLs as the caller wants them)."""
    if task.status is not Status.SUCCESS:
        return None
    stored = stored if isinstance(stored, dict) else {}
    out = {"output": stored.get("output"), "model": task.model, "timestamp": iso(task.finished_at)}
    out.update({k: stored[k] for k in ("usage", "files") if stored.get(k)})
    return out


def aiflow_fields(task: Task) -> dict[str, Any]:
    """What AIFlow's gateway POSTed to a client's callback: ``task_id``, ``status``, and
    ``result`` (success) or ``error`` (failure); here with ``error_type`` too. File URLs are
    relative to taskgate's address (``/v1/files/{id}``), as in the event's ``data``."""
    error = task.error or {}
    failed = task.status is not Status.SUCCESS
    return {
        "task_id": task.id,
        "status": aiflow_status(task),
        "result": aiflow_result(task, task.result),
        "error": error.get("message") if failed else None,
        "error_type": error.get("type") if failed else None,
    }


BODIES: dict[str, Callable[[Task], dict[str, Any]]] = {AIFLOW: aiflow_fields}


def body(dialect: str | None, task: Task, event: dict[str, Any]) -> dict[str, Any]:
    """The body of a task's webhook: taskgate's event, with the dialect's fields beside it."""
    shape = BODIES.get(dialect or "")
    return {**event, **shape(task)} if shape is not None else event
