"""What every provider that calls a backend over HTTP shares: one aiohttp session per
provider, connect and read timeouts, transport errors converted into taskgate's error tree at
the boundary, and the instance's secret blanked out of whatever text comes back."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp

from taskgate import errors
from taskgate.config import Instance
from taskgate.providers.base import Call, OutputFile, Provider

CONNECT_TIMEOUT = 10.0
SNIPPET = 300  # characters of an unexpected body quoted in an error


class WebProvider(Provider):
    """A provider over aiohttp. Subclasses call :meth:`_request` and say in
    :meth:`http_error` what an error reply of their backend means."""

    read_bufsize = 1 << 16  # aiohttp's default; a streaming backend may want more

    _session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),  # the scheduler bounds concurrency
                read_bufsize=self.read_bufsize,
            )
        return self._session

    @contextlib.asynccontextmanager
    async def _request(
        self,
        call: Call,
        method: str,
        url: str,
        body: bytes | aiohttp.FormData | None,
        headers: dict[str, str],
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send one request (a form is sent as multipart); yield a 2xx response; turn
        everything else into our errors."""
        timeout = request_timeout(call)
        try:
            async with self._client().request(
                method, url, data=body, headers=headers, timeout=timeout
            ) as resp:
                if resp.status >= 400:
                    raise await self.http_error(resp, call)
                yield resp
        except TimeoutError as exc:  # aiohttp's own timeouts; the run timeout cancels instead
            limits = f"connect {timeout.sock_connect:g}s, read {timeout.sock_read:g}s"
            raise errors.ProviderTimeout(
                scrub(f"{method} {url}: timed out ({limits})", call)
            ) from exc
        except aiohttp.ClientError as exc:
            text = f"connection to {url} failed: {type(exc).__name__}: {exc}"
            raise errors.ConnectionFailed(scrub(text, call)) from exc

    async def http_error(self, resp: aiohttp.ClientResponse, call: Call) -> errors.ProviderError:
        """The error an HTTP error reply stands for; by default its text as the message."""
        text = await resp.text(errors="replace")
        return errors.from_http_status(
            resp.status,
            scrub(text.strip()[:SNIPPET] or "(empty reply)", call),
            retry_after=retry_after(resp.headers.get("Retry-After")),
        )


def request_timeout(call: Call) -> aiohttp.ClientTimeout:
    read = float(call.option("read_timeout", call.route.timeout))
    return aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT, sock_read=read)


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds; an HTTP date is ignored (the backoff decides)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def bad_response(what: str, raw: bytes, call: Call) -> errors.BadResponse:
    snippet = raw[:SNIPPET].decode(errors="replace")
    return errors.BadResponse(scrub(f"{what}: {snippet}" if snippet else what, call))


def scrub(text: str, of: Call | Instance) -> str:
    """Blank the instance's secret (of a call, or of an instance) out of text that came
    from outside."""
    instance = of.instance if isinstance(of, Call) else of
    secret = instance.secret.get_secret_value() if instance.secret else ""
    return text.replace(secret, "***") if secret else text


GONE = frozenset({401, 403, 404, 410})  # how an expired or revoked signed URL answers


async def download(
    provider: WebProvider, call: Call, url: str, name: str, content_type: str | None = None
) -> OutputFile:
    """Fetch an output file the backend left at ``url`` (before it expires).

    A URL that is already gone, or that cannot be read in full, fails the attempt as a bad
    response, which is retried: the next attempt gets a fresh output.
    """
    limit = int(call.option("max_output_bytes", MAX_OUTPUT_BYTES))
    try:
        async with provider._client().get(url, timeout=request_timeout(call)) as resp:
            if resp.status >= 300:
                why = "expired or gone" if resp.status in GONE else "not readable"
                raise errors.BadResponse(
                    scrub(f"output URL {without_query(url)} {why} (HTTP {resp.status})", call)
                )
            if (resp.content_length or 0) > limit:
                raise errors.BadResponse(f"output file over {limit} bytes")
            data = await _read_all(resp, limit)
            kind = content_type or resp.content_type or "application/octet-stream"
    except TimeoutError as exc:
        raise errors.ProviderTimeout(f"download of {without_query(url)} timed out") from exc
    except aiohttp.ClientError as exc:  # its text may quote the signed URL: name it only
        what = f"download of {without_query(url)} failed: {type(exc).__name__}"
        raise errors.BadResponse(scrub(what, call)) from exc
    return OutputFile(data, kind, name)


MAX_OUTPUT_BYTES = 256 << 20


async def _read_all(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, refused once it passes ``limit`` (a chunked reply has no length)."""
    body = bytearray()
    async for chunk in resp.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > limit:
            raise errors.BadResponse(f"output file over {limit} bytes")
    return bytes(body)


def without_query(url: str) -> str:
    """A URL without its query (signed URLs carry their credentials there)."""
    return url.split("?", 1)[0]
