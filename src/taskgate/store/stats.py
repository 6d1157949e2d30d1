"""The queue in numbers, for metrics and ``/v1/stats``: what waits and runs now (read
through the partial indexes on waiting and running tasks), what ended lately and in each of
the last minutes (through the index of ended tasks) and the rate buckets' allowance.
Whole-cluster figures: every worker's tasks are in the one store."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from taskgate.models import Status
from taskgate.policy import Bucket
from taskgate.store import ops
from taskgate.store.database import Conn, Database
from taskgate.store.schema import rate_buckets, route_states, tasks

PENDING, PROCESSING = Status.PENDING.value, Status.PROCESSING.value
Limits = Mapping[tuple[str, str], tuple[int | None, int | None]]  # (route, instance): rpm, tpm
PerMinute = dict[str, dict[float, dict[str, int]]]  # route: minute's start: status: tasks

RECENT = 3600.0  # "lately": the last hour
RUN_TIMES = 10_000  # the most recent ended tasks whose run times give the percentiles

# when a waiting task became due: its submission, or the end of a retry's backoff
_DUE_SINCE = sa.case(
    (tasks.c.run_after > tasks.c.created_at, tasks.c.run_after), else_=tasks.c.created_at
)
_WAITING = (
    sa.select(tasks.c.route, tasks.c.priority, sa.func.count(), sa.func.min(_DUE_SINCE))
    .where(ops.IS_PENDING)
    .group_by(tasks.c.route, tasks.c.priority)
)
_RUNNING = (
    sa.select(tasks.c.route, tasks.c.priority, tasks.c.instance, sa.func.count())
    .where(ops.IS_PROCESSING)
    .group_by(tasks.c.route, tasks.c.priority, tasks.c.instance)
)
_ENDED = (
    sa.select(
        tasks.c.route,
        tasks.c.priority,
        tasks.c.status,
        sa.func.count(),
        sa.func.sum(sa.case((tasks.c.finished_at > sa.bindparam("minute"), 1), else_=0)),
    )
    .where(tasks.c.finished_at > sa.bindparam("since"))
    .group_by(tasks.c.route, tasks.c.priority, tasks.c.status)
)
_RUN_TIMES = (
    sa.select(tasks.c.route, tasks.c.priority, tasks.c.finished_at - tasks.c.started_at)
    .where(tasks.c.finished_at > sa.bindparam("since"), tasks.c.started_at.is_not(None))
    .order_by(tasks.c.finished_at.desc())
    .limit(RUN_TIMES)
)


def _per_minute(dialect: str) -> sa.Select[Any]:
    """Tasks ended since ``since`` by route, minute (since the epoch) and status. A float's
    minute: ``floor`` on PostgreSQL (its cast rounds), the cast on SQLite (which truncates,
    as floor does for times after 1970). The 60 is written out, not bound, so that the
    grouped expression and the selected one are the same."""
    by = tasks.c.finished_at / sa.literal_column("60.0", sa.Float)
    minute = sa.func.floor(by) if dialect == "postgresql" else sa.cast(by, sa.Integer)
    return (
        sa.select(tasks.c.route, minute, tasks.c.status, sa.func.count())
        .where(tasks.c.finished_at >= sa.bindparam("since"))
        .group_by(tasks.c.route, minute, tasks.c.status)
    )


_PER_MINUTE = {d: _per_minute(d) for d in ("sqlite", "postgresql")}

_PAUSED = sa.select(route_states.c.route, route_states.c.updated_at).where(
    route_states.c.paused.is_(True)
)


@dataclass
class QueueSnapshot:
    """What waits and runs now, across every worker."""

    at: float
    waiting: dict[tuple[str, int], int] = field(default_factory=dict)  # (route, priority)
    oldest_wait: dict[tuple[str, int], float] = field(default_factory=dict)  # seconds
    running: dict[tuple[str, str], int] = field(default_factory=dict)  # (route, instance)
    running_by_lane: dict[tuple[str, int], int] = field(default_factory=dict)
    # (route, instance, "requests" | "tokens"): what the rate limit allows now
    allowance: dict[tuple[str, str, str], float] = field(default_factory=dict)
    paused: dict[str, float] = field(default_factory=dict)  # route: paused since


@dataclass
class Recent:
    """What ended in the last hour, per lane (route, priority)."""

    # status: tasks that ended with it in the last hour and in the last minute
    ended: dict[tuple[str, int], dict[str, tuple[int, int]]]
    run_times: dict[tuple[str, int], list[float]]  # seconds, newest first


class QueueStats:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def snapshot(self, now: float, limits: Limits) -> QueueSnapshot:
        return await self._db.read(_snapshot, now, limits)

    async def recent(self, now: float) -> Recent:
        return await self._db.read(_recent, now)

    async def per_minute(self, now: float, minutes: int = 60) -> PerMinute:
        """What ended in each of the last ``minutes`` minutes (the one under way the last),
        by route: {route: {minute's start: {status: tasks}}}; minutes with none left out."""
        since = (math.floor(now / 60) - minutes + 1) * 60.0
        return await self._db.read(_ended_per_minute, since)


def _snapshot(conn: Conn, now: float, limits: Limits) -> QueueSnapshot:
    snap = QueueSnapshot(now)
    for route, priority, n, first_due in ops.tuples(conn, _WAITING):
        snap.waiting[(route, priority)] = n
        snap.oldest_wait[(route, priority)] = max(0.0, now - first_due)
    for route, priority, instance, n in ops.tuples(conn, _RUNNING):
        key = (route, instance or "")
        snap.running[key] = snap.running.get(key, 0) + n
        lane = (route, priority)
        snap.running_by_lane[lane] = snap.running_by_lane.get(lane, 0) + n
    for row in ops.rows(conn, sa.select(rate_buckets)):
        limit = limits.get((row["route"], row["instance"]))
        if limit is None:
            continue
        rpm, tpm = limit
        b = Bucket(row["requests"], row["tokens"], row["updated_at"])
        b.refill(rpm, tpm, now)
        b.tokens -= row["tokens_spent"]  # as a claim reads it (rate_buckets.load)
        if rpm is not None:
            snap.allowance[(row["route"], row["instance"], "requests")] = b.requests
        if tpm is not None:
            snap.allowance[(row["route"], row["instance"], "tokens")] = b.tokens
    for route, since in ops.tuples(conn, _PAUSED):
        snap.paused[route] = since
    return snap


def _ended_per_minute(conn: Conn, since: float) -> PerMinute:
    out: PerMinute = {}
    found = ops.tuples_with(conn, _PER_MINUTE[conn.dialect.name], {"since": since})
    for route, minute, status, n in found:
        out.setdefault(route, {}).setdefault(int(minute) * 60.0, {})[status] = int(n)
    return out


def _recent(conn: Conn, now: float) -> Recent:
    out = Recent({}, {})
    since = {"since": now - RECENT, "minute": now - 60}
    for route, priority, status, hour, minute in ops.tuples_with(conn, _ENDED, since):
        out.ended.setdefault((route, priority), {})[status] = (int(hour), int(minute or 0))
    for route, priority, seconds in ops.tuples_with(conn, _RUN_TIMES, {"since": now - RECENT}):
        out.run_times.setdefault((route, priority), []).append(seconds)
    return out
