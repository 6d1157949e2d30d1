"""Shared fixtures. ``store`` runs each store test on SQLite and on the local PostgreSQL
(127.0.0.1:5432, database ``test``; override with TASKGATE_TEST_PG)."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from taskgate.store import SqlStore
from taskgate.store.schema import metadata

PG_URL = os.environ.get("TASKGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


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

    parts = urlsplit(PG_URL)
    name = parts.path.lstrip("/")
    conn = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allow).lower()}')
        if not allow:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
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


REDIS_URL = os.environ.get("TASKGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")
SERVICES = {
    "postgres": (PG_URL, 5432, "TASKGATE_TEST_PG"),
    "redis": (REDIS_URL, 6379, "TASKGATE_TEST_REDIS"),
}


def _reachable(url: str, default_port: int) -> bool:
    from urllib.parse import urlsplit

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
