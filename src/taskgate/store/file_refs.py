"""Which stored files a task names: every ``{"file_id": ...}`` in its input or params (an
upload, another task's output, or an inline ``data:`` URI that ``request_files.py`` stored),
recorded in ``file_refs`` in the transaction that accepts the task, so that retention never
purges a file a kept task will read (``taskgate.store.retention``).

Accepting a task is the hot path: a task that names no file (almost all of them) costs one
walk of its input here and no statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from taskgate.store.database import Conn
from taskgate.store.schema import file_refs, files

_ADD = file_refs.insert()


def file_ids(value: Any, found: set[str] | None = None) -> set[str]:
    """The ids of every object member named ``file_id`` with a string value, at any depth
    (a superset of what providers read: ``taskgate.providers.media.is_file_ref``)."""
    found = set() if found is None else found
    if isinstance(value, dict):
        ref = value.get("file_id")
        if isinstance(ref, str):
            found.add(ref)
        for v in value.values():
            if isinstance(v, dict | list):
                file_ids(v, found)
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, dict | list):
                file_ids(v, found)
    return found


def record_in(conn: Conn, new_rows: Iterable[Mapping[str, Any]]) -> None:
    """Record the files the new task rows name, in the caller's transaction. On PostgreSQL
    the files' rows are share-locked first (in id order), so a purge deleting one of them
    either finishes before (and the task then names a file that is gone: its attempt fails
    with "input file not found") or skips it and sees the reference when it looks again."""
    refs = [
        {"file_id": file_id, "task_id": row["id"], "conversation_id": None}
        for row in new_rows
        for file_id in sorted(file_ids(row["params"], file_ids(row["input"])))
    ]
    if not refs:
        return
    if conn.dialect.name == "postgresql":
        named = sorted({r["file_id"] for r in refs})
        lock = sa.select(files.c.id).where(files.c.id.in_(named)).order_by(files.c.id)
        conn.execute(lock.with_for_update(read=True, key_share=True))
    conn.execute(_ADD, refs)
