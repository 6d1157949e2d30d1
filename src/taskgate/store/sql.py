"""The SQL store on SQLite (embedded default) and PostgreSQL, through SQLAlchemy Core (async).

SQLite serialises writers, so the SQLite store writes through one connection that begins with
``BEGIN IMMEDIATE`` (no upgrade deadlocks) and reads through a small pool. On PostgreSQL claims
use ``FOR UPDATE SKIP LOCKED`` so that workers never wait on each other's rows.

Inserts and attempt endings go through :class:`~taskgate.batching.Batcher`, so under load many
of them share one transaction and one commit.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from taskgate.batching import Batcher
from taskgate.errors import Conflict
from taskgate.models import ApiKey, Attempt, Priority, Status, Task, new_id
from taskgate.policy import fair_seq
from taskgate.store.base import NewTask, Outcome, TaskFilter
from taskgate.store.schema import api_keys, attempts, tasks

MIGRATIONS = Path(__file__).with_name("migrations")
_ADVISORY_LOCK = 7_364_021  # serialises concurrent migrations on PostgreSQL

PENDING, PROCESSING = Status.PENDING.value, Status.PROCESSING.value


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def async_url(url: str) -> tuple[str, str]:
    """Map a user-facing URL to SQLAlchemy's async driver URL; return (dialect, url)."""
    if url.startswith(("sqlite://", "sqlite+aiosqlite://")):
        path = url.split("://", 1)[1]
        return "sqlite", f"sqlite+aiosqlite://{path}"
    if url.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://")):
        rest = url.split("://", 1)[1]
        return "postgresql", f"postgresql+asyncpg://{rest}"
    raise ValueError(f"unsupported store URL {url!r}: use sqlite:///PATH or postgresql://...")


def _hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class SqlStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect, self._driver_url = async_url(url)
        self._write_engine: AsyncEngine | None = None
        self._read_engine: AsyncEngine | None = None
        self._inserts: Batcher[NewTask, tuple[Task, bool]] = Batcher(self._insert_batch)
        self._finishes: Batcher[Outcome, Task | None] = Batcher(self._finish_batch)

    # --- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        common: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
        if self.dialect == "sqlite":
            self._prepare_sqlite_path()
            self._write_engine = create_async_engine(
                self._driver_url, pool_size=1, max_overflow=0, pool_timeout=60, **common
            )
            self._read_engine = create_async_engine(
                self._driver_url, pool_size=4, max_overflow=4, **common
            )
            _sqlite_pragmas(self._write_engine, begin="BEGIN IMMEDIATE")
            _sqlite_pragmas(self._read_engine, begin="BEGIN")
        else:
            self._write_engine = create_async_engine(
                self._driver_url, pool_size=10, max_overflow=10, pool_pre_ping=True, **common
            )
            self._read_engine = self._write_engine
        await self.migrate()

    def _prepare_sqlite_path(self) -> None:
        path = self._driver_url.split(":///", 1)[1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    async def migrate(self) -> None:
        def upgrade(sync_conn: sa.Connection) -> None:
            if self.dialect == "postgresql":
                sync_conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK})")
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = sync_conn
            command.upgrade(cfg, "head")

        async with self._write() as conn:
            await conn.run_sync(upgrade)

    async def close(self) -> None:
        await self._inserts.drain()
        await self._finishes.drain()
        for engine in {self._write_engine, self._read_engine}:
            if engine is not None:
                await engine.dispose()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        assert self._write_engine is not None, "store is not open"
        async with self._write_engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        assert self._read_engine is not None, "store is not open"
        async with self._read_engine.connect() as conn:
            yield conn

    # --- accepting tasks ---------------------------------------------------------------

    async def insert(self, new: NewTask) -> tuple[Task, bool]:
        """Accept a task durably; return it and whether it is new (False: idempotent replay)."""
        return await self._inserts.submit(new)

    async def _insert_batch(
        self, batch: Sequence[NewTask]
    ) -> list[tuple[Task, bool] | BaseException]:
        try:
            async with self._write() as conn:
                return await self._insert_in(conn, batch)
        except IntegrityError:
            # Two gateways raced on one idempotency key: settle each task on its own.
            return [await self._insert_alone(new) for new in batch]

    async def _insert_alone(self, new: NewTask) -> tuple[Task, bool] | BaseException:
        try:
            async with self._write() as conn:
                return (await self._insert_in(conn, [new]))[0]
        except IntegrityError:  # the other insert won; this one now finds it
            async with self._write() as conn:
                return (await self._insert_in(conn, [new]))[0]

    async def _insert_in(
        self, conn: AsyncConnection, batch: Sequence[NewTask]
    ) -> list[tuple[Task, bool] | BaseException]:
        now = time.time()
        results: list[tuple[Task, bool] | BaseException | None] = [None] * len(batch)
        fresh: list[tuple[int, NewTask]] = []
        seen_keys: dict[tuple[str, str], int] = {}
        for i, new in enumerate(batch):
            if new.idempotency_key is None:
                fresh.append((i, new))
                continue
            ident = (new.tenant, new.idempotency_key)
            existing = await self._by_idempotency_key(conn, *ident)
            if existing is None and ident in seen_keys:
                existing = results[seen_keys[ident]][0]  # type: ignore[index]
            if existing is None:
                seen_keys[ident] = i
                fresh.append((i, new))
            elif existing.request_hash != new.request_hash:
                results[i] = Conflict(
                    "idempotency key reused with a different request",
                    idempotency_key=new.idempotency_key,
                    task_id=existing.id,
                )
            else:
                results[i] = (existing, False)
        seqs = await self._fair_seqs(conn, [n for _, n in fresh])
        rows = [self._new_row(n, seq, now) for (_, n), seq in zip(fresh, seqs, strict=True)]
        if rows:
            await conn.execute(tasks.insert(), rows)
        for (i, _), row in zip(fresh, rows, strict=True):
            results[i] = (Task.from_row(row), True)
        return [r for r in results if r is not None]

    async def _by_idempotency_key(self, conn: AsyncConnection, tenant: str, key: str) -> Task | None:
        row = (
            await conn.execute(
                sa.select(tasks).where(tasks.c.tenant == tenant, tasks.c.idempotency_key == key)
            )
        ).first()
        return Task.from_row(row._mapping) if row else None

    async def _fair_seqs(self, conn: AsyncConnection, batch: Sequence[NewTask]) -> list[int]:
        """Number each new task within its lane so that keys share the lane fairly."""
        fronts: dict[tuple[str, int], int | None] = {}
        lasts: dict[tuple[str, int, str], int | None] = {}
        out = []
        for new in batch:
            lane = (new.route, int(new.priority))
            if lane not in fronts:
                fronts[lane] = await conn.scalar(
                    sa.select(sa.func.min(tasks.c.fair_seq)).where(*self._lane(*lane))
                )
            key = (*lane, new.api_key_id)
            if key not in lasts:
                lasts[key] = await conn.scalar(
                    sa.select(sa.func.max(tasks.c.fair_seq)).where(
                        *self._lane(*lane), tasks.c.api_key_id == new.api_key_id
                    )
                )
            seq = fair_seq(fronts[lane], lasts[key])
            lasts[key] = seq
            out.append(seq)
        return out

    @staticmethod
    def _lane(route: str, priority: int) -> tuple[sa.ColumnElement[bool], ...]:
        return (tasks.c.status == PENDING, tasks.c.route == route, tasks.c.priority == priority)

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
            "worker": None,
            "instance": None,
            "lease_until": None,
            "claimed_at": None,
            "created_at": now,
            "updated_at": now,
            "started_at": None,
            "finished_at": None,
        }

    # --- reading -----------------------------------------------------------------------

    async def get(self, task_id: str, tenant: str | None = None) -> Task | None:
        q = sa.select(tasks).where(tasks.c.id == task_id)
        if tenant is not None:
            q = q.where(tasks.c.tenant == tenant)
        async with self._read() as conn:
            row = (await conn.execute(q)).first()
        return Task.from_row(row._mapping) if row else None

    async def history(self, task_id: str) -> list[Attempt]:
        q = sa.select(attempts).where(attempts.c.task_id == task_id).order_by(attempts.c.id)
        async with self._read() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [Attempt(**{k: v for k, v in r.items() if k != "id"}) for r in rows]

    async def list(self, f: TaskFilter) -> list[Task]:
        q = sa.select(tasks).order_by(tasks.c.id.desc()).limit(f.limit)
        conds = []
        if f.tenant is not None:
            conds.append(tasks.c.tenant == f.tenant)
        if f.statuses:
            conds.append(tasks.c.status.in_([s.value for s in f.statuses]))
        if f.kind:
            conds.append(tasks.c.kind == f.kind)
        if f.model:
            conds.append(tasks.c.model == f.model)
        if f.created_after is not None:
            conds.append(tasks.c.created_at >= f.created_after)
        if f.created_before is not None:
            conds.append(tasks.c.created_at < f.created_before)
        if f.before_id:
            conds.append(tasks.c.id < f.before_id)
        async with self._read() as conn:
            rows = (await conn.execute(q.where(*conds))).mappings().all()
        return [Task.from_row(r) for r in rows]

    async def position(self, task: Task) -> int:
        """1-based place of a pending task in its lane (route and priority), in claim order."""
        ahead = sa.or_(
            tasks.c.fair_seq < task.fair_seq,
            sa.and_(tasks.c.fair_seq == task.fair_seq, tasks.c.id < task.id),
        )
        q = sa.select(sa.func.count()).where(*self._lane(task.route, int(task.priority)), ahead)
        async with self._read() as conn:
            return int(await conn.scalar(q) or 0) + 1

    async def counts(self) -> dict[str, int]:
        q = sa.select(tasks.c.status, sa.func.count()).group_by(tasks.c.status)
        async with self._read() as conn:
            return {s: int(n) for s, n in (await conn.execute(q)).all()}

    # --- claiming and leases -------------------------------------------------------------

    async def claim(
        self, route: str, priority: Priority, limit: int, worker: str, lease: float
    ) -> list[Task]:
        """Move up to ``limit`` due tasks of one lane to PROCESSING under ``worker``'s lease."""
        now = time.time()
        pick = (
            sa.select(tasks.c.id)
            .where(
                *self._lane(route, int(priority)),
                tasks.c.run_after <= now,
                sa.or_(tasks.c.deadline.is_(None), tasks.c.deadline > now),
            )
            .order_by(tasks.c.fair_seq, tasks.c.id)
            .limit(limit)
        )
        if self.dialect == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        # A CTE, not a subquery: PostgreSQL may re-run a SKIP LOCKED subquery for every row
        # it scans, each run skipping the rows the previous one locked, and so claim far
        # more than ``limit``. A locking CTE runs exactly once.
        picked = pick.cte("picked")
        stmt = (
            tasks.update()
            .where(tasks.c.id.in_(sa.select(picked.c.id)), tasks.c.status == PENDING)
            .values(
                status=PROCESSING,
                attempts=tasks.c.attempts + 1,
                worker=worker,
                lease_until=now + lease,
                claimed_at=now,
                started_at=sa.func.coalesce(tasks.c.started_at, now),
                updated_at=now,
            )
            .returning(*tasks.c)
        )
        async with self._write() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return sorted((Task.from_row(r) for r in rows), key=lambda t: (t.fair_seq, t.id))

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
        async with self._write() as conn:
            return set((await conn.execute(stmt)).scalars().all())

    # --- ending attempts -------------------------------------------------------------------

    async def finish(self, outcome: Outcome) -> Task | None:
        """End an attempt. Returns the task as written, or None when the attempt no longer
        holds the task (cancelled, lease lost, or already ended): then nothing changes."""
        return await self._finishes.submit(outcome)

    async def _finish_batch(self, batch: Sequence[Outcome]) -> list[Task | None | BaseException]:
        now = time.time()
        out: list[Task | None | BaseException] = []
        history = []
        async with self._write() as conn:
            for o in batch:
                row = (await conn.execute(self._finish_stmt(o, now))).mappings().first()
                out.append(Task.from_row(row) if row else None)
                if row:
                    history.append(self._attempt_row(o, now))
            if history:
                await conn.execute(attempts.insert(), history)
        return out

    @staticmethod
    def _finish_stmt(o: Outcome, now: float) -> sa.Update:
        values: dict[str, Any] = {
            "status": o.status.value,
            "instance": o.instance,
            "error": o.error,
            "updated_at": now,
            "lease_until": None,
        }
        if o.status is Status.PENDING:
            values.update(worker=None, run_after=o.run_after, route=o.next_route or o.route)
        else:
            values.update(result=o.result, finished_at=now)
        return (
            tasks.update()
            .where(
                tasks.c.id == o.task_id,
                tasks.c.status == PROCESSING,
                tasks.c.worker == o.worker,
                tasks.c.attempts == o.attempt,
            )
            .values(**values)
            .returning(*tasks.c)
        )

    @staticmethod
    def _attempt_row(o: Outcome, now: float) -> dict[str, Any]:
        return {
            "task_id": o.task_id,
            "number": o.attempt,
            "route": o.route,
            "instance": o.instance,
            "started_at": o.started_at,
            "ended_at": now,
            "outcome": o.label,
            "error": o.error,
        }

    async def record_attempt(self, o: Outcome) -> None:
        """Add an attempt to a task's history without touching the task (a cancelled call)."""
        async with self._write() as conn:
            await conn.execute(attempts.insert(), [self._attempt_row(o, time.time())])

    async def cancel(self, task_id: str, tenant: str | None) -> Task | None:
        """Cancel a pending or running task. Returns the task after the attempt (already
        ended tasks come back unchanged), or None if the tenant has no such task."""
        now = time.time()
        conds = [tasks.c.id == task_id, tasks.c.status.in_([PENDING, PROCESSING])]
        if tenant is not None:
            conds.append(tasks.c.tenant == tenant)
        stmt = (
            tasks.update()
            .where(*conds)
            .values(
                status=Status.CANCELLED.value,
                error={"type": "cancelled", "message": "cancelled by the client"},
                finished_at=now,
                updated_at=now,
                lease_until=None,
            )
            .returning(*tasks.c)
        )
        async with self._write() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        if row:
            return Task.from_row(row)
        return await self.get(task_id, tenant)

    async def sweep(self) -> list[Task]:
        """Requeue tasks whose worker stopped renewing its lease (failing those out of
        attempts) and time out pending tasks past their queue-wait deadline."""
        now = time.time()
        changed: list[Task] = []
        async with self._write() as conn:
            expired = (
                (
                    await conn.execute(
                        sa.select(tasks)
                        .where(tasks.c.status == PROCESSING, tasks.c.lease_until < now)
                        .limit(500)
                    )
                )
                .mappings()
                .all()
            )
            for row in expired:
                task = await self._requeue_lost(conn, Task.from_row(row), now)
                if task:
                    changed.append(task)
            rows = (await conn.execute(self._deadline_stmt(now))).mappings().all()
            changed.extend(Task.from_row(r) for r in rows)
        return changed

    async def _requeue_lost(self, conn: AsyncConnection, t: Task, now: float) -> Task | None:
        error = {"type": "worker_lost", "message": f"worker {t.worker} stopped renewing its lease"}
        values: dict[str, Any] = {"error": error, "updated_at": now, "lease_until": None}
        if t.attempts >= t.max_attempts:
            values.update(status=Status.FAILED.value, finished_at=now)
        else:
            values.update(status=PENDING, worker=None, run_after=now)
        stmt = (
            tasks.update()
            .where(
                tasks.c.id == t.id,
                tasks.c.status == PROCESSING,
                tasks.c.worker == t.worker,
                tasks.c.attempts == t.attempts,
                tasks.c.lease_until < now,
            )
            .values(**values)
            .returning(*tasks.c)
        )
        row = (await conn.execute(stmt)).mappings().first()
        if not row:
            return None
        lost = {
            "task_id": t.id,
            "number": t.attempts,
            "route": t.route,
            "instance": t.instance or "",
            "started_at": t.claimed_at or now,
            "ended_at": now,
            "outcome": "lost",
            "error": error,
        }
        await conn.execute(attempts.insert(), [lost])
        return Task.from_row(row)

    @staticmethod
    def _deadline_stmt(now: float) -> sa.Update:
        error = {"type": "deadline", "message": "the queue-wait deadline passed before it started"}
        return (
            tasks.update()
            .where(tasks.c.status == PENDING, tasks.c.deadline < now)
            .values(status=Status.TIMEOUT.value, error=error, finished_at=now, updated_at=now)
            .returning(*tasks.c)
        )

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
        row = {**_key_row(key), "hash": _hash_key(secret)}
        async with self._write() as conn:
            await conn.execute(api_keys.insert(), [row])
        return key, secret

    async def key_for_secret(self, secret: str) -> ApiKey | None:
        q = sa.select(api_keys).where(api_keys.c.hash == _hash_key(secret))
        async with self._read() as conn:
            row = (await conn.execute(q)).mappings().first()
        return _key_from_row(row) if row else None

    async def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        q = sa.select(api_keys).order_by(api_keys.c.created_at)
        if tenant is not None:
            q = q.where(api_keys.c.tenant == tenant)
        async with self._read() as conn:
            return [_key_from_row(r) for r in (await conn.execute(q)).mappings().all()]

    async def revoke_key(self, key_id: str) -> bool:
        stmt = (
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
        )
        async with self._write() as conn:
            return (await conn.execute(stmt)).rowcount > 0

    async def has_admin_key(self) -> bool:
        q = sa.select(api_keys.c.id).where(api_keys.c.admin.is_(True)).limit(1)
        async with self._read() as conn:
            return (await conn.scalar(q)) is not None


def _key_row(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "tenant": key.tenant,
        "name": key.name,
        "admin": key.admin,
        "prefix": key.prefix,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }


def _key_from_row(row: Any) -> ApiKey:
    return ApiKey(**{k: v for k, v in row.items() if k != "hash"})


def _sqlite_pragmas(engine: AsyncEngine, begin: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

