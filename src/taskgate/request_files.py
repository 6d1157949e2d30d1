"""The files one request stores before it is accepted: its large inline ``data:`` URIs,
moved to file storage, and any upload a dialect stores for it; all removed again if the
request is then refused, so a refused request leaves no file."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from taskgate.errors import BadRequest, ProviderError
from taskgate.files import Files
from taskgate.models import ApiKey
from taskgate.providers.media import from_data_uri, is_data_uri

log = logging.getLogger("taskgate.gateway")  # the name it has always logged under

# Inline data: URIs longer than this go to file storage at submit; shorter ones stay inline.
INLINE_FILE_MIN = 4096


class RequestFiles:
    def __init__(self, files: Files | None) -> None:
        self.files = files  # where inline data: URIs of inputs go (None: they stay inline)

    @contextlib.asynccontextmanager
    async def extracted(self, key: ApiKey, value: Any) -> AsyncIterator[tuple[Any, list[str]]]:
        """``value`` with its inline ``data:`` URIs over ``INLINE_FILE_MIN`` bytes stored as
        files of the tenant (``{"file_id": ...}`` in their place), and the ids of the files
        stored. Run it last, once the request is known good: if the block fails (or a URI
        is not valid), the files are removed again."""
        async with self.discarded_if_refused() as saved:
            if self.files is not None and has_data_uri(value):
                value = await self._extract(key, value, saved)
            yield value, saved

    async def _extract(self, key: ApiKey, value: Any, saved: list[str]) -> Any:
        if is_data_uri(value) and len(value) > INLINE_FILE_MIN:
            assert self.files is not None
            try:
                f = from_data_uri(value, "input")
            except ProviderError as exc:
                raise BadRequest(f"an input data: URI is not valid: {exc.message}") from None
            stored = await self.files.save(key.tenant, f.data, f.content_type, f.name)
            saved.append(stored.id)
            return {"file_id": stored.id}
        if isinstance(value, dict):
            return {k: await self._extract(key, v, saved) for k, v in value.items()}
        if isinstance(value, list):
            return [await self._extract(key, v, saved) for v in value]
        return value

    @contextlib.asynccontextmanager
    async def discarded_if_refused(self) -> AsyncIterator[list[str]]:
        """A list for the ids of the files stored for one request: if the block fails (the
        request is refused, or the client is gone), those files are removed again."""
        saved: list[str] = []
        try:
            yield saved
        except BaseException:
            await self.discard(saved)
            raise

    async def discard(self, file_ids: Sequence[str]) -> None:
        """Remove the files stored for a request that was then refused (best effort: the
        refusal stands even if this fails)."""
        if file_ids and self.files is not None:
            try:
                await self.files.discard(file_ids)
            except Exception:  # the refusal still stands; the files are only orphans
                log.exception("could not remove the files %s of a refused request", file_ids)


def has_data_uri(value: Any) -> bool:
    if isinstance(value, str):
        return is_data_uri(value)
    if isinstance(value, dict):
        return any(has_data_uri(v) for v in value.values())
    if isinstance(value, list):
        return any(has_data_uri(v) for v in value)
    return False
