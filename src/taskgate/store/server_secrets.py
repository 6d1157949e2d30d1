"""Secrets of the server itself, shared by all of its processes through the store: each is
made at random by the first process that needs it (two at once: one wins, both read the
winner's), so a distributed deployment agrees on them without any configuration. The
signing key of file links (taskgate.files.signing) is one. They are never shown."""

from __future__ import annotations

import secrets
import time

import sqlalchemy as sa

from taskgate.store.database import Database, dialect_insert, scalar
from taskgate.store.schema import server_secrets

Conn = sa.Connection


def _ensure(conn: Conn, name: str) -> str:
    row = {"name": name, "value": secrets.token_urlsafe(32), "created_at": time.time()}
    insert = dialect_insert(conn, server_secrets).on_conflict_do_nothing(index_elements=["name"])
    conn.execute(insert, [row])
    return str(conn.scalar(sa.select(server_secrets.c.value).where(server_secrets.c.name == name)))


class ServerSecrets:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, name: str) -> str:
        """The secret of this name, made on first need."""
        q = sa.select(server_secrets.c.value).where(server_secrets.c.name == name)
        found = await self._db.read(scalar, q)
        return str(found) if found else str(await self._db.write(_ensure, name))
