"""Events over PostgreSQL LISTEN/NOTIFY, on the store's own database (asyncpg, two
connections per process: one listens, one sends). A payload is at most 8,000 bytes there;
a bigger message goes out as just its task, type and status (see ``Broadcast._encode``)."""

from __future__ import annotations

import asyncio

import asyncpg

from taskgate.events.broadcast import CHANNEL, Broadcast

KEEPALIVE = 5.0  # seconds between checks that the listening connection still works


class PostgresEvents(Broadcast):
    max_payload = 7_900

    def __init__(self, url: str) -> None:
        super().__init__()
        self.dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        self._listener: asyncpg.Connection | None = None
        self._sender: asyncpg.Connection | None = None

    async def _listen(self) -> None:
        self._listener = conn = await asyncpg.connect(self.dsn, timeout=10)
        await conn.add_listener(CHANNEL, lambda *args: self._received(args[3]))
        self.connected.set()
        while True:  # a dead server or network shows only when the connection is used
            await asyncio.sleep(KEEPALIVE)
            await conn.fetchval("SELECT 1", timeout=KEEPALIVE)

    async def _send(self, payloads: list[str]) -> None:
        if self._sender is None or self._sender.is_closed():
            self._sender = await asyncpg.connect(self.dsn, timeout=10)
        await self._sender.execute(
            "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
            CHANNEL,
            payloads,
        )

    async def _reset(self, what: str) -> None:
        conn = self._listener if what == "listen" else self._sender
        if what == "listen":
            self._listener = None
        else:
            self._sender = None
        if conn is not None and not conn.is_closed():
            conn.terminate()
