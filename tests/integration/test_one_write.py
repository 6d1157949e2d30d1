"""Each HTTP response in one write to its socket (``api/one_write.py``): uvicorn's head and
body writes held and sent together, in order, on a real uvicorn server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import uvicorn

from taskgate.api.one_write import HeldWrites, OneWritePerResponse
from tests.e2e.conftest import free_port


class Recorded:
    """A transport that records what is written to it, in calls."""

    def __init__(self, transport: Any = None) -> None:
        self.transport = transport
        self.calls: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.calls.append(bytes(data))
        if self.transport is not None:
            self.transport.write(data)

    def writelines(self, parts: list[bytes]) -> None:
        self.calls.append(b"".join(parts))
        if self.transport is not None:
            self.transport.writelines(parts)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def test_two_writes_go_out_as_one_and_a_lone_write_after_the_ready_callbacks() -> None:
    sent = Recorded()
    held = HeldWrites(sent)  # type: ignore[arg-type]
    held.write(b"head ")
    assert sent.calls == []
    held.write(b"body")
    assert sent.calls == [b"head body"]
    held.write(b"chunk")
    assert sent.calls == [b"head body"]
    await asyncio.sleep(0)  # the loop runs what was ready
    assert sent.calls == [b"head body", b"chunk"]


async def test_a_close_sends_what_is_held_first() -> None:
    sent = Recorded()
    held = HeldWrites(sent)  # type: ignore[arg-type]
    held.write(b"last words")
    held.close()
    assert (sent.calls, sent.closed) == ([b"last words"], True)
    await asyncio.sleep(0)
    assert sent.calls == [b"last words"]  # (the scheduled flush finds nothing)


WRITES: list[bytes] = []


class Counted(OneWritePerResponse):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        recorded = Recorded(transport)
        recorded.calls = WRITES
        super().connection_made(recorded)  # type: ignore[arg-type]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    body = b'{"ok": true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"12")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def url() -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=Counted, log_config=None)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), "the server did not start"
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await serving


async def test_a_response_is_one_write_and_a_stream_arrives_whole(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        WRITES.clear()
        async with http.get(f"{url}/") as r:
            assert await r.json() == {"ok": True}
        assert len(WRITES) == 1 and WRITES[0].startswith(b"HTTP/1.1 200")
        assert WRITES[0].endswith(b'{"ok": true}')
        for _ in range(3):  # a kept-alive connection, again and again
            async with http.get(f"{url}/") as r:
                assert await r.json() == {"ok": True}
        assert len(WRITES) == 4
        async with http.get(f"{url}/stream") as r:
            assert await r.read() == b"one two three"
