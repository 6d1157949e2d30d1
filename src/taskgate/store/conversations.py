"""Conversations and their messages: a user's turn is written with the tasks that answer it;
the answers join the history when those tasks end (``ops.add_answers``)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from taskgate.models import Batch, Conversation, Message, Task, new_id
from taskgate.store import ops
from taskgate.store.base import NewTask
from taskgate.store.database import Conn, Database
from taskgate.store.schema import batches, conversations, file_refs, messages, tasks
from taskgate.store.tasks import insert_in, inserted_tasks


class Conversations:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, tenant: str, title: str = "", api: str | None = None) -> Conversation:
        now = time.time()
        c = Conversation(new_id(), tenant, title[:200], now, now, api)
        await self._db.write(ops.execute, conversations.insert(), [dataclasses.asdict(c)])
        return c

    async def get(self, conversation_id: str, tenant: str | None) -> Conversation | None:
        q = sa.select(conversations).where(conversations.c.id == conversation_id)
        if tenant is not None:
            q = q.where(conversations.c.tenant == tenant)
        found = await self._db.read(ops.rows, q)
        return Conversation.from_row(found[0]) if found else None

    async def find(
        self, tenant: str | None, before_id: str | None = None, limit: int = 50
    ) -> list[Conversation]:
        q = sa.select(conversations).order_by(conversations.c.id.desc()).limit(limit)
        if tenant is not None:
            q = q.where(conversations.c.tenant == tenant)
        if before_id is not None:
            q = q.where(conversations.c.id < before_id)
        return [Conversation.from_row(r) for r in await self._db.read(ops.rows, q)]

    async def latest(
        self, tenant: str | None, api: str | None, limit: int = 20
    ) -> list[Conversation]:
        """Up to ``limit`` conversations started through ``api``, the latest changed first
        (as AI Task System lists them)."""
        q = sa.select(conversations).where(conversations.c.api == api)
        if tenant is not None:
            q = q.where(conversations.c.tenant == tenant)
        q = q.order_by(conversations.c.updated_at.desc(), conversations.c.id.desc()).limit(limit)
        return [Conversation.from_row(r) for r in await self._db.read(ops.rows, q)]

    async def tasks(self, conversation_id: str) -> list[Task]:
        """The tasks of the conversation's turns that are still kept, oldest first."""
        q = sa.select(tasks).where(tasks.c.conversation_id == conversation_id).order_by(tasks.c.id)
        return [Task.from_row(r) for r in await self._db.read(ops.rows, q)]

    async def delete(self, conversation_id: str, tenant: str | None) -> bool:
        """Delete a conversation and its messages (its tasks stay, as tasks). The files it
        kept from purged turns are then purged like uploads (``retention.py``)."""

        def delete(conn: Conn) -> bool:
            q = conversations.delete().where(conversations.c.id == conversation_id)
            if tenant is not None:
                q = q.where(conversations.c.tenant == tenant)
            if not conn.execute(q).rowcount:
                return False
            conn.execute(messages.delete().where(messages.c.conversation_id == conversation_id))
            conn.execute(file_refs.delete().where(file_refs.c.conversation_id == conversation_id))
            return True

        return await self._db.write(delete)

    async def messages(self, conversation_id: str) -> list[Message]:
        q = (
            sa.select(messages)
            .where(messages.c.conversation_id == conversation_id)
            .order_by(messages.c.id)
        )
        return [Message.from_row(r) for r in await self._db.read(ops.rows, q)]

    async def add_turn(
        self, conversation_id: str, prompt: Any, news: Sequence[NewTask], batch: Batch | None = None
    ) -> list[Task]:
        """A user turn and the tasks that answer it (in their batch), in one transaction."""
        inserted = await self._db.write(_add_turn, conversation_id, prompt, news, batch)
        self._db.observer.created(inserted)
        return inserted


def _add_turn(
    conn: Conn, conversation_id: str, prompt: Any, news: Sequence[NewTask], batch: Batch | None
) -> list[Task]:
    now = time.time()
    if batch is not None:
        conn.execute(batches.insert(), [dataclasses.asdict(batch)])
    turn = {"conversation_id": conversation_id, "role": "user", "content": prompt}
    add = messages.insert().values(created_at=now, **turn).returning(messages.c.id)
    turn_id = conn.execute(add).scalar_one()
    answering = [dataclasses.replace(n, turn_id=turn_id) for n in news]
    out = inserted_tasks(insert_in(conn, answering))
    if len(out) == 1:  # a turn of one task names it (a batch's tasks name the turn)
        name = messages.update().where(messages.c.id == turn_id)
        conn.execute(name.values(task_id=out[0].id))
    touch = conversations.update().where(conversations.c.id == conversation_id)
    conn.execute(touch.values(updated_at=now))
    return out
