"""One system call per HTTP response, not two.

uvicorn writes a response's head when the app sends ``http.response.start`` and its body at
``http.response.body``: two writes to the socket, back to back. On a TCP connection each
write is a system call that, on loopback, also runs the receiving side's network stack and
wakes the client: for small answers (a task accepted, a chat completion) the second write
cost the server about as much as the first (bench/README.md).

:class:`OneWritePerResponse` is uvicorn's httptools protocol with its transport wrapped in
:class:`HeldWrites`, which holds a write until the next one and sends both together; a write
with nothing after it goes out once the event loop has run what is ready now (a streamed
response's head before its first chunk, a stream's chunk). Nothing waits for a later turn of
the loop, and the bytes keep their order: a close sends what is held first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeldWrites:
    """A transport whose each write waits for the next, or for the loop's ready callbacks
    to run, to go out joined with it. Everything else is the wrapped transport's."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is None:
            self._held = bytes(data)
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            held, self._held = self._held, None
            self._transport.writelines([held, data])  # (uvloop: one writev, no copy)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWritePerResponse(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing each response in one system call."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(HeldWrites(transport))  # type: ignore[arg-type]
