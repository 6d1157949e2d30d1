"""What operators do to the queue: run ended tasks again, cancel many at once, pause and
resume routes, and the registry of worker processes (their heartbeats, and an admin's
request that one drain). Each change to a task is written with its entry in the task's own
log, in one transaction.

Bulk actions work through the matching tasks in chunks of ``CHUNK``, each its own
transaction, so that a million-task cancel never holds the queue's tables for long.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from taskgate.models import Status, Task
from taskgate.store import ops, task_logs
from taskgate.store.base import TaskFilter
from taskgate.store.database import Conn, Database, dialect_insert, rows
from taskgate.store.schema import route_states, status_is, tasks, workers

CHUNK = 1000
RETRYABLE = (Status.FAILED, Status.TIMEOUT, Status.CANCELLED)
RUNNABLE = (Status.PENDING, Status.PROCESSING)


@dataclass(frozen=True, slots=True)
class Rerun:
    """How an ended task runs again: on ``route`` with ``budget`` more attempts (None: the
    task cannot run again, its model being served by no route now)."""

    route: str
    budget: int


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    id: str
    host: str
    pid: int
    routes: list[str]
    in_flight: int
    started_at: float
    last_seen: float
    drain: bool
    stopped_at: float | None = None

    @classmethod
    def from_row(cls, row: Any) -> WorkerRecord:
        return cls(**{k: row[k] for k in cls.__slots__})


@dataclass(frozen=True, slots=True)
class Selection:
    """The tasks an action takes: the listing's filters, a route, or given ids."""

    filter: TaskFilter
    route: str | None = None
    ids: tuple[str, ...] | None = None


def filtered(sel: Selection, statuses: Sequence[Status]) -> list[Any]:
    """The conditions of an action: the selection's, within ``statuses``."""
    f = sel.filter
    wanted = [s.value for s in (f.statuses or statuses) if s in statuses]
    conds: list[Any] = [status_is(tasks.c.status, *wanted)]
    if sel.ids is not None:
        conds.append(tasks.c.id.in_(sel.ids))
    if f.tenant is not None:
        conds.append(tasks.c.tenant == f.tenant)
    if f.kind:
        conds.append(tasks.c.kind == f.kind)
    if f.model:
        conds.append(tasks.c.model == f.model)
    conds += [tasks.c.route == r for r in (sel.route, f.route) if r]
    if f.created_after is not None:
        conds.append(tasks.c.created_at >= f.created_after)
    if f.created_before is not None:
        conds.append(tasks.c.created_at < f.created_before)
    return conds


class Control:
    def __init__(self, db: Database) -> None:
        self._db = db

    # --- tasks -----------------------------------------------------------------------------

    async def retry(
        self, sel: Selection, plan: Callable[[Task], Rerun | None], by: str
    ) -> list[Task]:
        """Run the ended tasks the selection takes (FAILED, TIMEOUT, CANCELLED) again, each as
        ``plan`` says, under the same id: PENDING, at the back of its lane, its result and
        error cleared, ``budget`` more attempts, its history kept. Returns them as written
        (tasks ``plan`` refuses are left as they are)."""
        conds = filtered(sel, RETRYABLE)
        done: list[Task] = []
        after = ""
        while True:
            found, after = await self._db.write(self._retry_chunk, conds, after, plan, by)
            done += found
            if not after:
                break
        self._db.observer.requeued(done, by)
        return done

    def _retry_chunk(
        self,
        conn: Conn,
        conds: list[Any],
        after: str,
        plan: Callable[[Task], Rerun | None],
        by: str,
    ) -> tuple[list[Task], str]:
        q = sa.select(tasks).where(*conds, tasks.c.id > after).order_by(tasks.c.id).limit(CHUNK)
        found = [Task.from_row(r) for r in rows(conn, q)]
        now = time.time()
        runs = [(t, r) for t in found if (r := plan(t)) is not None]
        moved = [t.evolve(route=r.route) for t, r in runs]
        seqs, _ = ops.fair_seqs(conn, moved)
        written: list[Task] = []
        for (t, r), seq in zip(runs, seqs, strict=True):
            stmt = (
                tasks.update()
                .where(tasks.c.id == t.id, tasks.c.status == t.status.value)
                .values(_rerun_values(t, r, seq, now))
                .returning(*tasks.c)
            )
            if (task := ops.one_task(conn, stmt)) is not None:
                written.append(task)
        entries = [
            task_logs.entry(
                t.id,
                "admin_retry",
                message=f"run again by an admin (key {by}): {t.max_attempts - t.attempts} "
                f"more attempts on route {t.route}",
            )
            for t in written
        ]
        if entries:
            task_logs.add_in(conn, entries)
        return written, found[-1].id if len(found) == CHUNK else ""

    async def cancel(self, sel: Selection, by: str) -> list[Task]:
        """Cancel the tasks the selection takes that have not ended; returns them."""
        conds = filtered(sel, RUNNABLE)
        reason = f"cancelled by an admin (key {by})"
        done: list[Task] = []
        more = True
        while more:
            found, more = await self._db.write(self._cancel_chunk, conds, reason)
            self._db.tell_ended(found)
            done += found
        return done

    def _cancel_chunk(self, conn: Conn, conds: list[Any], reason: str) -> tuple[list[Task], bool]:
        """Cancel up to ``CHUNK`` of the tasks; whether more may match."""
        pick = sa.select(tasks.c.id).where(*conds).order_by(tasks.c.id).limit(CHUNK)
        ids = [r["id"] for r in rows(conn, pick)]
        if not ids:
            return [], False
        ended = ops.end_where(conn, ops.cancel_statement([tasks.c.id.in_(ids)], reason))
        entries = [task_logs.entry(t.id, "admin_cancel", message=reason) for t in ended]
        if entries:
            task_logs.add_in(conn, entries)
        return ended, len(ids) == CHUNK

    # --- routes ----------------------------------------------------------------------------

    async def set_paused(self, route: str, paused: bool, by: str) -> None:
        await self._db.write(_upsert_route_state, route, paused, by)

    # --- workers ---------------------------------------------------------------------------

    async def heartbeat(self, w: WorkerRecord) -> bool:
        """Record a worker's heartbeat; returns whether an admin asked it to drain."""
        return bool(await self._db.write(_heartbeat, w))

    async def worker_stopped(self, worker_id: str) -> None:
        now = time.time()
        stmt = (
            workers.update()
            .where(workers.c.id == worker_id)
            .values(stopped_at=now, last_seen=now, in_flight=0)
        )
        await self._db.write(ops.execute, stmt)

    async def workers(self, seen_since: float) -> list[WorkerRecord]:
        q = (
            sa.select(workers)
            .where(workers.c.last_seen >= seen_since)
            .order_by(workers.c.started_at.desc())
        )
        return [WorkerRecord.from_row(r) for r in await self._db.read(rows, q)]

    async def request_drain(self, worker_id: str) -> bool:
        """Ask a worker to drain; False if no such worker is running."""
        stmt = (
            workers.update()
            .where(workers.c.id == worker_id, workers.c.stopped_at.is_(None))
            .values(drain=True)
            .returning(workers.c.id)
        )
        return bool(await self._db.write(rows, stmt))

    async def forget_workers(self, seen_before: float) -> None:
        """Drop the records of workers not seen since ``seen_before``."""
        await self._db.write(ops.execute, workers.delete().where(workers.c.last_seen < seen_before))


def _rerun_values(t: Task, r: Rerun, seq: int, now: float) -> dict[str, Any]:
    return {
        "status": Status.PENDING.value,
        "route": r.route,
        "fair_seq": seq,
        "max_attempts": t.attempts + r.budget,
        "retries": t.retries + 1,
        "result": None,
        "error": None,
        "provider_job": None,
        "worker": None,
        "instance": None,
        "lease_until": None,
        "deadline": None,
        "run_after": now,
        "finished_at": None,
        "updated_at": now,
    }


def _upsert_route_state(conn: Conn, route: str, paused: bool, by: str) -> None:
    values = {"paused": paused, "updated_at": time.time(), "updated_by": by}
    stmt = dialect_insert(conn, route_states).values(route=route, **values)
    conn.execute(stmt.on_conflict_do_update(index_elements=["route"], set_=values))


def _heartbeat(conn: Conn, w: WorkerRecord) -> bool:
    values = {"in_flight": w.in_flight, "last_seen": w.last_seen, "routes": w.routes}
    new = {"id": w.id, "host": w.host, "pid": w.pid, "started_at": w.started_at, "drain": False}
    stmt = dialect_insert(conn, workers).values(**new, **values)
    stmt = stmt.on_conflict_do_update(index_elements=["id"], set_=values)
    return bool(conn.execute(stmt.returning(workers.c.drain)).scalar())
