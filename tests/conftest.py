"""Shared fixtures. ``store`` runs each store test on SQLite and on the local PostgreSQL
(127.0.0.1:5432, database ``test``; override with TASKGATE_TEST_PG).

Under pytest-xdist (``make test`` runs ``-n auto``) each worker has a PostgreSQL database and
a Redis db number of its own, so tests that reset, close or listen on them never meet another
worker's: ``gw0`` uses the configured database name plus ``_gw0`` (made here at session start
and kept for the next run) and the configured Redis db number plus 0, ``gw1`` plus 1, and so
on. Each file runs on one worker (``--dist loadfile``), so its module-scoped servers start
once."""

from __future__ import annotations

import asyncio
import compileall
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

import taskgate
from taskgate.store import SqlStore
from taskgate.store.schema import metadata

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1"...; "" without xdist


def _of_worker_pg(url: str) -> str:
    """The worker's own database: the configured one's name plus the worker's id."""
    if not WORKER:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"{parts.path}_{WORKER}"))


def _of_worker_redis(url: str) -> str:
    """The worker's own Redis db: the configured number plus the worker's index. Redis
    pub/sub channels are server-wide; taskgate's events channel names its db number."""
    if not WORKER:
        return url
    parts = urlsplit(url)
    db = int(parts.path.lstrip("/") or 0) + int(WORKER.removeprefix("gw"))
    return urlunsplit(parts._replace(path=f"/{db}"))


PG_URL = _of_worker_pg(
    os.environ.get("TASKGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
)


async def reset_postgres(url: str = PG_URL) -> None:
    """Drop taskgate's tables so that the next open migrates a clean database."""
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with engine.begin() as conn:
            for table in [*metadata.tables, "alembic_version"]:
                await conn.execute(sa.text(f"DROP TABLE IF EXISTS {table} CASCADE"))
    finally:
        await engine.dispose()


async def drop_postgres_connections(url: str = PG_URL) -> None:
    """End every other connection to the database, as a server restart would."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND datname = current_database()"
        )
    finally:
        await conn.close()


async def allow_connections(allow: bool) -> None:
    """Close the test database to every connection, ending those it has (as a restart does),
    or open it again; from the server's maintenance database."""
    import asyncpg

    name = urlsplit(PG_URL).path.lstrip("/")
    conn = await asyncpg.connect(_maintenance_url())
    try:
        await conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allow).lower()}')
        if not allow:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
    finally:
        await conn.close()


def _maintenance_url() -> str:
    """The server's ``postgres`` database, for statements about the test database itself."""
    return urlunsplit(urlsplit(PG_URL)._replace(path="/postgres"))


async def _create_database() -> None:
    """Make the worker's database unless an earlier run left it."""
    import asyncpg

    name = urlsplit(PG_URL).path.lstrip("/")
    conn = await asyncpg.connect(_maintenance_url())
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def store_url(kind: str, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/taskgate.db" if kind == "sqlite" else PG_URL


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    if request.param == "postgresql":
        await reset_postgres()
    s = SqlStore(store_url(request.param, tmp_path))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


REDIS_URL = _of_worker_redis(os.environ.get("TASKGATE_TEST_REDIS", "redis://127.0.0.1:6379/0"))
SERVICES = {
    "postgres": (PG_URL, 5432, "TASKGATE_TEST_PG"),
    "redis": (REDIS_URL, 6379, "TASKGATE_TEST_REDIS"),
}


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a PostgreSQL (or Redis) server, skip its tests on a developer's machine; in CI
    (CI=true) they run and fail, so a missing server never passes unnoticed."""
    if os.environ.get("CI"):
        return
    for marker, (url, port, var) in SERVICES.items():
        if _reachable(url, port):
            continue
        skip = pytest.mark.skip(reason=f"no server at {url} (set {var})")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    """Compile taskgate's modules once, before any worker or server process starts. Where
    PYTHONDONTWRITEBYTECODE is set (it is on the VM the suite runs on) no process writes its
    bytecode, so each of the suite's hundreds of ``taskgate`` processes compiled every module
    again (about 0.3 s of CPU each); they all read what is written here."""
    if not WORKER:
        compileall.compile_dir(Path(taskgate.__file__).parent, quiet=2)


def pytest_sessionstart(session: pytest.Session) -> None:
    if WORKER and _reachable(PG_URL, 5432):
        asyncio.run(_create_database())
