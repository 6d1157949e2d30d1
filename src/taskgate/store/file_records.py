"""The records of stored files (who owns each, its name and type); the bytes themselves are
kept by ``taskgate.files``."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from taskgate.models import StoredFile
from taskgate.store import ops
from taskgate.store.database import Database
from taskgate.store.schema import files


class FileRecords:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, f: StoredFile) -> None:
        await self._db.write(ops.execute, files.insert(), [f.as_dict()])

    async def get(self, file_id: str, tenant: str | None) -> StoredFile | None:
        q = sa.select(files).where(files.c.id == file_id)
        if tenant is not None:
            q = q.where(files.c.tenant == tenant)
        rows = await self._db.read(ops.rows, q)
        return StoredFile(**rows[0]) if rows else None

    async def some(self, file_ids: Sequence[str], tenant: str | None) -> dict[str, StoredFile]:
        """The files of the tenant (None: any) among ``file_ids``, by id."""
        if not file_ids:
            return {}
        q = sa.select(files).where(files.c.id.in_(sorted(set(file_ids))))
        if tenant is not None:
            q = q.where(files.c.tenant == tenant)
        return {r["id"]: StoredFile(**r) for r in await self._db.read(ops.rows, q)}

    async def delete(self, file_ids: Sequence[str]) -> None:
        if file_ids:
            await self._db.write(ops.execute, files.delete().where(files.c.id.in_(file_ids)))
