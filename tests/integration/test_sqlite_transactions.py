"""SQLite's transactions run on two connections kept open (one to write, one to read): a
write refused because another process holds the file's lock is a 503 (Unavailable), and
leaves them fit for the next transaction, as does a failure inside one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from taskgate.errors import Unavailable
from taskgate.store.database import Conn, Database

ONE = sa.text("SELECT 1")


def one(conn: Conn) -> int:
    return int(conn.execute(ONE).scalar_one())


def fail(conn: Conn) -> None:
    conn.execute(sa.text("CREATE TABLE scratch (x INTEGER)"))
    raise ValueError("inside the transaction")


async def test_a_locked_file_is_unavailable_and_the_connections_stay_fit(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/t.db")
    await db.open()
    try:
        await db.write(lambda c: c.exec_driver_sql("PRAGMA busy_timeout=50"))
        other = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(Unavailable):
            await db.write(one)
        assert await db.read(one) == 1  # readers do not wait for the writer in WAL mode
        other.execute("COMMIT")
        other.close()
        assert await db.write(one) == 1

        with pytest.raises(ValueError, match="inside"):
            await db.write(fail)
        tables = sa.text("SELECT count(*) FROM sqlite_master WHERE name = 'scratch'")
        assert await db.read(lambda c: c.execute(tables).scalar_one()) == 0  # rolled back
        assert await db.write(one) == 1
    finally:
        await db.close()
