"""Downloads of the media URLs clients give, for backends that take the bytes (OpenAI's
multipart image edits, audio to transcribe, Ollama's base64 images): what
:func:`taskgate.providers.media.input_bytes` calls, as ``Call.fetch_url``, once the route
allowed the URL (option ``client_media_urls``; else it is refused at submit).

A client names the URL, so the download goes only where the address guard allows (config
``media.allow_private`` / ``media.allowed_hosts``; public addresses by default), on every
redirect too; it is read as a stream and stopped once past ``media.max_download_bytes``
(a ``Content-Length`` over it is refused before reading), and given ``media.download_timeout``
seconds in all (AIFlow's ``MEDIA_MAX_DOWNLOAD_SIZE`` and ``MEDIA_DOWNLOAD_TIMEOUT``).
Any failure is the client's input failing (InvalidInput: the task fails at once, with a
message that names the URL without its query, where signed URLs carry their credentials).
"""

from __future__ import annotations

import aiohttp

from taskgate import errors, netguard
from taskgate.config import MediaSettings
from taskgate.providers.base import OutputFile
from taskgate.providers.media import name_for
from taskgate.providers.web import without_query

HINT = "an admin may allow it (media.allow_private or media.allowed_hosts)"
CHUNK = 1 << 16


class MediaFetcher:
    """Downloads clients' media URLs, one guarded session for all (closed by ``aclose``)."""

    def __init__(self, conf: MediaSettings) -> None:
        self.conf = conf
        self.guard = netguard.Guard(conf.allow_private, tuple(conf.allowed_hosts), hint=HINT)
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, url: str, what: str = "file") -> OutputFile:
        """The bytes at ``url``, or InvalidInput saying why they cannot be had."""
        shown = without_query(url)
        try:
            self.guard.parse(url)
            async with self._client().get(url) as resp:
                if resp.status >= 300:
                    raise errors.InvalidInput(f"{what}: {shown} answered HTTP {resp.status}")
                data = await self._read(resp, what, shown)
                kind = resp.content_type or "application/octet-stream"
        except netguard.Refused as exc:
            raise errors.InvalidInput(f"{what}: {shown}: {exc}") from None
        except TimeoutError:
            raise errors.InvalidInput(
                f"{what}: {shown} was not downloaded within {self.conf.download_timeout:g}s"
                " (media.download_timeout)"
            ) from None
        except aiohttp.ClientError as exc:  # its text may quote the whole URL: name it only
            raise errors.InvalidInput(
                f"{what}: downloading {shown} failed ({type(exc).__name__})"
            ) from None
        return OutputFile(data, kind, name_for(what, kind))

    async def _read(self, resp: aiohttp.ClientResponse, what: str, shown: str) -> bytes:
        """The body, stopped as soon as it passes the limit (a chunked reply has no length,
        and a length may lie)."""
        limit = self.conf.max_download_bytes
        if (resp.content_length or 0) > limit:
            raise self._too_big(what, shown)
        body = bytearray()
        async for chunk in resp.content.iter_chunked(CHUNK):
            body += chunk
            if len(body) > limit:
                raise self._too_big(what, shown)
        return bytes(body)

    def _too_big(self, what: str, shown: str) -> errors.InvalidInput:
        limit = self.conf.max_download_bytes
        return errors.InvalidInput(
            f"{what}: {shown} is over {limit} bytes (media.max_download_bytes); upload a"
            " smaller file"
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.conf.download_timeout)
            self._session = netguard.guarded_session(self.guard, timeout=timeout)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
