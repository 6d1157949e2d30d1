"""Records that cross the storage boundary, and the task status state machine.

A task moves through these statuses::

    PENDING ──claim──> PROCESSING ──finish──> SUCCESS | FAILED | TIMEOUT | CANCELLED
       ^                  │
       └──retry / lease───┘            (PENDING may also end as TIMEOUT or CANCELLED)

Terminal statuses are final: every write that ends a task is conditional on the task not
having ended, so a task ends exactly once.
"""

from __future__ import annotations

import dataclasses
import enum
import operator
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar


class Status(enum.StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.SUCCESS, Status.FAILED, Status.TIMEOUT, Status.CANCELLED})

# Which status may follow which; the store's conditional writes enforce the same graph.
TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.PROCESSING, Status.TIMEOUT, Status.CANCELLED}),
    Status.PROCESSING: frozenset(
        {Status.PENDING, Status.SUCCESS, Status.FAILED, Status.TIMEOUT, Status.CANCELLED}
    ),
    **{s: frozenset() for s in TERMINAL},
}


def can_transition(src: Status, dst: Status) -> bool:
    return dst in TRANSITIONS[src]


R = TypeVar("R")


def from_row(cls: type[R], row: Any) -> R:
    """A record whose fields are all columns of ``row``, as stored."""
    return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


class Priority(enum.IntEnum):
    """Lower value is served first when priorities are strict."""

    CRITICAL = 0
    DEFAULT = 1
    LOW = 2

    @classmethod
    def parse(cls, name: str) -> Priority:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown priority {name!r}; use critical, default or low") from None

    @property
    def label(self) -> str:
        return self.name.lower()


BUILTIN_KINDS = ("chat", "image", "image_edit", "video", "speech", "transcription", "embedding")


_last_id = [0, 0]  # milliseconds and random part of the last id made in this process
_id_lock = threading.Lock()


def new_id(prefix: str = "") -> str:
    """A time-ordered id: 48 bits of milliseconds then 80 random bits, as 32 hex digits.

    Ordering by id is ordering by creation time, which makes cursor pagination a range scan.
    Within a process ids only increase (as ULID's monotonic mode): one made in the same
    millisecond as the last (or after the clock stepped back) takes the last one's random
    part plus one, so two tasks accepted one after the other list in that order.
    """
    ms = time.time_ns() // 1_000_000
    with _id_lock:
        if ms > _last_id[0]:  # a fresh random part, its top bit clear: room to count up
            _last_id[:] = [ms, int.from_bytes(os.urandom(10), "big") >> 1]
        else:
            _last_id[1] += 1
        ms, rand = _last_id
    return f"{prefix}{ms:012x}{rand:020x}"


@dataclass(frozen=True, slots=True)
class Attempt:
    task_id: str
    number: int
    route: str
    instance: str
    started_at: float
    ended_at: float | None = None
    outcome: str | None = None  # success | retry | failed | timeout | cancelled | lost
    error: dict[str, Any] | None = None
    retry_at: float | None = None  # after a retry or failover: when the task fell due again

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def handoff(self) -> bool:
        """The attempt ended with its worker (stopped or lost), not with the backend: it
        does not use up the task's retries."""
        return self.outcome in ("interrupted", "lost")


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    tenant: str
    api_key_id: str
    kind: str
    model: str
    route: str
    priority: Priority
    status: Status
    input: Any
    params: dict[str, Any]
    created_at: float
    updated_at: float
    max_attempts: int = 1
    attempts: int = 0
    retries: int = 0  # times an admin ran it again after it ended
    run_timeout: float | None = None
    deadline: float | None = None
    run_after: float = 0.0
    fair_seq: int = 0
    idempotency_key: str | None = None
    request_hash: str | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    provider_job: dict[str, Any] | None = None  # {id, data, route, instance, submitted_at}
    batch_id: str | None = None
    conversation_id: str | None = None
    turn_id: int | None = None  # the user message of the conversation this task answers
    webhook_url: str | None = None
    label: str | None = None  # the client's tag (e.g. Volcengine AI Server's user_id), not identity
    api: str | None = None  # the API that made it (None: taskgate's own): the shape it answers in
    trace: str | None = None  # the W3C traceparent of the request that submitted it (tracing on)
    worker: str | None = None
    instance: str | None = None
    pinned_instance: str | None = None  # the only instance of its route it may run on
    lease_until: float | None = None
    claimed_at: float | None = None  # start of the current attempt
    started_at: float | None = None
    finished_at: float | None = None
    input_tokens: int = 0  # what its attempts used and cost (taskgate.pricing)
    output_tokens: int = 0
    cost: float = 0.0

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    def evolve(self, **changes: Any) -> Task:
        """A copy with ``changes`` (as ``dataclasses.replace``, by position: a quarter of
        its cost for a task's 41 fields)."""
        values = list(_TASK_ATTRS(self))
        for name, value in changes.items():
            if name not in _TASK_INDEX:
                raise TypeError(f"Task has no field {name!r}")
            values[_TASK_INDEX[name]] = value
        return Task(*values)

    @classmethod
    def from_row(cls, row: Any) -> Task:
        """The task of a row of every column of ``tasks`` (the fields are its columns), read
        by position: building a task from a row is in every claim, ending and read."""
        values = list(_TASK_VALUES(row))
        values[_STATUS] = Status(values[_STATUS])
        values[_PRIORITY] = Priority(values[_PRIORITY])
        values[_PARAMS] = values[_PARAMS] or {}
        return cls(*values)


@dataclass(frozen=True, slots=True)
class Batch:
    """One request fanned out to several models: a task per model. With ``first_wins``
    the first success cancels the rest."""

    id: str
    tenant: str
    api_key_id: str
    kind: str
    first_wins: bool
    models: list[str]  # in the request's order; the results follow it
    created_at: float
    conversation_id: str | None = None
    webhook_url: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Batch:
        return from_row(cls, row)

    def status(self, tasks: list[Task]) -> str:
        """``PROCESSING`` until every task has ended; then ``SUCCESS`` (all succeeded, or
        one did in a first-wins batch), ``PARTIAL`` (some did) or ``FAILED`` (none did)."""
        if not all(t.terminal for t in tasks):
            return "PROCESSING"
        wins = sum(t.status is Status.SUCCESS for t in tasks)
        if wins == len(tasks) or (self.first_wins and wins):
            return "SUCCESS"
        return "PARTIAL" if wins else "FAILED"


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    tenant: str
    title: str
    created_at: float
    updated_at: float
    api: str | None = None  # the API that started it (None: taskgate's own), as Task.api

    @classmethod
    def from_row(cls, row: Any) -> Conversation:
        return from_row(cls, row)


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation: the user's prompt, or one model's answer to it."""

    conversation_id: str
    role: str  # user | assistant
    content: Any  # text; for a non-text answer, what it made (e.g. {"files": [...]})
    created_at: float
    model: str | None = None
    task_id: str | None = None
    id: int | None = None
    turn_id: int | None = None  # an answer: the user message it answers

    @classmethod
    def from_row(cls, row: Any) -> Message:
        return from_row(cls, row)


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A file in taskgate's storage: an upload or a provider's output."""

    id: str
    tenant: str
    task_id: str | None
    name: str
    content_type: str
    size: int
    sha256: str
    created_at: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_TASK_FIELDS = tuple(f.name for f in dataclasses.fields(Task))
_TASK_VALUES = operator.itemgetter(*_TASK_FIELDS)  # of a row, in the fields' order
_TASK_ATTRS = operator.attrgetter(*_TASK_FIELDS)  # of a task
_TASK_INDEX = {name: i for i, name in enumerate(_TASK_FIELDS)}
_STATUS, _PRIORITY, _PARAMS = (_TASK_INDEX[k] for k in ("status", "priority", "params"))


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    tenant: str
    name: str
    admin: bool
    created_at: float
    revoked_at: float | None = None
    prefix: str = ""
    # its limits (None: none; taskgate.budgets)
    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    cost_per_month: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def scope(self) -> str | None:
        """The tenant the key may see: its own; admin keys see every tenant."""
        return None if self.admin else self.tenant

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
