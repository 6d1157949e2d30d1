"""What the store is asked to do, as plain records. The store is also the queue: a task is
accepted by one insert, claimed by one conditional update under a lease, and ended by one
conditional update that only the lease holder's current attempt can make."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taskgate.budgets import Quota
from taskgate.callbacks import Callback
from taskgate.models import Priority, Status, Task


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
    api: str | None = None  # the API that made it (None: taskgate's own)
    trace: str | None = None  # the W3C traceparent of the submitting request (tracing on)
    pinned_instance: str | None = None  # the only instance of its route it may run on
    quotas: tuple[Quota, ...] = ()  # the limits it is held to (taskgate.budgets): not stored
    callback: Callback | None = None  # kept apart, in task_callbacks (taskgate.callbacks)


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
    usage: dict[str, Any] | None = None  # the backend's count of tokens (for metrics)
    # what the call used and cost (taskgate.pricing): added to the task and to the
    # counters of its key's and tenant's limits
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    # the task as this attempt holds it (as claimed, on its instance): an ending known to
    # have applied is then built from it, not read back
    task: Task | None = None


@dataclass(frozen=True, slots=True)
class TaskFilter:
    tenant: str | None  # None: every tenant (admin keys)
    statuses: tuple[Status, ...] = ()
    kind: str | None = None
    model: str | None = None
    route: str | None = None
    label: str | None = None  # the client's own tag (e.g. the Volcengine AI Server's user_id)
    created_after: float | None = None
    created_before: float | None = None
    before_id: str | None = None  # cursor: tasks created before this one
    limit: int = 50


@dataclass(frozen=True, slots=True)
class Scope:
    """What a purge may remove: of ``tenant`` (None: of every tenant but ``others``), the tasks
    that ended before ``cutoff`` and the files no kept task owns or names made before it."""

    cutoff: float
    tenant: str | None = None
    others: tuple[str, ...] = ()


@dataclass(slots=True)
class Purged:
    """What a purge removed (a dry run: would remove)."""

    tasks: int = 0
    attempts: int = 0
    logs: int = 0
    webhook_deliveries: int = 0
    batches: int = 0
    files: int = 0
    bytes: int = 0

    def add(self, other: Purged) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class Observer:
    """Told what this process's writes did to tasks, once they have committed: the hook
    for logs and metrics (``taskgate.ops.transitions``). Every method must be quick and
    must not raise; this base class ignores everything."""

    def created(self, tasks: Sequence[Task]) -> None:
        """Tasks accepted (new ones only: an idempotent replay is not told)."""

    def claimed(self, tasks: Sequence[Task]) -> None:
        """Tasks claimed by a worker, each on its instance, with its attempt started."""

    def attempts_ended(self, ended: Sequence[tuple[Outcome, Task | None]]) -> None:
        """Attempts whose ending was written, with the task as it now is (None: the attempt
        was only recorded, the task having been cancelled)."""

    def requeued(self, tasks: Sequence[Task], by: str) -> None:
        """Ended tasks an admin (key ``by``) ran again, as they now wait."""

    def lost(self, tasks: Sequence[Task]) -> None:
        """Tasks whose worker stopped renewing its lease, as the sweep left them."""

    def ended(self, tasks: Sequence[Task]) -> None:
        """Tasks that reached their final status."""

    def job_kept(self, task: Task, job: dict[str, Any]) -> None:
        """A backend job kept on its task (``task`` as it was when claimed)."""

    def job_finished(self, task: Task, instance: str, polls: int, error: str | None) -> None:
        """A backend job ended after ``polls`` polls (``error``: how it failed)."""

    def webhook_tried(self, outcome: str, status: int | None) -> None:
        """One try of a webhook delivery: DELIVERED, PENDING (to try again) or FAILED."""

    def purged(self, purged: Purged, seconds: float) -> None:
        """One purge run (not a dry one) removed ``purged``, taking ``seconds``."""
