"""Signed, expiring links to stored files: ``/v1/files/{id}?expires=T&signature=S``, where
``S`` is the unpadded base64url HMAC-SHA256, under a server secret, of the file id and ``T``
(Unix seconds). Such a link downloads without an API key (an ``<img>`` tag, a browser tab,
a plain ``curl``) until ``T``; a link without ``expires`` and ``signature`` still needs a
key of the file's tenant. Every API's answers build their file links here.

The secret is made once, at random, and kept in the store (``server_secrets``), so every
``taskgate api`` process of a distributed deployment signs and checks with the same one
without any configuration, and the embedded default needs none either. It never leaves the
store and this object: no answer, log line or event carries it. Whoever can read the store
can make links, but can read the files' rows and keys' hashes anyway.

``expires`` is rounded up to a step (a tenth of the lifetime, at least a second and at most
a minute), so a link is good for ``lifetime`` to ``lifetime + step`` seconds and a page that
polls a task sees the same link within a step, which a browser's cache then serves.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from taskgate.errors import Forbidden

if TYPE_CHECKING:
    from taskgate.store import SqlStore

SECRET_NAME = "file_urls"  # its row in the store's server_secrets
MAX_EXPIRES_DIGITS = 12  # Unix seconds until the year 33658: longer is no time of ours


class FileLinks:
    """Signs and checks links to files; ``clock`` is injectable for tests."""

    def __init__(self, secret: str, lifetime: int, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("file links need a secret")
        self._key = secret.encode()
        self.lifetime = lifetime
        self.step = max(1, min(60, lifetime // 10))
        self._clock = clock

    @classmethod
    async def from_store(cls, store: SqlStore, lifetime: int) -> FileLinks:
        """Links signed with the server's secret, which every process reads from the store
        (the first one makes it)."""
        return cls(await store.server_secrets.get(SECRET_NAME), lifetime)

    @classmethod
    def ephemeral(cls, lifetime: int = 3600) -> FileLinks:
        """Links signed with a secret of this process alone (a gateway without a store's
        secret: tests, tools); another process refuses them."""
        return cls(secrets.token_urlsafe(32), lifetime)

    def _signature(self, file_id: str, expires: int) -> str:
        mac = hmac.new(self._key, f"{file_id}\n{expires}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()

    def path(self, file_id: str) -> str:
        """``/v1/files/{id}?expires=...&signature=...``: good for ``lifetime`` seconds."""
        expires = math.ceil((self._clock() + self.lifetime) / self.step) * self.step
        signature = self._signature(file_id, expires)
        return f"/v1/files/{quote(file_id, safe='')}?expires={expires}&signature={signature}"

    def check(self, file_id: str, expires: str | None, signature: str | None) -> None:
        """Pass a link signed for this file and not yet expired; else Forbidden (403). The
        signature is checked before the time, so "expired" is only said of a real link."""
        if not expires or not signature:
            raise Forbidden("a signed file link needs both expires and signature")
        if not (expires.isascii() and expires.isdigit() and len(expires) <= MAX_EXPIRES_DIGITS):
            raise Forbidden("invalid file link signature")
        expected = self._signature(file_id, int(expires))
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise Forbidden("invalid file link signature")
        if int(expires) < self._clock():
            raise Forbidden("this file link has expired: read the task again for a fresh one")

    def url(self, entry: Mapping[str, Any], base: str = "") -> str:
        """A stored file entry's (``{"id", "url", ...}``) signed link, after ``base`` (an
        origin, for an absolute URL); an entry without an id keeps its own ``url``."""
        file_id = entry.get("id")
        path = self.path(file_id) if isinstance(file_id, str) and file_id else entry.get("url")
        return base.rstrip("/") + str(path) if base else str(path)

    def files(self, entries: Any, base: str = "") -> Any:
        """A list of stored file entries with their links signed (anything else as it is)."""
        if not isinstance(entries, list):
            return entries
        return [
            {**f, "url": self.url(f, base)} if isinstance(f, dict) and "url" in f else f
            for f in entries
        ]

    def result(self, result: Any, base: str = "") -> Any:
        """A task's stored result (or a conversation turn's content) with the links of its
        ``files`` signed."""
        if not (isinstance(result, dict) and result.get("files")):
            return result
        return {**result, "files": self.files(result["files"], base)}
