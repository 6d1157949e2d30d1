"""The dashboard's sessions: logging in with an API key makes a random token, kept in an
HttpOnly cookie; the store keeps only its hash, the key it stands for, a CSRF token and
when it ends. A session is as good as its key: a revoked key ends every session of it."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from taskgate.models import ApiKey
from taskgate.store import ops
from taskgate.store.database import Database
from taskgate.store.keys import key_from_row
from taskgate.store.schema import api_keys, ui_sessions


@dataclass(frozen=True, slots=True)
class Session:
    key: ApiKey
    csrf: str  # sent back with every form and htmx request that changes something
    expires_at: float


class Sessions:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def open(self, key: ApiKey, lifetime: float) -> tuple[str, Session]:
        """A new session of ``key``: its token (for the cookie, shown once) and itself."""
        token, now = secrets.token_urlsafe(32), time.time()
        session = Session(key, secrets.token_urlsafe(24), now + lifetime)
        row = {
            "token_hash": _hash(token),
            "key_id": key.id,
            "csrf": session.csrf,
            "created_at": now,
            "expires_at": session.expires_at,
        }
        await self._db.write(ops.execute, ui_sessions.insert(), [row])
        return token, session

    async def get(self, token: str) -> Session | None:
        """The live session of a cookie's token, with its key (None: unknown, ended, or its
        key revoked)."""
        q = (
            sa.select(api_keys, ui_sessions.c.csrf, ui_sessions.c.expires_at)
            .join(api_keys, api_keys.c.id == ui_sessions.c.key_id)
            .where(
                ui_sessions.c.token_hash == _hash(token),
                ui_sessions.c.expires_at > time.time(),
                api_keys.c.revoked_at.is_(None),
            )
        )
        found = await self._db.read(ops.rows, q)
        if not found:
            return None
        row = found[0]
        return Session(key_from_row(row), row["csrf"], row["expires_at"])

    async def close(self, token: str) -> None:
        stmt = ui_sessions.delete().where(ui_sessions.c.token_hash == _hash(token))
        await self._db.write(ops.execute, stmt)

    async def forget_ended(self) -> None:
        stmt = ui_sessions.delete().where(ui_sessions.c.expires_at <= time.time())
        await self._db.write(ops.execute, stmt)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
