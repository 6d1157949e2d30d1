"""Entries of a task's timeline that its row and its attempts do not hold (see
``taskgate.ops.timeline``): its backend job submitted and finished, late results, webhook
delivery tries, tracebacks (``log_errors_to_store``), admin actions. Each is written in the
transaction of the change it records where there is one, and there are a bounded number
per attempt."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from taskgate.models import Task
from taskgate.store.database import Conn, Database, rows
from taskgate.store.schema import task_logs

MESSAGE_MAX = 2000


@dataclass(frozen=True, slots=True)
class LogEntry:
    task_id: str
    at: float
    event: str
    attempt: int | None = None
    instance: str | None = None
    message: str | None = None
    data: dict[str, Any] | None = None


class TaskLogs:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, entry: LogEntry) -> None:
        await self._db.write(add_in, [entry])

    async def job_finished(self, task: Task, instance: str, polls: int, error: str | None) -> None:
        """A backend job ended, after ``polls`` polls (summarised: one entry, not one each)."""
        said = f"the job failed: {error}" if error else "the job finished"
        data = {"polls": polls}
        noted = entry(
            task.id,
            "job_finished",
            attempt=task.attempts,
            instance=instance,
            message=said,
            data=data,
        )
        await self._db.write(add_in, [noted])
        self._db.observer.job_finished(task, instance, polls, error)

    async def of(self, task_id: str, limit: int) -> list[LogEntry]:
        """The task's newest ``limit`` entries, oldest first."""
        q = (
            sa.select(task_logs)
            .where(task_logs.c.task_id == task_id)
            .order_by(task_logs.c.id.desc())
            .limit(limit)
        )
        found = await self._db.read(rows, q)
        return [LogEntry(**{k: v for k, v in r.items() if k != "id"}) for r in reversed(found)]


def add_in(conn: Conn, entries: list[LogEntry]) -> None:
    """Add entries in the caller's transaction."""
    conn.execute(task_logs.insert(), [_row(e) for e in entries])


def entry(task_id: str, event: str, **kw: Any) -> LogEntry:
    """An entry stamped now, its message cut to what the column holds."""
    if kw.get("message"):
        kw["message"] = kw["message"][:MESSAGE_MAX]
    return LogEntry(task_id, time.time(), event, **kw)


def _row(e: LogEntry) -> dict[str, Any]:
    return {
        "task_id": e.task_id,
        "at": e.at,
        "event": e.event,
        "attempt": e.attempt,
        "instance": e.instance,
        "message": e.message,
        "data": e.data,
    }
