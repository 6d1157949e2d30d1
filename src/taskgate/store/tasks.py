"""Tasks as clients see them: accepting them (idempotently, fairly numbered in their lane),
reading them, and cancelling them.

Inserts go through :class:`~taskgate.batching.Batcher`: under load many share one transaction.
:func:`insert_in` is the insert itself (with the files the tasks name, ``file_refs.py``), in a
transaction of the caller's, so that a batch or a conversation's turn is accepted with its
tasks, all or none.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from taskgate.batching import Batcher
from taskgate.models import Attempt, Priority, Status, Task, new_id
from taskgate.store import direct, file_refs, listing, ops, usage
from taskgate.store.base import NewTask, TaskFilter
from taskgate.store.claims import Unclaimed
from taskgate.store.database import Conn, Database, scalar
from taskgate.store.schema import attempts, task_callbacks, tasks

PENDING, PROCESSING = Status.PENDING.value, Status.PROCESSING.value
Inserted = tuple[Task, bool] | BaseException  # the task and whether it is new, or the refusal


class Ride(Protocol):
    """Claims that ride on the write accepting tasks (made by the dispatcher of this
    process, when it runs one: ``scheduling/dispatch.Dispatcher.riding``)."""

    def claim(self, conn: Conn, unclaimed: Unclaimed | None = None, /) -> dict[str, Task]:
        """Claim in this transaction (the lanes of ``unclaimed`` from its rows); the tasks
        claimed, by id."""
        ...


# The rides offered for a write accepting tasks into these lanes (route, priority), each
# yielding None or the ride to take; the tasks it claimed start when the block ends.
Riding = Callable[[Iterable[tuple[str, Priority]]], AbstractAsyncContextManager[Ride | None]]


class Tasks:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._inserts: Batcher[NewTask, tuple[Task, bool]] = Batcher(self._insert_batch)
        self.riding: Riding | None = None  # set while this process runs a dispatcher

    async def drain(self) -> None:
        """Wait for the inserts under way (the store is closing)."""
        await self._inserts.drain()

    async def insert(self, new: NewTask) -> tuple[Task, bool]:
        """Accept a task durably; return it and whether it is new (False: idempotent replay).
        When this process runs a dispatcher with a free slot on the task's route, the task
        is claimed in the same transaction and comes back PROCESSING (``riding``)."""
        return await self._inserts.submit(new)

    async def _insert_batch(self, batch: Sequence[NewTask]) -> list[Inserted]:
        try:
            if self.riding is None:
                return self._created(await self._db.write(insert_in, batch))
            async with self.riding((n.route, n.priority) for n in batch) as ride:
                return self._created(await self._db.write(insert_in, batch, ride))
            # (the tasks the ride claimed start here, once their creation is told)
        except IntegrityError:
            if len(batch) > 1:
                raise  # the batcher writes each task alone
            # This task raced another gateway on its idempotency key; now it finds the winner.
            return self._created(await self._db.write(insert_in, batch))

    def _created(self, out: list[Inserted]) -> list[Inserted]:
        """Tell the observer of the tasks just created; returns ``out``."""
        self._db.observer.created([r[0] for r in out if isinstance(r, tuple) and r[1]])
        return out

    async def get(self, task_id: str, tenant: str | None = None) -> Task | None:
        if tenant is None:
            return await self._db.read(ops.one_task_with, ops.TASK_BY_ID, {"g_id": task_id})
        where = {"g_id": task_id, "g_tenant": tenant}
        return await self._db.read(ops.one_task_with, ops.TENANT_TASK_BY_ID, where)

    async def history(self, task_id: str) -> list[Attempt]:
        q = sa.select(attempts).where(attempts.c.task_id == task_id).order_by(attempts.c.id)
        rows = await self._db.read(ops.rows, q)
        return [Attempt(**{k: v for k, v in r.items() if k != "id"}) for r in rows]

    async def find(self, f: TaskFilter) -> list[Task]:
        """A page of the tasks ``f`` takes, newest first (``listing.py``: which index)."""
        return await self._db.read(listing.find_in, f)

    async def position(self, task: Task) -> int:
        """1-based place of a pending task in its lane (route and priority), in claim order."""
        ahead = sa.or_(
            tasks.c.fair_seq < task.fair_seq,
            sa.and_(tasks.c.fair_seq == task.fair_seq, tasks.c.id < task.id),
        )
        q = sa.select(sa.func.count()).where(*ops.in_lane(task.route, int(task.priority)), ahead)
        return int(await self._db.read(scalar, q) or 0) + 1

    async def counts(self) -> dict[str, int]:
        q = sa.select(tasks.c.status, sa.func.count()).group_by(tasks.c.status)
        return {s: int(n) for s, n in await self._db.read(ops.tuples, q)}

    async def cancel(self, task_id: str, tenant: str | None) -> Task | None:
        """Cancel a pending or running task. Returns the task after the attempt (already
        ended tasks come back unchanged), or None if the tenant has no such task."""
        conds = [tasks.c.id == task_id]
        if tenant is not None:
            conds.append(tasks.c.tenant == tenant)
        cancelled = await cancel_where(self._db, conds, "cancelled by the client")
        return cancelled[0] if cancelled else await self.get(task_id, tenant)


async def cancel_where(db: Database, conds: list[Any], reason: str) -> list[Task]:
    """Cancel the tasks that match and have not ended; returns them as written."""
    ended = await db.write(ops.end_where, ops.cancel_statement(conds, reason))
    db.tell_ended(ended)
    return ended


def insert_in(conn: Conn, batch: Sequence[NewTask], ride: Ride | None = None) -> list[Inserted]:
    """Insert new tasks in the caller's transaction. A task whose idempotency key is already
    stored (or repeated earlier in ``batch``) is the stored one replayed, or a Conflict; a
    new task held to limits (``quotas``) takes a request from their counters, or is refused
    by them (``LimitExceeded``). With ``ride``, the claims riding on the insert are made in
    it too, and a task they claim comes back claimed."""
    now = time.time()
    results: list[Inserted | None] = [None] * len(batch)
    fresh: list[tuple[int, NewTask]] = []
    first_with_key: dict[tuple[str, str], int] = {}
    repeats: list[tuple[int, int]] = []  # (index, index of the first with the same key)
    for i, new in enumerate(batch):
        if new.idempotency_key is None:
            fresh.append((i, new))
            continue
        ident = (new.tenant, new.idempotency_key)
        if ident in first_with_key:
            repeats.append((i, first_with_key[ident]))
        elif (existing := ops.by_idempotency_key(conn, *ident)) is not None:
            results[i] = ops.replay(existing, new)
        else:
            first_with_key[ident] = i
            fresh.append((i, new))
    if any(new.quotas for _, new in fresh):
        refusals = usage.take_requests(conn, [new for _, new in fresh], now)
        for (i, _), refusal in zip(fresh, refusals, strict=True):
            results[i] = refusal
        fresh = [f for f, refusal in zip(fresh, refusals, strict=True) if refusal is None]
    seqs, empty = ops.fair_seqs(conn, [n for _, n in fresh])
    rows = [_new_row(n, seq, now) for (_, n), seq in zip(fresh, seqs, strict=True)]
    claimed = _claim_before_insert(conn, rows, empty, ride)
    if rows:
        direct.execute(conn, ops.ADD_TASKS, rows)
        file_refs.record_in(conn, rows)
        _add_callbacks(conn, [n for _, n in fresh], rows, now)
    if claimed is None:
        claimed = ride.claim(conn) if ride is not None else {}
    for (i, _), row in zip(fresh, rows, strict=True):
        results[i] = (claimed.get(row["id"]) or Task.from_row(row), True)
    for i, first in repeats:
        stored = results[first]
        assert stored is not None
        results[i] = ops.replay(stored[0], batch[i]) if isinstance(stored, tuple) else stored
    return [r for r in results if r is not None]


def _claim_before_insert(
    conn: Conn, rows: list[dict[str, Any]], empty: set[tuple[str, int]], ride: Ride | None
) -> dict[str, Task] | None:
    """The claims riding on an insert, made before it, from the new rows (:class:`Unclaimed`),
    when every row joins a lane that held no pending task (``empty``) and none is pinned;
    else None: the rows are inserted first and claimed in the store (if a ride is offered
    at all)."""
    if ride is None or (unclaimed := Unclaimed.of(rows, empty)) is None:
        return None
    return ride.claim(conn, unclaimed)


def _add_callbacks(
    conn: Conn, news: Sequence[NewTask], rows: Sequence[dict[str, Any]], now: float
) -> None:
    """The callbacks of new tasks that have one, kept apart from the tasks' rows."""
    found = [
        {
            "task_id": row["id"],
            "dialect": n.callback.dialect,
            "headers": n.callback.headers or None,
            "created_at": now,
        }
        for n, row in zip(news, rows, strict=True)
        if n.callback is not None
    ]
    if found:
        conn.execute(task_callbacks.insert(), found)


def inserted_tasks(results: Sequence[Inserted]) -> list[Task]:
    """The tasks :func:`insert_in` stored or found; the first refusal is raised, so that
    the caller's transaction (a batch, a conversation's turn) stores all or none."""
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return [r[0] for r in results if isinstance(r, tuple)]


def _new_row(new: NewTask, seq: int, now: float) -> dict[str, Any]:
    return {
        "id": new_id(),
        "tenant": new.tenant,
        "api_key_id": new.api_key_id,
        "kind": new.kind,
        "model": new.model,
        "route": new.route,
        "priority": int(new.priority),
        "fair_seq": seq,
        "status": PENDING,
        "input": new.input,
        "params": new.params,
        "result": None,
        "error": None,
        "provider_job": None,
        "attempts": 0,
        "max_attempts": new.max_attempts,
        "retries": 0,
        "run_timeout": new.run_timeout,
        "deadline": new.deadline,
        "run_after": 0.0,
        "idempotency_key": new.idempotency_key,
        "request_hash": new.request_hash,
        "batch_id": new.batch_id,
        "conversation_id": new.conversation_id,
        "turn_id": new.turn_id,
        "webhook_url": new.webhook_url,
        "label": new.label,
        "api": new.api,
        "trace": new.trace,
        "worker": None,
        "instance": None,
        "pinned_instance": new.pinned_instance,
        "lease_until": None,
        "claimed_at": None,
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "finished_at": None,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost": 0.0,
    }
