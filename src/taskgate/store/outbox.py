"""The webhook outbox: a delivery row per event, written in the transaction that ends the task
(or the last task of a batch), so an ending and its webhook are kept together or not at all;
deliverers claim due rows under a lease and record each attempt; and the tenants' signing
secrets.

Like ``ops.py``, the statements are synchronous functions of a ``Connection``; :class:`Outbox`
runs them in the store's transactions (:class:`~taskgate.store.database.Database`).
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from taskgate import callbacks
from taskgate.callbacks import Callback
from taskgate.models import Batch, Task, new_id
from taskgate.store import task_logs
from taskgate.store.database import Database, dialect_insert, rows, scalar
from taskgate.store.schema import (
    batches,
    status_is,
    task_callbacks,
    tasks,
    tenants,
    webhook_deliveries,
)
from taskgate.views import batch_json, iso, task_json

Conn = sa.Connection

PENDING, DELIVERED, FAILED = "PENDING", "DELIVERED", "FAILED"
wd = webhook_deliveries


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    tenant: str
    task_id: str | None
    batch_id: str | None
    url: str
    event_id: str
    payload: dict[str, Any]  # the event, as POSTed
    status: str  # PENDING | DELIVERED | FAILED
    attempts: int  # attempts that ended (a claim in flight is not counted yet)
    next_attempt_at: float
    created_at: float
    updated_at: float
    last_status: int | None = None
    last_error: str | None = None
    # headers the client asked to be sent (taskgate.callbacks): secrets, never shown or logged
    headers: dict[str, str] | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_row(cls, row: Any) -> Delivery:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})


def event(type_: str, subject_id: str, data: dict[str, Any], now: float) -> dict[str, Any]:
    """A webhook event. Its id is stable (one per subject and type): receivers dedupe on it."""
    return {"id": f"evt_{subject_id}_finished", "type": type_, "created_at": iso(now), "data": data}


def _run_of(t: Task) -> str:
    """The subject of a task's ending event: the task, or its n-th run after an admin's
    retries (each ending of a task run again is an event of its own)."""
    return f"{t.id}_r{t.retries}" if t.retries else t.id


def _row(
    tenant: str,
    url: str,
    payload: dict[str, Any],
    now: float,
    headers: dict[str, str] | None = None,
    **subject: Any,
) -> dict[str, Any]:
    return {
        "id": new_id("whd_"),
        "tenant": tenant,
        "task_id": subject.get("task_id"),
        "batch_id": subject.get("batch_id"),
        "url": url,
        "event_id": payload["id"],
        "payload": payload,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "last_status": None,
        "last_error": None,
        "created_at": now,
        "updated_at": now,
        "headers": headers or None,
    }


def add_deliveries(conn: Conn, ended: Sequence[Task], now: float) -> int:
    """Queue the webhooks due because ``ended`` tasks ended in this transaction: one per task
    that names a URL, and one per batch with a URL whose last task this was. Returns how
    many were offered (one whose event id is already queued is dropped)."""
    finished = [t for t in ended if t.terminal]
    hooked = [t for t in finished if t.webhook_url]
    callbacks = _callbacks(conn, [t.id for t in hooked])
    deliveries = [_task_row(t, callbacks.get(t.id), now) for t in hooked]
    deliveries += _batch_rows(conn, sorted({t.batch_id for t in finished if t.batch_id}), now)
    if deliveries:
        conn.execute(
            dialect_insert(conn, wd).on_conflict_do_nothing(index_elements=["event_id"]), deliveries
        )
    return len(deliveries)


def _callbacks(conn: Conn, task_ids: list[str]) -> dict[str, Callback]:
    """The callbacks of the tasks that have one (taskgate.callbacks), by task id."""
    if not task_ids:
        return {}
    q = sa.select(task_callbacks).where(task_callbacks.c.task_id.in_(task_ids))
    return {r.task_id: Callback(r.dialect, dict(r.headers or {})) for r in conn.execute(q).all()}


def _task_row(t: Task, callback: Callback | None, now: float) -> dict[str, Any]:
    """The delivery of a task's ending: taskgate's event (with the fields of the API the
    task came through), and the headers its client asked for."""
    payload = event("task.finished", _run_of(t), task_json(t), now)
    if callback is None:
        return _row(t.tenant, t.webhook_url or "", payload, now, task_id=t.id)
    payload = callbacks.body(callback.dialect, t, payload)
    return _row(t.tenant, t.webhook_url or "", payload, now, callback.headers, task_id=t.id)


def _batch_rows(conn: Conn, batch_ids: list[str], now: float) -> list[dict[str, Any]]:
    """The batches (with a URL) among ``batch_ids`` whose every task has ended. Each batch row
    is locked first (PostgreSQL), in id order, so of two transactions ending a batch's last
    two tasks at once the second waits, then sees the first's ending: one of them, never
    neither, finds the batch done. (SQLite runs one writer at a time anyway.)"""
    if not batch_ids:
        return []
    locked = (
        sa.select(batches)
        .where(batches.c.id.in_(batch_ids), batches.c.webhook_url.is_not(None))
        .order_by(batches.c.id)
        .with_for_update()
    )
    out = []
    for row in conn.execute(locked).mappings().all():
        batch = Batch.from_row(row)
        found = _members(conn, batch)
        if found and all(t.terminal for t in found):
            payload = event("batch.finished", batch.id, batch_json(batch, found), now)
            out.append(_row(batch.tenant, batch.webhook_url or "", payload, now, batch_id=batch.id))
    return out


def _members(conn: Conn, batch: Batch) -> list[Task]:
    """The batch's tasks in the order of its models, as batch_json lists them."""
    order = {m: i for i, m in enumerate(batch.models)}
    members = conn.execute(sa.select(tasks).where(tasks.c.batch_id == batch.id)).mappings()
    return sorted((Task.from_row(r) for r in members), key=lambda t: order.get(t.model, 0))


def claim_due(conn: Conn, now: float, limit: int, lease: float) -> list[Delivery]:
    """Take up to ``limit`` due deliveries: their next attempt moves ``lease`` seconds on, so
    no other deliverer takes them meanwhile, and one whose deliverer died is due again then.
    On PostgreSQL, rows another deliverer is claiming are skipped, not waited for."""
    due = (status_is(wd.c.status, PENDING), wd.c.next_attempt_at <= now)
    pick = sa.select(wd.c.id).where(*due).order_by(wd.c.next_attempt_at).limit(limit)
    if conn.dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    picked = pick.cte("picked")  # a CTE runs once (see ops.claim_statement)
    stmt = (
        wd.update()
        .where(wd.c.id.in_(sa.select(picked.c.id)), *due)
        .values(next_attempt_at=now + lease, updated_at=now)
        .returning(*wd.c)
    )
    found = [Delivery.from_row(r) for r in conn.execute(stmt).mappings()]
    return sorted(found, key=lambda d: d.next_attempt_at)


def record(
    conn: Conn, d: Delivery, status: str, next_at: float, last_status: int | None, error: str | None
) -> bool:
    """End one attempt of a claimed delivery. Fenced on the attempts the claim saw: if its
    lease ran out and another deliverer tried meanwhile, this changes nothing (False). A
    delivery that has ended forgets its client's headers (secrets): no try will send them."""
    ended = {} if status == PENDING else {"headers": None}
    stmt = (
        wd.update()
        .where(wd.c.id == d.id, status_is(wd.c.status, PENDING), wd.c.attempts == d.attempts)
        .values(
            **ended,
            status=status,
            attempts=d.attempts + 1,
            next_attempt_at=next_at,
            last_status=last_status,
            last_error=error[:500] if error else None,
            updated_at=time.time(),
        )
    )
    if not conn.execute(stmt).rowcount:
        return False
    if d.task_id is not None:  # the try joins the task's timeline
        said = f"HTTP {last_status}" if last_status is not None else (error or "no answer")
        tried = {"delivery": d.id, "try": d.attempts + 1, "outcome": status}
        task_logs.add_in(conn, [task_logs.entry(d.task_id, "webhook", message=said, data=tried)])
    return True


def release(conn: Conn, ids: Sequence[str], now: float) -> None:
    """Make claimed deliveries due at once (a deliverer stopping before it sent them)."""
    stmt = wd.update().where(wd.c.id.in_(list(ids)), status_is(wd.c.status, PENDING))
    conn.execute(stmt.values(next_attempt_at=now))


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def ensure_secret(conn: Conn, tenant: str) -> str:
    """The tenant's signing secret, made on first need (two makers at once: one wins)."""
    row = {"id": tenant, "webhook_secret": new_secret(), "created_at": time.time()}
    conn.execute(dialect_insert(conn, tenants).on_conflict_do_nothing(index_elements=["id"]), [row])
    return str(conn.scalar(sa.select(tenants.c.webhook_secret).where(tenants.c.id == tenant)))


def rotate_secret(conn: Conn, tenant: str) -> str:
    secret = new_secret()
    row = {"id": tenant, "webhook_secret": secret, "created_at": time.time()}
    upsert = dialect_insert(conn, tenants)
    conn.execute(
        upsert.on_conflict_do_update(index_elements=["id"], set_={"webhook_secret": secret}), [row]
    )
    return secret


class Outbox:
    """The outbox's operations, run in the store's transactions."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(self, limit: int, lease: float) -> list[Delivery]:
        return list(await self._db.write(claim_due, time.time(), limit, lease))

    async def record(
        self, d: Delivery, status: str, next_at: float, last_status: int | None, error: str | None
    ) -> bool:
        recorded = bool(await self._db.write(record, d, status, next_at, last_status, error))
        if recorded:
            self._db.observer.webhook_tried(status, last_status)
        return recorded

    async def release(self, ids: Sequence[str]) -> None:
        if ids:
            await self._db.write(release, ids, time.time())

    async def next_due(self) -> float | None:
        """When the earliest pending delivery is due (None: none is pending)."""
        q = sa.select(sa.func.min(wd.c.next_attempt_at)).where(status_is(wd.c.status, PENDING))
        return await self._db.read(scalar, q)

    async def of(
        self, *, task_id: str | None = None, batch_id: str | None = None
    ) -> list[Delivery]:
        """The deliveries of a task or a batch, oldest first."""
        col, value = (wd.c.task_id, task_id) if task_id is not None else (wd.c.batch_id, batch_id)
        q = sa.select(wd).where(col == value).order_by(wd.c.created_at, wd.c.id)
        return [Delivery.from_row(r) for r in await self._db.read(rows, q)]

    async def secret(self, tenant: str) -> str:
        q = sa.select(tenants.c.webhook_secret).where(tenants.c.id == tenant)
        found = await self._db.read(scalar, q)
        return str(found) if found else str(await self._db.write(ensure_secret, tenant))

    async def rotate_secret(self, tenant: str) -> str:
        return str(await self._db.write(rotate_secret, tenant))
