"""What the store is asked to do, as plain records. The store is also the queue: a task is
accepted by one insert, claimed by one conditional update under a lease, and ended by one
conditional update that only the lease holder's current attempt can make."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskgate.models import Priority, Status


@dataclass(frozen=True, slots=True)
class NewTask:
    tenant: str
    api_key_id: str
    kind: str
    model: str
    route: str
    priority: Priority
    input: Any
    params: dict[str, Any]
    max_attempts: int
    run_timeout: float | None = None
    deadline: float | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    batch_id: str | None = None
    conversation_id: str | None = None
    turn_id: int | None = None
    webhook_url: str | None = None
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one attempt, written by the worker that holds the task's lease.

    ``status`` PENDING means "retry": the task goes back to the queue at ``run_after``,
    on ``next_route`` when failing over to a fallback route. ``route`` is where it ran.
    ``provider_job`` is written as given: the backend's job stays on the task when the
    attempt ends with it (done, or handed back to be resumed), and is cleared (None) when a
    retry must submit a new one.
    """

    task_id: str
    worker: str
    attempt: int
    status: Status
    label: str  # success | retry | failover | failed | timeout | cancelled | interrupted | lost
    instance: str
    route: str
    started_at: float
    result: Any = None
    error: dict[str, Any] | None = None
    run_after: float = 0.0
    next_route: str | None = None
    provider_job: dict[str, Any] | None = None
    tokens: int = 0  # taken from the instance's tokens-per-minute bucket


@dataclass(frozen=True, slots=True)
class TaskFilter:
    tenant: str | None  # None: every tenant (admin keys)
    statuses: tuple[Status, ...] = ()
    kind: str | None = None
    model: str | None = None
    label: str | None = None  # the client's own tag (e.g. the Volcengine AI Server's user_id)
    created_after: float | None = None
    created_before: float | None = None
    before_id: str | None = None  # cursor: tasks created before this one
    limit: int = 50
