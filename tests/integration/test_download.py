"""Output downloads read the whole body, however the backend sends it, within a limit; and
they go only where the address guard allows (option ``output_urls_private``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from taskgate import errors
from taskgate.config import Instance, Route
from taskgate.providers import build
from taskgate.providers.web import download
from tests.fakes import LoopbackServer
from tests.integration.provider_harness import ProviderHarness

BIG = bytes(range(256)) * (5 * 4096)  # 5 MiB
PRIVATE = {"output_urls_private": True}  # the fake serves its files on loopback


class Chunked(LoopbackServer):
    def __init__(self) -> None:
        self.paths: list[str] = []  # every request it got

    def routes(self, app: web.Application) -> None:
        app.middlewares.append(self.record)
        app.router.add_get("/video.mp4", self.video)
        app.router.add_get("/internal", self.internal)
        app.router.add_get("/redirect", self.redirect)

    @web.middleware
    async def record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.paths.append(request.path)
        return await handler(request)

    async def video(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(BIG), 100_000):
            await resp.write(BIG[i : i + 100_000])
        await resp.write_eof()
        return resp

    async def internal(self, request: web.Request) -> web.Response:
        return web.Response(body=b"internal data", content_type="image/png")

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{self.port}/internal")


@pytest.fixture
async def server() -> AsyncIterator[Chunked]:
    async with Chunked() as s:
        yield s


def harness(server: Chunked, route_options: dict[str, Any] | None = None, **kw: Any) -> Any:
    return ProviderHarness(
        "openai",
        server.base_url,
        watch="s3cr3t",
        secret=None,
        model="m",
        **kw,
        route_options=route_options,
    )


async def test_a_chunked_body_is_read_in_full(server: Chunked) -> None:
    async with harness(server, PRIVATE) as h:
        f = await download(h.provider, h.call(), f"{server.base_url}/video.mp4?sig=s3cr3t", "v")
    assert f.data == BIG and f.content_type == "video/mp4"


async def test_a_body_over_the_limit_is_refused(server: Chunked) -> None:
    async with harness(server, PRIVATE, instance_options={"max_output_bytes": 1 << 20}) as h:
        with pytest.raises(errors.BadResponse, match="over 1048576 bytes"):
            await download(h.provider, h.call(), f"{server.base_url}/video.mp4?sig=s3cr3t", "v")


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("/internal?sig=s3cr3t", "127.0.0.1, a loopback address; refused"),
        ("/internal", "options.output_urls_private"),
    ],
)
async def test_a_loopback_output_url_is_refused_and_never_fetched(
    server: Chunked, path: str, needle: str
) -> None:
    async with harness(server) as h:
        with pytest.raises(errors.PermanentError, match=needle) as caught:
            await download(h.provider, h.call(), server.base_url + path, "image")
    assert "s3cr3t" not in caught.value.message  # the signed query is not quoted
    assert server.paths == []


async def test_a_name_that_resolves_to_loopback_is_refused(server: Chunked) -> None:
    async with harness(server) as h:
        url = f"http://localhost:{server.port}/internal"
        with pytest.raises(errors.PermanentError, match="'localhost' resolves to"):
            await download(h.provider, h.call(), url, "image")
    assert server.paths == []


async def test_a_redirect_to_a_refused_address_is_not_followed(server: Chunked) -> None:
    async with harness(server, {"output_urls_private": ["localhost"]}) as h:
        url = f"http://localhost:{server.port}/redirect"
        with pytest.raises(errors.PermanentError, match=r"127\.0\.0\.1, a loopback address"):
            await download(h.provider, h.call(), url, "image")
    assert server.paths == ["/redirect"]


async def test_listed_hosts_and_networks_may_be_private(server: Chunked) -> None:
    async with harness(server, {"output_urls_private": ["10.0.0.0/8", "127.0.0.0/8"]}) as h:
        f = await download(h.provider, h.call(), f"{server.base_url}/internal", "image")
    assert f.data == b"internal data"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "/relative.png"])
async def test_only_http_urls_are_downloaded(server: Chunked, url: str) -> None:
    async with harness(server, PRIVATE) as h:
        with pytest.raises(errors.PermanentError, match="must be http or https"):
            await download(h.provider, h.call(), url, "image")


@pytest.mark.parametrize("value", ["yes", 1, [1]])
def test_a_bad_option_is_refused_when_the_route_is_built(value: Any) -> None:
    instance = Instance(name="i", endpoint="http://backend.example/v1")
    route = Route(
        name="r",
        models=["*"],
        provider="openai",
        instances=[instance],
        options={"output_urls_private": value},
    )
    with pytest.raises(ValueError, match="output_urls_private"):
        build(route)
