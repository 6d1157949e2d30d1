"""Purging what retention no longer keeps, one bounded transaction at a time.

A purge has two steps, each run in batches until nothing is left (``taskgate.ops.retention``
drives them):

1. **Tasks** that ended before their tenant's cutoff go, with their attempts, log entries,
   callbacks (their clients' headers), webhook deliveries and the batches they leave empty.
   The files they owned (their outputs) become *loose*, like uploads: ``files.task_id`` is
   cleared. The files they named stop being named by them (``file_refs``). A task of a
   conversation that is kept hands what it owned and named to the conversation
   (``file_refs.conversation_id``): a conversation is its user's history, kept until the user
   deletes it, and it shows those files.
2. **Loose files** made before their tenant's cutoff that nothing names any more (no kept
   task, no conversation) go: their rows here, their bytes after (``Files.purge``).

So a file a kept task still names is never deleted, whoever made it. Statements use the
indexes of what ended (``ix_tasks_finished``), of loose files (``ix_files_loose``) and of
``file_refs``; on PostgreSQL rows another transaction holds (a task being retried, a file a
new task is naming) are skipped, not waited for, and found again by the next run.

:func:`due` counts what a purge would remove, without removing anything (a dry run).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from taskgate.models import TERMINAL
from taskgate.store.base import Purged, Scope
from taskgate.store.database import Conn, Database
from taskgate.store.schema import (
    attempts,
    batches,
    conversations,
    file_refs,
    files,
    status_is,
    task_callbacks,
    task_logs,
    tasks,
    webhook_deliveries,
)

ENDED = sorted(s.value for s in TERMINAL)
Cond = sa.ColumnElement[bool]


class Retention:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def purge_tasks(self, scope: Scope, limit: int) -> tuple[Purged, bool]:
        """Purge up to ``limit`` ended tasks of the scope; say whether more may be due."""
        return await self._db.write(purge_tasks_in, scope, limit)

    async def purge_files(self, scope: Scope, limit: int) -> tuple[list[str], Purged, bool]:
        """Delete the rows of up to ``limit`` loose files of the scope that nothing names:
        their ids (whose bytes are to go too), what went, and whether more may be due."""
        return await self._db.write(purge_files_in, scope, limit)

    async def due(self, scopes: Sequence[Scope]) -> Purged:
        """What purging ``scopes`` would remove now."""
        return await self._db.read(due, scopes)


def in_scope(scope: Scope, tenant: sa.ColumnElement[Any]) -> Cond:
    if scope.tenant is not None:
        return tenant == scope.tenant
    return tenant.not_in(scope.others) if scope.others else sa.true()


def ended_in(scope: Scope, t: sa.FromClause) -> Cond:
    """The tasks (of table or alias ``t``) the scope purges."""
    return sa.and_(
        t.c.finished_at < scope.cutoff, status_is(t.c.status, *ENDED), in_scope(scope, t.c.tenant)
    )


def loose_in(scope: Scope) -> Cond:
    """The files the scope purges: loose, made before the cutoff, named by nothing."""
    named = sa.exists().where(file_refs.c.file_id == files.c.id)
    return sa.and_(
        files.c.task_id.is_(None),
        files.c.created_at < scope.cutoff,
        in_scope(scope, files.c.tenant),
        ~named,
    )


def _pick(conn: Conn, query: sa.Select[Any]) -> list[str]:
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(conn.scalars(query))


def _delete(conn: Conn, table: sa.Table, where: Cond) -> int:
    return int(conn.execute(table.delete().where(where)).rowcount or 0)


def purge_tasks_in(conn: Conn, scope: Scope, limit: int) -> tuple[Purged, bool]:
    due_here = ended_in(scope, tasks)
    picked = _pick(
        conn, sa.select(tasks.c.id).where(due_here).order_by(tasks.c.finished_at).limit(limit)
    )
    if not picked:
        return Purged(), False
    gone_q = tasks.delete().where(tasks.c.id.in_(picked), due_here)
    gone = conn.execute(gone_q.returning(tasks.c.id, tasks.c.batch_id, tasks.c.conversation_id))
    rows = gone.all()
    ids = [r.id for r in rows]
    out = Purged(tasks=len(ids))
    if ids:
        out.attempts = _delete(conn, attempts, attempts.c.task_id.in_(ids))
        out.logs = _delete(conn, task_logs, task_logs.c.task_id.in_(ids))
        out.webhook_deliveries = _delete(
            conn, webhook_deliveries, webhook_deliveries.c.task_id.in_(ids)
        )
        conn.execute(task_callbacks.delete().where(task_callbacks.c.task_id.in_(ids)))
        _hand_to_conversations(conn, {r.id: r.conversation_id for r in rows if r.conversation_id})
        conn.execute(file_refs.delete().where(file_refs.c.task_id.in_(ids)))
        conn.execute(files.update().where(files.c.task_id.in_(ids)).values(task_id=None))
        _purge_batches(conn, sorted({r.batch_id for r in rows if r.batch_id}), out)
    return out, len(picked) == limit


def _hand_to_conversations(conn: Conn, conversation_of: dict[str, str]) -> None:
    """The files purged tasks owned or named, now named by their conversations (those that
    still exist: on PostgreSQL share-locked, so that a conversation being deleted is
    either gone here or deletes these references with it)."""
    if not conversation_of:
        return
    live_q = sa.select(conversations.c.id).where(
        conversations.c.id.in_(sorted(set(conversation_of.values())))
    )
    if conn.dialect.name == "postgresql":
        live_q = live_q.order_by(conversations.c.id).with_for_update(read=True)
    live = set(conn.scalars(live_q))
    kept = {t: c for t, c in conversation_of.items() if c in live}
    if not kept:
        return
    named = sa.select(file_refs.c.task_id, file_refs.c.file_id).where(file_refs.c.task_id.in_(kept))
    owned = sa.select(files.c.task_id, files.c.id).where(files.c.task_id.in_(kept))
    wanted = {(kept[t], f) for t, f in conn.execute(named.union_all(owned))}
    have_q = sa.select(file_refs.c.conversation_id, file_refs.c.file_id).where(
        file_refs.c.conversation_id.in_(sorted(live))
    )
    have = {(c, f) for c, f in conn.execute(have_q)}
    refs = [{"file_id": f, "task_id": None, "conversation_id": c} for c, f in wanted - have]
    if refs:
        conn.execute(file_refs.insert(), sorted(refs, key=lambda r: r["file_id"]))


def _purge_batches(conn: Conn, batch_ids: list[str], out: Purged) -> None:
    """The batches among ``batch_ids`` left without tasks, with their webhook deliveries."""
    if not batch_ids:
        return
    empty = batches.delete().where(
        batches.c.id.in_(batch_ids), ~sa.exists().where(tasks.c.batch_id == batches.c.id)
    )
    gone = list(conn.scalars(empty.returning(batches.c.id)))
    out.batches = len(gone)
    if gone:
        out.webhook_deliveries += _delete(
            conn, webhook_deliveries, webhook_deliveries.c.batch_id.in_(gone)
        )


def purge_files_in(conn: Conn, scope: Scope, limit: int) -> tuple[list[str], Purged, bool]:
    loose = loose_in(scope)
    picked = _pick(
        conn, sa.select(files.c.id).where(loose).order_by(files.c.created_at).limit(limit)
    )
    if not picked:
        return [], Purged(), False
    # A statement of its own: on PostgreSQL it sees a reference committed since the pick
    gone_q = files.delete().where(files.c.id.in_(picked), loose)
    gone = conn.execute(gone_q.returning(files.c.id, files.c.size)).all()
    ids = [r.id for r in gone]
    return ids, Purged(files=len(ids), bytes=sum(r.size for r in gone)), len(picked) == limit


# --- a dry run ---------------------------------------------------------------------------


def due(conn: Conn, scopes: Sequence[Scope]) -> Purged:
    """What :func:`purge_tasks_in` then :func:`purge_files_in`, run over every scope until
    nothing is left, would remove now: the same conditions, in one read."""
    if not scopes:
        return Purged()

    def doomed(t: sa.FromClause) -> Cond:
        return sa.or_(*(ended_in(s, t) for s in scopes))

    doomed_ids = sa.select(tasks.c.id).where(doomed(tasks))
    out = Purged(tasks=_count(conn, tasks, doomed(tasks)))
    out.attempts = _count(conn, attempts, attempts.c.task_id.in_(doomed_ids))
    out.logs = _count(conn, task_logs, task_logs.c.task_id.in_(doomed_ids))
    kept = tasks.alias("kept")
    emptied = sa.select(batches.c.id).where(
        sa.exists().where(tasks.c.batch_id == batches.c.id, doomed(tasks)),
        ~sa.exists().where(kept.c.batch_id == batches.c.id, ~doomed(kept)),
    )
    out.batches = _count(conn, batches, batches.c.id.in_(emptied))
    out.webhook_deliveries = _count(
        conn,
        webhook_deliveries,
        sa.or_(
            webhook_deliveries.c.task_id.in_(doomed_ids),
            webhook_deliveries.c.batch_id.in_(emptied),
        ),
    )
    out.files, out.bytes = _files_due(conn, scopes, doomed)
    return out


def _files_due(conn: Conn, scopes: Sequence[Scope], doomed: Any) -> tuple[int, int]:
    """Loose files, and those of doomed tasks outside kept conversations, made before their
    tenant's cutoff, that nothing kept will name."""

    def kept_by_conversation(t: sa.FromClause) -> Cond:
        return sa.exists().where(conversations.c.id == t.c.conversation_id)

    owner, namer = tasks.alias("owner"), tasks.alias("namer")
    loosened = sa.exists().where(
        owner.c.id == files.c.task_id, doomed(owner), ~kept_by_conversation(owner)
    )
    old = sa.or_(
        *(sa.and_(in_scope(s, files.c.tenant), files.c.created_at < s.cutoff) for s in scopes)
    )
    released = sa.and_(namer.c.id.is_not(None), doomed(namer), ~kept_by_conversation(namer))
    named = sa.exists(
        sa.select(1)
        .select_from(file_refs.outerjoin(namer, namer.c.id == file_refs.c.task_id))
        .where(file_refs.c.file_id == files.c.id, ~released)
    )
    where = sa.and_(sa.or_(files.c.task_id.is_(None), loosened), old, ~named)
    q = sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(files.c.size), 0)).where(where)
    n, size = conn.execute(q).one()
    return int(n), int(size)


def _count(conn: Conn, table: sa.Table, where: Cond) -> int:
    return int(conn.scalar(sa.select(sa.func.count()).select_from(table).where(where)) or 0)
