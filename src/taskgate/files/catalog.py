"""Files as the rest of taskgate sees them: bytes in the blob backend, owner and type in the
store. Saving writes the bytes first, so a row never points at nothing."""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Sequence
from typing import Any

from taskgate.errors import NotFound
from taskgate.files.base import Blobs
from taskgate.models import StoredFile, new_id
from taskgate.store import Purged, Scope, SqlStore


class Files:
    def __init__(self, store: SqlStore, blobs: Blobs) -> None:
        self.store = store
        self.blobs = blobs

    async def save(
        self, tenant: str, data: bytes, content_type: str, name: str, task_id: str | None = None
    ) -> StoredFile:
        f = StoredFile(
            id=new_id(),
            tenant=tenant,
            task_id=task_id,
            name=name,
            content_type=clean_type(content_type),
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            created_at=time.time(),
        )
        await self.blobs.put(f.id, data)
        try:
            await self.store.file_records.add(f)
        except BaseException:
            with contextlib.suppress(Exception):  # the store's error is the one to report
                await self.blobs.delete(f.id)
            raise
        return f

    async def discard(self, file_ids: Sequence[str]) -> None:
        """Remove files that nothing refers to (saved for a request that was then refused):
        the row first, so no row ever points at missing bytes."""
        await self.store.file_records.delete(file_ids)
        for file_id in file_ids:
            await self.blobs.delete(file_id)

    async def purge(self, scope: Scope, limit: int) -> tuple[Purged, bool]:
        """Delete up to ``limit`` loose files of the scope that nothing names (retention,
        ``store/retention.py``): the rows first, so no row ever points at missing bytes, then
        the bytes. Says whether more may be due."""
        ids, purged, more = await self.store.retention.purge_files(scope, limit)
        if ids:
            await self.blobs.delete_many(ids)
        return purged, more

    async def open(self, file_id: str, tenant: str | None) -> tuple[StoredFile, bytes]:
        """A file of the tenant (None: any tenant) with its bytes, or NotFound."""
        f = await self.store.file_records.get(file_id, tenant)
        if f is None:
            raise NotFound(f"no file {file_id!r}")
        return f, await self.blobs.get(f.id)


# type "/" subtype, as RFC 9110 spells a token (lower case here)
MEDIA_TYPE = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+/[a-z0-9!#$%&'*+.^_`|~-]+")


def clean_type(content_type: str) -> str:
    """A content type that is safe to keep and to send back as a header: its type and
    subtype in lower case, without parameters; anything else (a client's or a backend's
    ``image/png\r\nX-Evil: 1``, or non-ASCII) is ``application/octet-stream``."""
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind if MEDIA_TYPE.fullmatch(kind) else "application/octet-stream"


def file_json(f: StoredFile) -> dict[str, Any]:
    return {
        "id": f.id,
        "url": f"/v1/files/{f.id}",
        "name": f.name,
        "content_type": f.content_type,
        "size": f.size,
        "sha256": f.sha256,
    }
