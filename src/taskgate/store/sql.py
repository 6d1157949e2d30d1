"""The SQL store on SQLite (embedded default) and PostgreSQL, through SQLAlchemy Core.

Every operation is one synchronous function of a ``Connection`` (most of them in ``ops.py``),
written once and run two ways:
on PostgreSQL through the async engine (asyncpg, ``AsyncConnection.run_sync``); on SQLite
directly on the event loop's thread. A local SQLite statement takes tens of microseconds,
less than handing it to a driver thread and back (aiosqlite costs 3-4x as much per statement
here, most of it in thread hops), and SQLite serialises writers anyway. Write transactions on
SQLite begin with ``BEGIN IMMEDIATE`` so that another process (the CLI) never deadlocks ours.

On PostgreSQL claims use ``FOR UPDATE SKIP LOCKED`` so that workers never wait on each other.
Inserts and attempt endings go through :class:`~taskgate.batching.Batcher`: under load many
share one transaction, and endings are written with one executemany.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import random
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from taskgate.batching import Batcher
from taskgate.errors import Unavailable
from taskgate.models import (
    ApiKey,
    Attempt,
    Batch,
    Conversation,
    Message,
    Priority,
    Status,
    StoredFile,
    Task,
    new_id,
)
from taskgate.store import ops
from taskgate.store.base import NewTask, Outcome, TaskFilter
from taskgate.store.outbox import Outbox
from taskgate.store.schema import (
    api_keys,
    attempts,
    batches,
    conversations,
    files,
    messages,
    tasks,
)

R = TypeVar("R")
Conn = sa.Connection
RateLimit = tuple[int | None, int | None]  # requests and tokens per minute
# (calls in flight per instance, calls the rate limits allow per limited instance)
#   -> tasks to take per priority
Planner = Callable[[Mapping[str, int], Mapping[str, int | None]], Mapping[Priority, int]]

MIGRATIONS = Path(__file__).with_name("migrations")
_ADVISORY_LOCK = 7_364_021  # serialises concurrent migrations on PostgreSQL

PENDING, PROCESSING = Status.PENDING.value, Status.PROCESSING.value


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json_loads(value: Any) -> Any:
    """A JSON column's value. SQLite gives the column NUMERIC affinity, so a value that is a
    bare number (a task's ``input`` of 42) comes back as that number, not as its text."""
    return value if isinstance(value, (int, float)) else orjson.loads(value)


def driver_url(url: str) -> tuple[str, str]:
    """Map a user-facing URL to SQLAlchemy's driver URL; return (dialect, url)."""
    if url.startswith("sqlite://"):
        return "sqlite", url
    if url.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://")):
        rest = url.split("://", 1)[1]
        return "postgresql", f"postgresql+asyncpg://{rest}"
    raise ValueError(f"unsupported store URL {url!r}: use sqlite:///PATH or postgresql://...")


@contextlib.contextmanager
def _unavailable_when_unreachable() -> Iterator[None]:
    """Raise the driver's errors that say the database cannot be reached as
    :class:`Unavailable` (the API answers 503), with the driver's error as its cause."""
    try:
        yield
    except Exception as exc:
        if _unreachable(exc):
            raise Unavailable("the store cannot be reached now; try again shortly") from exc
        raise


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached now (a refused or dropped
    connection, a server restarting or refusing connections, a busy SQLite file), not that a
    statement is wrong. The driver's own error may be the cause of SQLAlchemy's."""
    if isinstance(exc, sa.exc.DBAPIError) and (
        exc.connection_invalidated
        or isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError))
    ):
        return True
    if isinstance(exc, (OSError, sa.exc.TimeoutError, *_driver_outages())):
        return True
    cause = exc.__cause__ or getattr(exc, "orig", None)
    return cause is not None and cause is not exc and _unreachable(cause)


@functools.cache
def _driver_outages() -> tuple[type[Exception], ...]:
    """asyncpg's errors for a database that cannot serve now: the connection failed or was
    refused, the server is shutting down or starting up (57), refuses connections to the
    database (55: not in a state to), or has no connection slot left (53)."""
    try:
        import asyncpg
    except ImportError:
        return ()
    return (
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.exceptions.OperatorInterventionError,
        asyncpg.exceptions.ObjectNotInPrerequisiteStateError,
        asyncpg.exceptions.InsufficientResourcesError,
    )


def _hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class SqlStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect, self._driver_url = driver_url(url)
        self._sync: sa.Engine | None = None  # SQLite, run inline
        self._async: AsyncEngine | None = None  # PostgreSQL
        self._inserts: Batcher[NewTask, tuple[Task, bool]] = Batcher(self._insert_batch)
        self._finishes: Batcher[Outcome, Task | None] = Batcher(self._finish_batch)
        self.outbox = Outbox(self._write, self._read)  # webhook deliveries, tenants' secrets
        # Told of the tasks each write of this process ended (finish, cancel, sweep): the
        # webhook deliverer wakes on them rather than waiting for its next look.
        self.ended_listeners: list[Callable[[Sequence[Task]], None]] = []

    # --- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        json: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": _json_loads}
        if self.dialect == "sqlite":
            self._prepare_sqlite_path()
            self._sync = sa.create_engine(self._driver_url, poolclass=sa.StaticPool, **json)
            _sqlite_setup(self._sync)
        else:
            self._async = create_async_engine(
                self._driver_url, pool_size=10, max_overflow=10, pool_pre_ping=True, **json
            )
        await self._write(self._migrate)

    def _prepare_sqlite_path(self) -> None:
        path = self._driver_url.split(":///", 1)[1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    def _migrate(self, conn: Conn) -> None:
        if self.dialect == "postgresql":  # several processes may start at once
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK})")
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")

    async def close(self) -> None:
        await self._inserts.drain()
        await self._finishes.drain()
        if self._sync is not None:
            self._sync.dispose()
        if self._async is not None:
            await self._async.dispose()

    async def _write(self, fn: Callable[..., R], *args: Any) -> R:
        """Run ``fn(conn, *args)`` in one write transaction."""
        with _unavailable_when_unreachable():
            if self._sync is not None:
                with self._sync.begin() as conn:
                    return fn(conn, *args)
            assert self._async is not None, "store is not open"
            async with self._async.begin() as aconn:
                return await aconn.run_sync(fn, *args)

    async def _read(self, fn: Callable[..., R], *args: Any) -> R:
        """Run ``fn(conn, *args)`` for reading."""
        with _unavailable_when_unreachable():
            if self._sync is not None:
                with self._sync.connect() as conn:
                    return fn(conn.execution_options(readonly=True), *args)
            assert self._async is not None, "store is not open"
            async with self._async.connect() as aconn:
                return await aconn.run_sync(fn, *args)

    # --- accepting tasks ---------------------------------------------------------------

    async def insert(self, new: NewTask) -> tuple[Task, bool]:
        """Accept a task durably; return it and whether it is new (False: idempotent replay)."""
        return await self._inserts.submit(new)

    async def _insert_batch(
        self, batch: Sequence[NewTask]
    ) -> list[tuple[Task, bool] | BaseException]:
        try:
            return await self._write(self._insert_in, batch)
        except IntegrityError:
            if len(batch) > 1:
                raise  # the batcher writes each task alone
            # This task raced another gateway on its idempotency key; now it finds the winner.
            return await self._write(self._insert_in, batch)

    def _insert_in(
        self, conn: Conn, batch: Sequence[NewTask]
    ) -> list[tuple[Task, bool] | BaseException]:
        now = time.time()
        results: list[tuple[Task, bool] | BaseException | None] = [None] * len(batch)
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
        seqs = ops.fair_seqs(conn, [n for _, n in fresh])
        rows = [self._new_row(n, seq, now) for (_, n), seq in zip(fresh, seqs, strict=True)]
        if rows:
            conn.execute(ops.ADD_TASKS, rows)
        for (i, _), row in zip(fresh, rows, strict=True):
            results[i] = (Task.from_row(row), True)
        for i, first in repeats:
            stored = results[first]
            assert isinstance(stored, tuple)
            results[i] = ops.replay(stored[0], batch[i])
        return [r for r in results if r is not None]

    @staticmethod
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
            "attempts": 0,
            "max_attempts": new.max_attempts,
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
            "worker": None,
            "instance": None,
            "lease_until": None,
            "claimed_at": None,
            "created_at": now,
            "updated_at": now,
            "started_at": None,
            "finished_at": None,
        }

    async def insert_batch(self, batch: Batch, news: Sequence[NewTask]) -> list[Task]:
        """Accept a batch and its tasks in one transaction: all of them or none."""

        def write(conn: Conn) -> list[Task]:
            conn.execute(batches.insert(), [dataclasses.asdict(batch)])
            out = self._insert_in(conn, news)
            return [r[0] for r in out if isinstance(r, tuple)]

        return await self._write(write)

    async def get_batch(self, batch_id: str, tenant: str | None) -> tuple[Batch, list[Task]] | None:
        """A batch of the tenant (None: any) with its tasks in the order of its models."""
        q = sa.select(batches).where(batches.c.id == batch_id)
        if tenant is not None:
            q = q.where(batches.c.tenant == tenant)
        found = await self._read(ops.rows, q)
        if not found:
            return None
        batch = Batch.from_row(found[0])
        members = sa.select(tasks).where(tasks.c.batch_id == batch_id)
        order = {m: i for i, m in enumerate(batch.models)}
        rows = await self._read(ops.rows, members)
        return batch, sorted((Task.from_row(r) for r in rows), key=lambda t: order.get(t.model, 0))

    async def cancel_batch(self, batch_id: str, winner: str | None = None) -> list[Task]:
        """Cancel the batch's tasks that have not ended; returns them. With ``winner`` (a
        task that succeeded), only if the batch is first-wins, and all but the winner."""
        conds: list[Any] = [tasks.c.batch_id == batch_id]
        if winner is not None:
            first_wins = sa.select(batches.c.id).where(
                batches.c.id == batch_id, batches.c.first_wins
            )
            conds += [tasks.c.id != winner, sa.exists(first_wins)]
        reason = "another model of its batch answered first" if winner else "batch cancelled"
        return await self._cancel_where(conds, reason)

    # --- conversations -------------------------------------------------------------------

    async def create_conversation(self, tenant: str, title: str = "") -> Conversation:
        now = time.time()
        c = Conversation(new_id(), tenant, title[:200], now, now)
        await self._write(ops.execute, conversations.insert(), [dataclasses.asdict(c)])
        return c

    async def get_conversation(
        self, conversation_id: str, tenant: str | None
    ) -> Conversation | None:
        q = sa.select(conversations).where(conversations.c.id == conversation_id)
        if tenant is not None:
            q = q.where(conversations.c.tenant == tenant)
        found = await self._read(ops.rows, q)
        return Conversation.from_row(found[0]) if found else None

    async def list_conversations(
        self, tenant: str | None, before_id: str | None = None, limit: int = 50
    ) -> list[Conversation]:
        q = sa.select(conversations).order_by(conversations.c.id.desc()).limit(limit)
        if tenant is not None:
            q = q.where(conversations.c.tenant == tenant)
        if before_id is not None:
            q = q.where(conversations.c.id < before_id)
        return [Conversation.from_row(r) for r in await self._read(ops.rows, q)]

    async def delete_conversation(self, conversation_id: str, tenant: str | None) -> bool:
        """Delete a conversation and its messages (its tasks stay, as tasks)."""

        def delete(conn: Conn) -> bool:
            q = conversations.delete().where(conversations.c.id == conversation_id)
            if tenant is not None:
                q = q.where(conversations.c.tenant == tenant)
            if not conn.execute(q).rowcount:
                return False
            conn.execute(messages.delete().where(messages.c.conversation_id == conversation_id))
            return True

        return await self._write(delete)

    async def messages(self, conversation_id: str) -> list[Message]:
        q = (
            sa.select(messages)
            .where(messages.c.conversation_id == conversation_id)
            .order_by(messages.c.id)
        )
        return [Message.from_row(r) for r in await self._read(ops.rows, q)]

    async def insert_turn(
        self, conversation_id: str, prompt: Any, news: Sequence[NewTask], batch: Batch | None = None
    ) -> list[Task]:
        """A user turn and the tasks that answer it (in their batch), in one transaction."""

        def write(conn: Conn) -> list[Task]:
            now = time.time()
            if batch is not None:
                conn.execute(batches.insert(), [dataclasses.asdict(batch)])
            turn = {"conversation_id": conversation_id, "role": "user", "content": prompt}
            add = messages.insert().values(created_at=now, **turn).returning(messages.c.id)
            turn_id = conn.execute(add).scalar_one()
            answering = [dataclasses.replace(n, turn_id=turn_id) for n in news]
            out = [r[0] for r in self._insert_in(conn, answering) if isinstance(r, tuple)]
            if len(out) == 1:  # a turn of one task names it (a batch's tasks name the turn)
                name = messages.update().where(messages.c.id == turn_id)
                conn.execute(name.values(task_id=out[0].id))
            touch = conversations.update().where(conversations.c.id == conversation_id)
            conn.execute(touch.values(updated_at=now))
            return out

        return await self._write(write)

    # --- reading -----------------------------------------------------------------------

    async def get(self, task_id: str, tenant: str | None = None) -> Task | None:
        if tenant is None:
            return await self._read(ops.one_task_with, ops.TASK_BY_ID, {"g_id": task_id})
        where = {"g_id": task_id, "g_tenant": tenant}
        return await self._read(ops.one_task_with, ops.TENANT_TASK_BY_ID, where)

    async def history(self, task_id: str) -> list[Attempt]:
        q = sa.select(attempts).where(attempts.c.task_id == task_id).order_by(attempts.c.id)
        rows = await self._read(ops.rows, q)
        return [Attempt(**{k: v for k, v in r.items() if k != "id"}) for r in rows]

    async def list_tasks(self, f: TaskFilter) -> list[Task]:
        conds = []
        if f.tenant is not None:
            conds.append(tasks.c.tenant == f.tenant)
        if f.statuses:
            conds.append(tasks.c.status.in_([s.value for s in f.statuses]))
        if f.kind:
            conds.append(tasks.c.kind == f.kind)
        if f.model:
            conds.append(tasks.c.model == f.model)
        if f.label is not None:
            conds.append(tasks.c.label == f.label)
        if f.created_after is not None:
            conds.append(tasks.c.created_at >= f.created_after)
        if f.created_before is not None:
            conds.append(tasks.c.created_at < f.created_before)
        if f.before_id:
            conds.append(tasks.c.id < f.before_id)
        q = sa.select(tasks).where(*conds).order_by(tasks.c.id.desc()).limit(f.limit)
        return [Task.from_row(r) for r in await self._read(ops.rows, q)]

    async def position(self, task: Task) -> int:
        """1-based place of a pending task in its lane (route and priority), in claim order."""
        ahead = sa.or_(
            tasks.c.fair_seq < task.fair_seq,
            sa.and_(tasks.c.fair_seq == task.fair_seq, tasks.c.id < task.id),
        )
        q = sa.select(sa.func.count()).where(*ops.in_lane(task.route, int(task.priority)), ahead)
        return int(await self._read(ops.scalar, q) or 0) + 1

    async def counts(self) -> dict[str, int]:
        q = sa.select(tasks.c.status, sa.func.count()).group_by(tasks.c.status)
        return {s: int(n) for s, n in await self._read(ops.tuples, q)}

    # --- claiming and leases -------------------------------------------------------------

    async def claim(
        self,
        route: str,
        plan: Planner,
        assign: Callable[[Sequence[Task]], Sequence[str | None]],
        worker: str,
        lease: float,
        limits: Mapping[str, RateLimit] | None = None,
    ) -> list[Task]:
        """Claim tasks of one route for ``worker``, in one transaction that holds the route's
        lock, so that no two workers' claims on a route interleave and its capacity and rate
        limits hold across all of them: count the calls in flight on each of the route's
        instances (every worker's) and the calls the rate limits of those in ``limits``
        (instance: requests and tokens per minute) allow, ask ``plan`` how many tasks of each
        priority to take given both, move them to PROCESSING under the lease, record on each
        the instance ``assign`` picks for it (None: keep the one it has, as a resumed backend
        job does), and take one request from the bucket of each instance picked.
        """
        return await self._write(self._claim_in, route, plan, assign, worker, lease, limits or {})

    def _claim_in(
        self,
        conn: Conn,
        route: str,
        plan: Planner,
        assign: Callable[[Sequence[Task]], Sequence[str | None]],
        worker: str,
        lease: float,
        limits: Mapping[str, RateLimit],
    ) -> list[Task]:
        now = time.time()
        if self.dialect == "postgresql":
            conn.execute(ops.ROUTE_LOCK, {"lock_route": route})
        busy = dict(ops.tuples_with(conn, ops.BUSY, {"b_route": route, "b_now": now}))
        buckets = ops.rate_buckets_of(conn, route, limits, now)
        allowed = {name: b.allowed(*limits[name]) for name, b in buckets.items()}
        claimed: list[Task] = []
        for priority, want in plan(busy, allowed).items():
            if want <= 0:
                continue
            values = {
                "lane_route": route,
                "lane_priority": int(priority),
                "c_limit": want,
                "c_worker": worker,
                "c_now": now,
                "c_lease_until": now + lease,
            }
            rows = ops.rows_with(conn, self._claim_stmt, values)
            claimed += sorted((Task.from_row(r) for r in rows), key=lambda t: (t.fair_seq, t.id))
        picks = assign(claimed)
        chosen = [{"s_id": t.id, "s_instance": i} for t, i in zip(claimed, picks, strict=True) if i]
        if chosen:
            conn.execute(ops.SET_INSTANCE, chosen)
        if buckets:
            for name in picks:
                if name in buckets and limits[name][0] is not None:
                    buckets[name].requests -= 1
            ops.keep_rate_buckets(conn, route, buckets)
        return [
            dataclasses.replace(t, instance=i) if i else t
            for t, i in zip(claimed, picks, strict=True)
        ]

    @functools.cached_property
    def _claim_stmt(self) -> sa.Executable:
        """The claim, built once (with bound parameters) for this store's database: building
        a statement costs more than running it on SQLite."""
        return ops.claim_statement(skip_locked=self.dialect == "postgresql")

    async def renew(self, ids: Iterable[str], worker: str, lease: float) -> set[str]:
        """Extend the leases ``worker`` still holds; return the ids it still holds."""
        ids = list(ids)
        if not ids:
            return set()
        stmt = (
            tasks.update()
            .where(tasks.c.id.in_(ids), tasks.c.worker == worker, tasks.c.status == PROCESSING)
            .values(lease_until=time.time() + lease)
            .returning(tasks.c.id)
        )
        return {row["id"] for row in await self._write(ops.rows, stmt)}

    # --- ending attempts -------------------------------------------------------------------

    async def finish(self, outcome: Outcome) -> Task | None:
        """End an attempt. Returns the task as written, or None when the attempt no longer
        holds the task (cancelled, lease lost, or already ended): then nothing changes."""
        return await self._finishes.submit(outcome)

    async def _finish_batch(self, batch: Sequence[Outcome]) -> list[Task | None]:
        out = await self._write(ops.finish_batch, batch)
        self._ended([t for t in out if t is not None and t.terminal])
        return out

    def _ended(self, ended: Sequence[Task]) -> None:
        if ended:
            for listener in self.ended_listeners:
                listener(ended)

    async def set_provider_job(
        self, task_id: str, worker: str, attempt: int, job: dict[str, Any]
    ) -> bool:
        """Keep the backend's job on the task, fenced like a finish. False: the attempt no
        longer holds the task (cancelled meanwhile; the caller cancels the job)."""
        stmt = (
            tasks.update()
            .where(
                tasks.c.id == task_id,
                tasks.c.status == PROCESSING,
                tasks.c.worker == worker,
                tasks.c.attempts == attempt,
            )
            .values(provider_job=job, updated_at=time.time())
            .returning(tasks.c.id)
        )
        return bool(await self._write(ops.rows, stmt))

    async def record_late_result(self, task_id: str, result: Any) -> Task | None:
        """Keep the result of a backend job that finished after its task had timed out
        here. The status stays TIMEOUT (a task ends once); the paid-for output is kept."""
        stmt = (
            tasks.update()
            .where(
                tasks.c.id == task_id,
                tasks.c.status == Status.TIMEOUT.value,
                tasks.c.provider_job.is_not(None),
            )
            .values(result=result, updated_at=time.time())
            .returning(*tasks.c)
        )
        return await self._write(ops.one_task, stmt)

    async def record_attempt(self, o: Outcome) -> None:
        """Add an attempt to a task's history without touching the task (a cancelled call)."""
        await self._write(ops.execute, attempts.insert(), [ops.attempt_row(o, time.time())])

    async def cancel(self, task_id: str, tenant: str | None) -> Task | None:
        """Cancel a pending or running task. Returns the task after the attempt (already
        ended tasks come back unchanged), or None if the tenant has no such task."""
        conds = [tasks.c.id == task_id]
        if tenant is not None:
            conds.append(tasks.c.tenant == tenant)
        cancelled = await self._cancel_where(conds, "cancelled by the client")
        return cancelled[0] if cancelled else await self.get(task_id, tenant)

    async def _cancel_where(self, conds: list[Any], reason: str) -> list[Task]:
        """Cancel the tasks that match and have not ended; returns them as written."""
        now = time.time()
        stmt = (
            tasks.update()
            .where(*conds, tasks.c.status.in_([PENDING, PROCESSING]))
            .values(
                status=Status.CANCELLED.value,
                error={"type": "cancelled", "message": reason},
                finished_at=now,
                updated_at=now,
                lease_until=None,
            )
            .returning(*tasks.c)
        )
        ended = await self._write(ops.end_where, stmt)
        self._ended(ended)
        return ended

    async def sweep(self) -> list[Task]:
        """Requeue tasks whose worker stopped renewing its lease (failing those out of
        attempts) and time out pending tasks past their queue-wait deadline. Works in
        transactions of at most ``SWEEP_BATCH`` lost tasks, as many as there are."""
        changed: list[Task] = []
        while True:
            batch, more = await self._write(ops.sweep_once, time.time())
            self._ended([t for t in batch if t.terminal])
            changed += batch
            if not more:
                return changed

    async def processing_workers(self) -> set[str]:
        q = sa.select(tasks.c.worker).where(tasks.c.status == PROCESSING).distinct()
        return {row["worker"] for row in await self._read(ops.rows, q)}

    async def expire_leases(self, workers: Iterable[str]) -> None:
        """End the leases of workers known to be dead, so the next sweep requeues their tasks."""
        stmt = (
            tasks.update()
            .where(tasks.c.status == PROCESSING, tasks.c.worker.in_(list(workers)))
            .values(lease_until=0.0)
        )
        await self._write(ops.execute, stmt)

    # --- files -----------------------------------------------------------------------------

    async def add_file(self, f: StoredFile) -> None:
        await self._write(ops.execute, files.insert(), [f.as_dict()])

    async def get_file(self, file_id: str, tenant: str | None) -> StoredFile | None:
        q = sa.select(files).where(files.c.id == file_id)
        if tenant is not None:
            q = q.where(files.c.tenant == tenant)
        rows = await self._read(ops.rows, q)
        return StoredFile(**rows[0]) if rows else None

    async def delete_files(self, file_ids: Sequence[str]) -> None:
        if file_ids:
            await self._write(ops.execute, files.delete().where(files.c.id.in_(file_ids)))

    # --- API keys ------------------------------------------------------------------------

    async def create_key(self, tenant: str, name: str, admin: bool = False) -> tuple[ApiKey, str]:
        """Create a key; the secret is returned once and only its hash is stored."""
        secret = "tg_" + secrets.token_urlsafe(30)
        key = ApiKey(
            id=new_id("key_"),
            tenant=tenant,
            name=name,
            admin=admin,
            created_at=time.time(),
            prefix=secret[:10],
        )
        row = {**key.as_dict(), "hash": _hash_key(secret)}
        await self._write(ops.execute, api_keys.insert(), [row])
        return key, secret

    async def key_for_secret(self, secret: str) -> ApiKey | None:
        q = sa.select(api_keys).where(api_keys.c.hash == _hash_key(secret))
        rows = await self._read(ops.rows, q)
        return ops.key_from_row(rows[0]) if rows else None

    async def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        q = sa.select(api_keys).order_by(api_keys.c.created_at)
        if tenant is not None:
            q = q.where(api_keys.c.tenant == tenant)
        return [ops.key_from_row(r) for r in await self._read(ops.rows, q)]

    async def revoke_key(self, key_id: str) -> bool:
        stmt = (
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
            .returning(api_keys.c.id)
        )
        return bool(await self._write(ops.rows, stmt))

    async def has_admin_key(self) -> bool:
        q = (
            sa.select(api_keys.c.id)
            .where(api_keys.c.admin.is_(True), api_keys.c.revoked_at.is_(None))
            .limit(1)
        )
        return await self._read(ops.scalar, q) is not None


def _sqlite_setup(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        dbapi_conn.execute("PRAGMA busy_timeout=10000")
        _enable_wal(dbapi_conn)
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Conn) -> None:
        readonly = conn.get_execution_options().get("readonly")
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def _enable_wal(dbapi_conn: Any, tries: int = 100) -> None:
    """Switch a database file to WAL. On a new file that other processes open at the same
    moment SQLite refuses the switch with "database is locked" at once, without waiting on
    the busy timeout, so we wait and try again ourselves."""
    for attempt in range(tries):
        try:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.01 + 0.01 * random.random())
