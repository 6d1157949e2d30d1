"""A task's own log: its timeline, put together from what the store already keeps (the
task's row: submitted, ended; its attempts: each start on an instance and each ending, with
the backend's error and the retry decision) and the entries only ``task_logs`` holds
(backend jobs, webhook tries, tracebacks, admin actions). Nothing is written twice, and the
hot path writes no extra row for it."""

from __future__ import annotations

from typing import Any

from taskgate.models import Attempt, Task
from taskgate.store.task_logs import LogEntry
from taskgate.views import iso

LIMIT = 200  # a timeline shows at most its newest entries


def timeline(
    task: Task, attempts: list[Attempt], logged: list[LogEntry], limit: int = LIMIT
) -> list[dict[str, Any]]:
    """The task's entries, oldest first (the newest ``limit`` of them)."""
    entries = [
        _entry(
            task.created_at,
            "submitted",
            message=f"{task.kind} on {task.model}",
            data={"route": task.route, "priority": task.priority.label},
        )
    ]
    for a in attempts:
        entries.append(
            _entry(a.started_at, "started", a.number, a.instance, data={"route": a.route})
        )
        if a.ended_at is not None:
            entries.append(_attempt_end(a))
    entries += [_entry(e.at, e.event, e.attempt, e.instance, e.message, e.data) for e in logged]
    if task.terminal and task.finished_at is not None:
        error = task.error or {}
        entries.append(
            _entry(
                task.finished_at,
                "ended",
                task.attempts or None,
                task.instance,
                error.get("message") if error else None,
                {
                    "status": task.status.value,
                    **({"error_type": error["type"]} if "type" in error else {}),
                },
            )
        )
    entries.sort(key=lambda e: e["_at"])  # stable: same-time entries keep the order above
    for e in entries:
        del e["_at"]
    return entries[-limit:]


def _attempt_end(a: Attempt) -> dict[str, Any]:
    """An attempt's ending: its outcome, how long it ran, the backend's error (its message
    as the entry's message; its type, code and status as data) and, for a retry, the wait."""
    error = dict(a.error or {})
    message = error.pop("message", None)
    ended = a.ended_at if a.ended_at is not None else a.started_at
    data: dict[str, Any] = {"outcome": a.outcome, "seconds": round(ended - a.started_at, 3)}
    if error:
        data["error"] = error
    if a.retry_at is not None:
        data["retry_in"] = round(max(0.0, a.retry_at - ended), 3)
    return _entry(ended, a.outcome or "ended", a.number, a.instance, message, data)


def _entry(
    at: float,
    event: str,
    attempt: int | None = None,
    instance: str | None = None,
    message: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "_at": at,
        "at": iso(at),
        "event": event,
        "attempt": attempt,
        "instance": instance,
        "message": message,
        "data": data or {},
    }
