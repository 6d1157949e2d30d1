"""A TCP forwarder that can cut a service off: the database going away, as a client sees it.

``cut()`` ends every connection through it, and every new one is ended as soon as it is
accepted, until ``restore()``. (It keeps listening throughout: closing the listening socket
while a connection is being accepted leaves that socket to the garbage collector.) It runs
its own event loop in a thread, so a test can use it beside a server process and synchronous
clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any


class TcpProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._cut_off = False

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self._run(self._listen())
        return self

    def __exit__(self, *_: Any) -> None:
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def cut(self) -> None:
        self._run(self._cut())

    def restore(self) -> None:
        self._cut_off = False

    def _run(self, coro: Any) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def _cut(self) -> None:
        self._cut_off = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _shutdown(self) -> None:
        """Stop listening, and end every connection still being made or piped."""
        await self._cut()
        if self._server is not None:
            self._server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self._cut()  # what a cancelled connection left behind

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut_off:
            writer.transport.abort()
            return
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        if self._cut_off:  # cut while this connection was being made
            await self._cut()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._writers.discard(writer)
