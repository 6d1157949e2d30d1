"""API keys: made with a secret shown once (only its hash is stored), found by that secret,
listed and revoked."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from taskgate.config import Limits
from taskgate.models import ApiKey, new_id
from taskgate.store import ops
from taskgate.store.database import Database, scalar
from taskgate.store.schema import api_keys


class Keys:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self, tenant: str, name: str, admin: bool = False, limits: Limits | None = None
    ) -> tuple[ApiKey, str]:
        """Create a key (held to ``limits``); the secret is returned once and only its hash
        is stored."""
        secret = "tg_" + secrets.token_urlsafe(30)
        key = ApiKey(
            id=new_id("key_"),
            tenant=tenant,
            name=name,
            admin=admin,
            created_at=time.time(),
            prefix=secret[:10],
            **(limits or Limits()).model_dump(),
        )
        row = {**key.as_dict(), "hash": _hash_key(secret)}
        await self._db.write(ops.execute, api_keys.insert(), [row])
        return key, secret

    async def for_secret(self, secret: str) -> ApiKey | None:
        q = sa.select(api_keys).where(api_keys.c.hash == _hash_key(secret))
        rows = await self._db.read(ops.rows, q)
        return key_from_row(rows[0]) if rows else None

    async def find(self, tenant: str | None = None) -> list[ApiKey]:
        """Every key, oldest first (of one tenant, if given); revoked ones too."""
        q = sa.select(api_keys).order_by(api_keys.c.created_at)
        if tenant is not None:
            q = q.where(api_keys.c.tenant == tenant)
        return [key_from_row(r) for r in await self._db.read(ops.rows, q)]

    async def revoke(self, key_id: str) -> bool:
        stmt = (
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
            .returning(api_keys.c.id)
        )
        return bool(await self._db.write(ops.rows, stmt))

    async def set_limits(self, key_id: str, changes: Mapping[str, Any]) -> ApiKey | None:
        """Change some of an active key's limits (a None lifts one); the key as it now is,
        or None if there is no such active key."""
        values = {name: changes[name] for name in Limits.model_fields if name in changes}
        active = (api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        if values:
            stmt = api_keys.update().where(*active).values(**values).returning(*api_keys.c)
            found = await self._db.write(ops.rows, stmt)
        else:
            found = await self._db.read(ops.rows, sa.select(api_keys).where(*active))
        return key_from_row(found[0]) if found else None

    async def has_admin(self) -> bool:
        """Whether an admin key that is not revoked exists."""
        q = (
            sa.select(api_keys.c.id)
            .where(api_keys.c.admin.is_(True), api_keys.c.revoked_at.is_(None))
            .limit(1)
        )
        return await self._db.read(scalar, q) is not None


def _hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_from_row(row: Any) -> ApiKey:
    """The key of a row that holds (at least) the ``api_keys`` columns."""
    return ApiKey(**{f.name: row[f.name] for f in dataclasses.fields(ApiKey)})
