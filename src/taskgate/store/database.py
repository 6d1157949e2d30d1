"""The store's database: its engine on SQLite (embedded default) or PostgreSQL, its
migrations, and the transactions every repository runs its statements in.

Every operation is one synchronous function of a ``Connection`` (most of them in ``ops.py``),
written once and run two ways by :meth:`Database.write` and :meth:`Database.read`:
on PostgreSQL through the async engine (asyncpg, ``AsyncConnection.run_sync``); on SQLite
directly on the event loop's thread. A local SQLite statement takes tens of microseconds,
less than handing it to a driver thread and back (aiosqlite costs 3-4x as much per statement
here, most of it in thread hops), and SQLite serialises writers anyway. Write transactions on
SQLite begin with ``BEGIN IMMEDIATE`` so that another process (the CLI) never deadlocks ours.
"""

from __future__ import annotations

import contextlib
import functools
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import await_only

from taskgate.errors import Unavailable
from taskgate.models import Task
from taskgate.store.base import Observer

R = TypeVar("R")
Conn = sa.Connection

MIGRATIONS = Path(__file__).with_name("migrations")
_ADVISORY_LOCK = 7_364_021  # serialises concurrent migrations on PostgreSQL
_TRY_LOCK = sa.text("SELECT pg_try_advisory_lock(:lock)")
_UNLOCK = sa.text("SELECT pg_advisory_unlock(:lock)")
IDLE_PING_AFTER = 30.0  # seconds a pooled PostgreSQL connection may sit unused unchecked


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json_loads(value: Any) -> Any:
    """A JSON column's value. SQLite gives the column NUMERIC affinity, so a value that is a
    bare number (a task's ``input`` of 42) comes back as that number, not as its text."""
    return value if isinstance(value, (int, float)) else orjson.loads(value)


def driver_url(url: str) -> tuple[str, str]:
    """Map a user-facing URL to SQLAlchemy's driver URL; return (dialect, url)."""
    if url.startswith("sqlite://"):
        return "sqlite", url
    if url.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://")):
        rest = url.split("://", 1)[1]
        return "postgresql", f"postgresql+asyncpg://{rest}"
    raise ValueError(f"unsupported store URL {url!r}: use sqlite:///PATH or postgresql://...")


class Database:
    """The engine, opened and migrated; the transactions statements run in; and who is told
    of the tasks those transactions end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect, self._driver_url = driver_url(url)
        self._sync: sa.Engine | None = None  # SQLite, run inline
        # SQLite: one connection to write and one to read, kept open (both on the engine's one
        # sqlite3 connection): a checkout per transaction cost as much as the statements
        self._writer: sa.Connection | None = None
        self._reader: sa.Connection | None = None
        self._async: AsyncEngine | None = None  # PostgreSQL
        # Told of the tasks each write of this process ended (finish, cancel, sweep): the
        # webhook deliverer wakes on them rather than waiting for its next look.
        self.ended_listeners: list[Callable[[Sequence[Task]], None]] = []
        self.observer = Observer()  # logs and metrics (taskgate.ops.transitions)
        self.schema_head: str | None = None  # the migration open() brought it to

    async def open(self) -> None:
        """Make the engine, and migrate the database to the current schema."""
        json: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": _json_loads}
        if self.dialect == "sqlite":
            self._prepare_sqlite_path()
            self._sync = sa.create_engine(self._driver_url, poolclass=sa.StaticPool, **json)
            _sqlite_setup(self._sync)
            self._writer = self._sync.connect()
            self._reader = self._sync.connect().execution_options(readonly=True)
        else:
            self._async = create_async_engine(
                self._driver_url, pool_size=10, max_overflow=10, **json
            )
            _drop_closed_connections(self._async.sync_engine)
        await self.write(self._migrate)

    def _prepare_sqlite_path(self) -> None:
        path = self._driver_url.split(":///", 1)[1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    def _migrate(self, conn: Conn) -> None:
        if self.dialect == "postgresql":  # several processes may start at once
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK})")
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        self.schema_head = ScriptDirectory.from_config(cfg).get_current_head()

    async def ready(self) -> bool:
        """Whether the database answers and holds the schema this code migrated it to."""
        q = sa.text("SELECT version_num FROM alembic_version")
        return bool(self.schema_head) and await self.read(scalar, q) == self.schema_head

    async def close(self) -> None:
        """Let the connections go (the repositories have written what they held)."""
        for conn in (self._writer, self._reader):
            if conn is not None:
                conn.close()
        self._writer = self._reader = None  # a late request is refused as "not open"
        if self._sync is not None:
            self._sync.dispose()
        if self._async is not None:
            await self._async.dispose()

    async def write(self, fn: Callable[..., R], *args: Any) -> R:
        """Run ``fn(conn, *args)`` in one write transaction."""
        with _unavailable_when_unreachable():
            if self._writer is not None:
                with self._writer.begin():
                    return fn(self._writer, *args)
            assert self._async is not None, "store is not open"
            async with self._async.begin() as aconn:
                return await aconn.run_sync(fn, *args)

    async def read(self, fn: Callable[..., R], *args: Any) -> R:
        """Run ``fn(conn, *args)`` for reading."""
        with _unavailable_when_unreachable():
            if self._reader is not None:
                with self._reader.begin():
                    return fn(self._reader, *args)
            assert self._async is not None, "store is not open"
            async with self._async.connect() as aconn:
                return await aconn.run_sync(fn, *args)

    @contextlib.asynccontextmanager
    async def exclusive(self, lock: int) -> AsyncIterator[bool]:
        """Whether this process got the advisory lock ``lock``, held until the block ends:
        on PostgreSQL a session lock on a connection of its own, tried, not waited for; on
        SQLite always (a single process runs the loops that ask)."""
        if self._async is None:
            yield True
            return
        async with contextlib.AsyncExitStack() as stack:
            with _unavailable_when_unreachable():
                aconn = await stack.enter_async_context(self._async.connect())
                conn = await aconn.execution_options(isolation_level="AUTOCOMMIT")
                got = bool(await conn.scalar(_TRY_LOCK, {"lock": lock}))
            try:
                yield got
            finally:
                if got:
                    try:
                        await conn.execute(_UNLOCK, {"lock": lock})
                    except Exception:  # the session goes, and its lock with it
                        await aconn.invalidate()

    def tell_ended(self, ended: Sequence[Task]) -> None:
        """Tell the listeners of the tasks a write (now committed) ended."""
        if ended:
            self.observer.ended(ended)
            for listener in self.ended_listeners:
                listener(ended)


def rows(conn: Conn, stmt: sa.Executable) -> list[sa.RowMapping]:
    """A statement's rows, for ``Database.read(rows, stmt)``."""
    return list(conn.execute(stmt).mappings().all())


def dialect_insert(conn: Conn, table: sa.Table) -> Any:
    """An INSERT with the dialect's ON CONFLICT clauses (``on_conflict_do_nothing``, ...)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def scalar(conn: Conn, stmt: sa.Executable) -> Any:
    """A statement's one value, for ``Database.read(scalar, stmt)``."""
    return conn.execute(stmt).scalar()


@contextlib.contextmanager
def _unavailable_when_unreachable() -> Iterator[None]:
    """Raise the driver's errors that say the database cannot be reached as
    :class:`Unavailable` (the API answers 503), with the driver's error as its cause."""
    try:
        yield
    except Exception as exc:
        if _unreachable(exc):
            raise Unavailable("the store cannot be reached now; try again shortly") from exc
        raise


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached now (a refused or dropped
    connection, a server restarting or refusing connections, a busy SQLite file), not that a
    statement is wrong. The driver's own error may be the cause of SQLAlchemy's."""
    if isinstance(exc, sa.exc.DBAPIError) and (
        exc.connection_invalidated
        or isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError))
    ):
        return True
    if isinstance(
        exc, (OSError, sqlite3.OperationalError, sa.exc.TimeoutError, *_driver_outages())
    ):
        return True
    cause = exc.__cause__ or getattr(exc, "orig", None)
    return cause is not None and cause is not exc and _unreachable(cause)


@functools.cache
def _driver_outages() -> tuple[type[Exception], ...]:
    """asyncpg's errors for a database that cannot serve now: the connection failed or was
    refused, the server is shutting down or starting up (57), refuses connections to the
    database (55: not in a state to), or has no connection slot left (53)."""
    try:
        import asyncpg
    except ImportError:
        return ()
    return (
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.exceptions.OperatorInterventionError,
        asyncpg.exceptions.ObjectNotInPrerequisiteStateError,
        asyncpg.exceptions.InsufficientResourcesError,
    )


def _drop_closed_connections(engine: sa.Engine) -> None:
    """Never hand out a pooled PostgreSQL connection that the server has closed (a restart,
    an administrator ending sessions), nor one that was lost while it sat unused: the pool
    drops it and takes another, or opens one.

    This replaces SQLAlchemy's ``pool_pre_ping``, which on asyncpg costs three round trips
    (BEGIN, a query, ROLLBACK) before every transaction. asyncpg learns that the server
    closed a connection as soon as the event loop reads the socket's end, so asking it
    costs nothing. A connection lost without a word (a firewall or NAT that forgot an idle
    connection; the next packet is answered with a reset) is only found by using it, so a
    connection unused for ``IDLE_PING_AFTER`` seconds is pinged before it is handed out: a
    busy pool never pays for it, and the first request after a quiet spell does not fail.
    A connection lost while in use fails its statement as ``Unavailable``, and SQLAlchemy
    then drops the pool's connections that are older than the failure."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if dbapi_conn.driver_connection.is_closed():
            raise sa.exc.DisconnectionError("the server closed this connection")
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since > IDLE_PING_AFTER:
            try:  # one statement, no transaction (the checkout runs in SQLAlchemy's greenlet)
                await_only(dbapi_conn.driver_connection.fetchval("SELECT 1"))
            except Exception as exc:
                raise sa.exc.DisconnectionError(f"lost while unused: {exc!r}") from exc


def _sqlite_setup(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        dbapi_conn.execute("PRAGMA busy_timeout=10000")
        _enable_wal(dbapi_conn)
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Conn) -> None:
        readonly = conn.get_execution_options().get("readonly")
        # on the driver: SQLAlchemy's own execution would cost more than the BEGIN
        conn.connection.driver_connection.execute("BEGIN" if readonly else "BEGIN IMMEDIATE")  # type: ignore[union-attr]


def _enable_wal(dbapi_conn: Any, tries: int = 100) -> None:
    """Switch a database file to WAL. On a new file that other processes open at the same
    moment SQLite refuses the switch with "database is locked" at once, without waiting on
    the busy timeout, so we wait and try again ourselves."""
    for attempt in range(tries):
        try:
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.01 + 0.01 * random.random())
