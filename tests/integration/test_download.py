"""Output downloads read the whole body, however the backend sends it, within a limit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from taskgate import errors
from taskgate.providers.web import download
from tests.fakes import LoopbackServer
from tests.integration.provider_harness import ProviderHarness

BIG = bytes(range(256)) * (5 * 4096)  # 5 MiB


class Chunked(LoopbackServer):
    def routes(self, app: web.Application) -> None:
        app.router.add_get("/video.mp4", self.video)

    async def video(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(BIG), 100_000):
            await resp.write(BIG[i : i + 100_000])
        await resp.write_eof()
        return resp


@pytest.fixture
async def server() -> AsyncIterator[Chunked]:
    async with Chunked() as s:
        yield s


async def test_a_chunked_body_is_read_in_full(server: Chunked) -> None:
    async with ProviderHarness("openai", server.base_url, watch="-", secret=None, model="m") as h:
        f = await download(h.provider, h.call(), f"{server.base_url}/video.mp4?sig=s3cr3t", "v")
    assert f.data == BIG and f.content_type == "video/mp4"


async def test_a_body_over_the_limit_is_refused(server: Chunked) -> None:
    async with ProviderHarness(
        "openai",
        server.base_url,
        watch="s3cr3t",
        secret=None,
        model="m",
        instance_options={"max_output_bytes": 1 << 20},
    ) as h:
        with pytest.raises(errors.BadResponse, match="over 1048576 bytes"):
            await download(h.provider, h.call(), f"{server.base_url}/video.mp4?sig=s3cr3t", "v")
