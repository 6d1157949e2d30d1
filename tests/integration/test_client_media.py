"""Clients' media URLs downloaded for a backend that takes bytes (providers/fetch.py): through
the address guard (config ``media``), read as a stream within ``max_download_bytes``, given
``download_timeout`` seconds; each failure is the client's input failing, said clearly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from taskgate import errors
from taskgate.config import MediaSettings
from taskgate.providers.fetch import MediaFetcher
from tests.fakes.media_host import LIMIT, PNG, MediaHost


@pytest.fixture
async def host() -> AsyncIterator[MediaHost]:
    async with MediaHost() as h:
        yield h


@pytest.fixture
async def fetcher() -> AsyncIterator[MediaFetcher]:
    f = MediaFetcher(
        MediaSettings(max_download_bytes=LIMIT, download_timeout=1, allow_private=True)
    )
    yield f
    await f.aclose()


async def test_an_image_is_downloaded_with_its_type(host: MediaHost, fetcher: MediaFetcher) -> None:
    got = await fetcher.fetch(f"{host.base_url}/cat.png?sig=s3cr3t", "image")
    assert (got.data, got.content_type, got.name) == (PNG, "image/png", "image.png")


async def test_a_body_over_the_limit_fails_at_once_however_it_is_sent(
    host: MediaHost, fetcher: MediaFetcher
) -> None:
    for path in ("/sized", "/chunked"):
        with pytest.raises(errors.InvalidInput) as err:
            await fetcher.fetch(f"{host.base_url}{path}?sig=s3cr3t", "image")
        message = err.value.message
        assert f"is over {LIMIT} bytes (media.max_download_bytes)" in message
        assert message.startswith(f"image: {host.base_url}{path} ") and "s3cr3t" not in message
    # the reader hung up early: the sender stopped far short of the whole 160 MiB (what it
    # wrote past the limit sat in the sockets' buffers)
    for _ in range(500):
        if "/chunked" in host.cut:
            break
        await asyncio.sleep(0.01)
    assert "/chunked" in host.cut and host.sent["/chunked"] < 32 << 20


async def test_a_download_that_takes_too_long_fails_clearly(
    host: MediaHost, fetcher: MediaFetcher
) -> None:
    started = asyncio.get_running_loop().time()
    with pytest.raises(errors.InvalidInput, match=r"not downloaded within 1s .media.download_t"):
        await fetcher.fetch(f"{host.base_url}/slow", "image")
    assert asyncio.get_running_loop().time() - started < 10


async def test_an_error_answer_and_an_unreachable_host_fail_as_the_clients_input(
    host: MediaHost, fetcher: MediaFetcher
) -> None:
    with pytest.raises(errors.InvalidInput, match=r"/missing.png answered HTTP 404"):
        await fetcher.fetch(f"{host.base_url}/missing.png", "image")
    with pytest.raises(errors.InvalidInput, match=r"failed \(ClientConnectorError\)"):
        await fetcher.fetch("http://127.0.0.1:9/x.png", "mask")


async def test_the_guard_keeps_downloads_off_private_addresses_unless_allowed(
    host: MediaHost,
) -> None:
    by_default = MediaFetcher(MediaSettings())
    named = MediaFetcher(MediaSettings(allowed_hosts=["localhost"]))
    try:
        for url in (f"{host.base_url}/cat.png", f"http://localhost:{host.port}/cat.png"):
            with pytest.raises(errors.InvalidInput, match="loopback address; refused") as err:
                await by_default.fetch(url, "image")
            assert "media.allow_private or media.allowed_hosts" in err.value.message
        assert (await named.fetch(f"http://localhost:{host.port}/cat.png")).data == PNG
        # a redirect is checked too: from the allowed name to a loopback address it is not
        with pytest.raises(errors.InvalidInput, match=r"127\.0\.0\.1, a loopback address"):
            await named.fetch(f"http://localhost:{host.port}/hop", "image")
        with pytest.raises(errors.InvalidInput, match="must be http or https"):
            await named.fetch("ftp://localhost/x.png", "image")
    finally:
        await by_default.aclose()
        await named.aclose()
