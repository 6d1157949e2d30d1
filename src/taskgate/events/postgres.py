"""Events over PostgreSQL LISTEN/NOTIFY, on the store's own database (asyncpg, two
connections per process: one listens, one sends). A payload is at most 8,000 bytes there;
a bigger message goes out as just its task, type and status (see ``Broadcast._encode``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from taskgate.events.broadcast import Broadcast

KEEPALIVE = 5.0  # seconds between checks that the listening connection still works


class PostgresEvents(Broadcast):
    max_payload = 7_900

    def __init__(self, url: str) -> None:
        super().__init__()
        self.dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        self._listener: asyncpg.Connection | None = None
        self._sender: asyncpg.Connection | None = None
        # one command at a time on the listening connection (LISTEN, UNLISTEN, keepalive)
        self._using_listener = asyncio.Lock()

    async def _listen(self) -> None:
        self._listener = conn = await asyncpg.connect(self.dsn, timeout=10)
        await self._hear_all()
        while True:  # a dead server or network shows only when the connection is used
            await asyncio.sleep(KEEPALIVE)
            await self._on_listener(lambda: conn.fetchval("SELECT 1"))
            await self._drop_idle()

    async def _on_listener(self, command: Callable[[], Awaitable[Any]]) -> None:
        """One command at a time on the listening connection (LISTEN, UNLISTEN, the
        keepalive), each answered within KEEPALIVE seconds, the wait for the others
        included: a connection gone silent fails the keepalive, and the loop reconnects."""
        async with asyncio.timeout(KEEPALIVE), self._using_listener:
            await command()

    def _on_notify(self, *args: Any) -> None:
        self._received(args[3])

    async def _hear(self, channel: str) -> None:
        conn = self._listener
        if conn is None:
            raise ConnectionError("not listening")
        await self._on_listener(lambda: conn.add_listener(channel, self._on_notify))

    async def _unhear(self, channel: str) -> None:
        conn = self._listener
        if conn is not None:
            await self._on_listener(lambda: conn.remove_listener(channel, self._on_notify))

    async def _send(self, batch: list[tuple[str, str]]) -> None:
        if self._sender is None or self._sender.is_closed():
            self._sender = await asyncpg.connect(self.dsn, timeout=10)
        channels, payloads = zip(*batch, strict=True)
        await self._sender.execute(
            "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS m(c, p)",
            list(channels),
            list(payloads),
        )

    async def _reset(self, what: str) -> None:
        conn = self._listener if what == "listen" else self._sender
        if what == "listen":
            self._listener = None
        else:
            self._sender = None
        if conn is not None and not conn.is_closed():
            conn.terminate()
