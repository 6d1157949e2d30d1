"""Blobs in a local folder, the embedded default: ``ROOT/ab/abcdef...``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

from taskgate.files.base import Blobs


class LocalBlobs(Blobs):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if not key.isalnum():
            raise ValueError(f"bad file key {key!r}")
        return self.root / key[:2] / key

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, self._path(key), data)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # readers never see half a file

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._path(key).read_bytes)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def delete_many(self, keys: Sequence[str]) -> None:
        await asyncio.to_thread(self._unlink_all, [self._path(key) for key in keys])

    @staticmethod
    def _unlink_all(paths: Sequence[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)
