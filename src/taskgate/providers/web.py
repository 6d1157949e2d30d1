"""What every provider that calls a backend over HTTP shares: one aiohttp session per
provider, connect and read timeouts, transport errors converted into taskgate's error tree at
the boundary, the instance's secret blanked out of whatever text comes back, and downloads of
the output files a backend leaves at URLs, through the address guard.

Route or instance option ``output_urls_private``: where a backend's output URLs may point.
Unset or ``false`` (the default): only globally routable addresses, as for webhooks, so a
backend cannot make taskgate fetch (and hand a tenant) what only taskgate can reach: its
loopback services, the private network, a cloud metadata endpoint. ``true``: any address, for
a self-hosted backend that serves its files from a private one. A list of hosts and networks
(``["files.internal", "*.corp.example", "10.1.0.0/16"]``): those may be private, nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from taskgate import errors, netguard
from taskgate.config import Route
from taskgate.providers.base import Call, OutputFile, Provider
from taskgate.providers.redact import Of, scrub, scrub_cut

CONNECT_TIMEOUT = 10.0
SNIPPET = 300  # characters of an unexpected body quoted in an error
OUTPUT_URLS_PRIVATE = "output_urls_private"


class WebProvider(Provider):
    """A provider over aiohttp. Subclasses call :meth:`_request` and say in
    :meth:`http_error` what an error reply of their backend means."""

    read_bufsize = 1 << 16  # aiohttp's default; a streaming backend may want more

    _session: aiohttp.ClientSession | None = None

    def __init__(self, route: Route) -> None:
        super().__init__(route)
        self._downloads: dict[netguard.Guard, aiohttp.ClientSession] = {}
        for instance in route.instances:  # a bad option fails now, not on the first download
            try:
                output_guard({**route.options, **instance.options}.get(OUTPUT_URLS_PRIVATE))
            except ValueError as exc:
                raise ValueError(
                    f"route {route.name!r}, instance {instance.name!r}: {exc}"
                ) from None

    async def aclose(self) -> None:
        sessions = [self._session, *self._downloads.values()]
        self._session, self._downloads = None, {}
        for session in sessions:
            if session is not None:
                await session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),  # the scheduler bounds concurrency
                read_bufsize=self.read_bufsize,
            )
        return self._session

    def _fetcher(self, guard: netguard.Guard) -> aiohttp.ClientSession:
        """The session that downloads output files where ``guard`` allows (one per guard)."""
        if guard not in self._downloads:
            self._downloads[guard] = netguard.guarded_session(guard, read_bufsize=self.read_bufsize)
        return self._downloads[guard]

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
        return errors.from_http_status(
            resp.status,
            snippet(await resp.text(errors="replace"), call),
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


def snippet(text: str, of: Of) -> str:
    """A backend's text quoted in an error: without the secret, at most SNIPPET characters."""
    return scrub_cut(text.strip(), SNIPPET, of) or "(empty reply)"


def bad_response(what: str, raw: bytes, of: Of) -> errors.BadResponse:
    quoted = scrub_cut(raw.decode(errors="replace"), SNIPPET, of)
    return errors.BadResponse(scrub(f"{what}: {quoted}" if quoted else what, of))


GONE = frozenset({401, 403, 404, 410})  # how an expired or revoked signed URL answers


async def download(
    provider: WebProvider, call: Call, url: str, name: str, content_type: str | None = None
) -> OutputFile:
    """Fetch an output file the backend left at ``url`` (before it expires).

    A URL that is already gone, or that cannot be read in full, fails the attempt as a bad
    response, which is retried: the next attempt gets a fresh output. The URL must be http(s),
    and it (and every redirect) may lead only where the option ``output_urls_private``
    allows; else the attempt fails at once, and nothing is fetched.
    """
    limit = int(call.option("max_output_bytes", MAX_OUTPUT_BYTES))
    guard = output_guard(call.option(OUTPUT_URLS_PRIVATE))
    try:
        guard.parse(url)
        async with provider._fetcher(guard).get(url, timeout=request_timeout(call)) as resp:
            if resp.status >= 300:
                why = "expired or gone" if resp.status in GONE else "not readable"
                raise errors.BadResponse(
                    scrub(f"output URL {without_query(url)} {why} (HTTP {resp.status})", call)
                )
            if (resp.content_length or 0) > limit:
                raise errors.BadResponse(f"output file over {limit} bytes")
            data = await _read_all(resp, limit)
            kind = content_type or resp.content_type or "application/octet-stream"
    except netguard.Refused as exc:
        raise errors.PermanentError(scrub(f"output URL {without_query(url)}: {exc}", call)) from exc
    except TimeoutError as exc:
        raise errors.ProviderTimeout(f"download of {without_query(url)} timed out") from exc
    except aiohttp.ClientError as exc:  # its text may quote the signed URL: name it only
        what = f"download of {without_query(url)} failed: {type(exc).__name__}"
        raise errors.BadResponse(scrub(what, call)) from exc
    return OutputFile(data, kind, name)


MAX_OUTPUT_BYTES = 256 << 20
GUARD_HINT = f"a route may allow it for a self-hosted backend: options.{OUTPUT_URLS_PRIVATE}"


def output_guard(value: Any) -> netguard.Guard:
    """The guard of output downloads for a value of the option ``output_urls_private``."""
    if value is None or isinstance(value, bool):
        return netguard.Guard(allow_private=bool(value), hint=GUARD_HINT)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return netguard.Guard(allowed_hosts=tuple(value), hint=GUARD_HINT)
    raise ValueError(
        f"option {OUTPUT_URLS_PRIVATE!r} must be true, false or a list of hosts and networks,"
        f" not {value!r}"
    )


async def _read_all(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, refused once it passes ``limit`` (a chunked reply has no length)."""
    body = bytearray()
    async for chunk in resp.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > limit:
            raise errors.BadResponse(f"output file over {limit} bytes")
    return bytes(body)


def without_query(url: str) -> str:
    """A URL without its query and fragment (signed URLs carry their credentials there) and
    without a ``user:password@`` part, fit to be shown in an error or a log line."""
    parts = urlsplit(url.split("#", 1)[0])
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
