"""Batches: one request's tasks for several models, accepted together and cancelled together
(a first-wins batch cancels the rest when one of them succeeds)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from taskgate.models import Batch, Task
from taskgate.store import ops
from taskgate.store.base import NewTask
from taskgate.store.database import Conn, Database
from taskgate.store.schema import batches, tasks
from taskgate.store.tasks import cancel_where, insert_in, inserted_tasks


class Batches:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, batch: Batch, news: Sequence[NewTask]) -> list[Task]:
        """Accept a batch and its tasks in one transaction: all of them or none."""

        def write(conn: Conn) -> list[Task]:
            conn.execute(batches.insert(), [dataclasses.asdict(batch)])
            return inserted_tasks(insert_in(conn, news))

        inserted = await self._db.write(write)
        self._db.observer.created(inserted)
        return inserted

    async def get(self, batch_id: str, tenant: str | None) -> tuple[Batch, list[Task]] | None:
        """A batch of the tenant (None: any) with its tasks in the order of its models."""
        q = sa.select(batches).where(batches.c.id == batch_id)
        if tenant is not None:
            q = q.where(batches.c.tenant == tenant)
        found = await self._db.read(ops.rows, q)
        if not found:
            return None
        batch = Batch.from_row(found[0])
        members = sa.select(tasks).where(tasks.c.batch_id == batch_id)
        order = {m: i for i, m in enumerate(batch.models)}
        rows = await self._db.read(ops.rows, members)
        return batch, sorted((Task.from_row(r) for r in rows), key=lambda t: order.get(t.model, 0))

    async def cancel(self, batch_id: str, winner: str | None = None) -> list[Task]:
        """Cancel the batch's tasks that have not ended; returns them. With ``winner`` (a
        task that succeeded), only if the batch is first-wins, and all but the winner."""
        conds: list[Any] = [tasks.c.batch_id == batch_id]
        if winner is not None:
            first_wins = sa.select(batches.c.id).where(
                batches.c.id == batch_id, batches.c.first_wins
            )
            conds += [tasks.c.id != winner, sa.exists(first_wins)]
        reason = "another model of its batch answered first" if winner else "batch cancelled"
        return await cancel_where(self._db, conds, reason)
