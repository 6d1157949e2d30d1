"""A pooled PostgreSQL connection lost while unused, the way a firewall or NAT forgets an
idle connection (store/database.py, ``IDLE_PING_AFTER``): after a quiet spell the pool pings
it before handing it out, so the first transaction does not fail."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

import pytest
import sqlalchemy as sa

from taskgate.errors import Unavailable
from taskgate.store import database, direct
from taskgate.store.database import Database
from tests.conftest import PG_URL, reset_postgres
from tests.integration.test_direct import BY_ID, INSERT, ROW

pytestmark = pytest.mark.postgres


class ForgetfulProxy:
    """A TCP proxy to PostgreSQL that can forget its connections as a firewall or NAT
    forgets idle ones: the server's side is closed, the client is told nothing, and the
    next bytes it sends are answered with a reset."""

    def __init__(self, target: sa.URL) -> None:
        self.target = target
        self.url = target  # the proxy's, once started
        self._upstreams: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ForgetfulProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = self.target.set(host="127.0.0.1", port=self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        self.forget()

    def forget(self) -> None:
        for up in self._upstreams:
            up.close()
        self._upstreams.clear()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(self.target.host, self.target.port or 5432)
        self._upstreams.append(up_w)

        async def down() -> None:  # server to client
            with contextlib.suppress(ConnectionError):
                while data := await up_r.read(65536):
                    client_w.write(data)
            if not up_w.is_closing():  # the server closed it (not forgotten): so does the client's
                client_w.close()

        pump = asyncio.create_task(down())
        try:
            while data := await client_r.read(65536):
                if up_w.is_closing():  # forgotten: the client's next bytes get a reset
                    sock = client_w.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    client_w.transport.abort()
                    return
                up_w.write(data)
        except ConnectionError:
            pass
        finally:
            pump.cancel()


async def test_a_pooled_connection_lost_while_unused_is_not_handed_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A firewall forgot the pool's idle connection: the next transaction, after a quiet
    spell, pings it first and takes a new one; without the ping it would have failed."""
    await reset_postgres()
    async with ForgetfulProxy(sa.make_url(PG_URL)) as proxy:
        db = Database(proxy.url.render_as_string(hide_password=False))
        await db.open()
        try:
            await db.write(direct.execute, INSERT, [{**ROW, "id": "first"}])
            monkeypatch.setattr(database, "IDLE_PING_AFTER", 3600.0)  # not idle long enough
            proxy.forget()
            with pytest.raises(Unavailable):
                await db.write(direct.execute, INSERT, [{**ROW, "id": "lost"}])
            driver = await db.write(lambda conn: conn.connection.driver_connection)
            monkeypatch.setattr(database, "IDLE_PING_AFTER", 0.0)  # idle: pinged first
            proxy.forget()
            await db.write(direct.execute, INSERT, [{**ROW, "id": "kept"}])
            assert await db.read(direct.rows, BY_ID, {"x_id": "kept"})
            assert await db.write(lambda conn: conn.connection.driver_connection) is not driver
        finally:
            await db.close()
