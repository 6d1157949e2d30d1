"""File storage: the bytes of uploaded inputs and of provider outputs (images, audio, video).

The bytes live in a blob backend (a local folder here; object storage in the distributed
mode); who owns a file, its name and type live in the store's ``files`` table, so every
download is checked against the caller's tenant there.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence


class Blobs(abc.ABC):
    """Bytes by key. Keys are taskgate's file ids: no user input reaches a path."""

    @abc.abstractmethod
    async def put(self, key: str, data: bytes) -> None: ...

    @abc.abstractmethod
    async def get(self, key: str) -> bytes:
        """The bytes, or FileNotFoundError."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the bytes; a key that is not there is no error."""

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove the bytes of several keys (a purge); backends may do it in fewer calls."""
        for key in keys:
            await self.delete(key)

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass
