"""Migrations: idempotent on every open, and the migrated schema is exactly ``schema.metadata``.
Run on SQLite and PostgreSQL through the ``store`` fixture."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from taskgate.models import Priority
from taskgate.store import NewTask, SqlStore, TaskFilter
from taskgate.store.database import MIGRATIONS
from taskgate.store.schema import metadata
from tests.conftest import reset_postgres
from tests.integration.db import on_db

_scripts = Config()
_scripts.set_main_option("script_location", str(MIGRATIONS))
HEAD = ScriptDirectory.from_config(_scripts).get_current_head()


async def versions(store: SqlStore) -> list[str]:
    q = sa.text("SELECT version_num FROM alembic_version")
    return await on_db(store.url, lambda conn: list(conn.scalars(q)))


async def schema_diff(store: SqlStore) -> list[Any]:
    def compare(sync_conn: sa.Connection) -> list[Any]:
        ctx = MigrationContext.configure(
            sync_conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return compare_metadata(ctx, metadata)

    return await on_db(store.url, compare)


def a_task() -> NewTask:
    return NewTask(
        tenant="t1",
        api_key_id="key_a",
        kind="chat",
        model="m",
        route="r",
        priority=Priority.DEFAULT,
        input="hi",
        params={},
        max_attempts=1,
    )


async def test_migrated_schema_matches_the_metadata(store: SqlStore) -> None:
    assert await schema_diff(store) == []


async def test_migrations_are_at_head(store: SqlStore) -> None:
    assert await versions(store) == [HEAD]


async def test_opening_twice_is_idempotent(store: SqlStore) -> None:
    task, _ = await store.tasks.insert(a_task())
    again = SqlStore(store.url)
    await again.open()
    try:
        assert await again.tasks.get(task.id) == task
        assert len(await again.tasks.find(TaskFilter(tenant=None))) == 1
        assert await versions(again) == [HEAD]
        assert await schema_diff(again) == []
    finally:
        await again.close()


OPEN_AND_CLOSE = """
import asyncio, sys
from taskgate.store import SqlStore

async def main():
    for url in sys.argv[1:]:
        print("ready", flush=True)
        sys.stdin.readline()  # start together
        store = SqlStore(url)
        await store.open()
        await store.close()

asyncio.run(main())
"""


async def open_in_processes(urls: list[str], n: int) -> list[tuple[int, str]]:
    """``n`` processes open the stores at ``urls`` one after another, all starting each
    open at the same moment; return each process's (returncode, stderr)."""
    pipe = asyncio.subprocess.PIPE
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", OPEN_AND_CLOSE, *urls, stdin=pipe, stdout=pipe, stderr=pipe
        )
        for _ in range(n)
    ]
    for _ in urls:
        ready = [await p.stdout.readline() for p in procs]  # type: ignore[union-attr]
        if ready != [b"ready\n"] * n:
            break  # a process failed: its stderr says why
        for p in procs:
            p.stdin.write(b"go\n")  # type: ignore[union-attr]
            await p.stdin.drain()  # type: ignore[union-attr]
    for p in procs:  # after a failure the others must not wait for "go" forever
        p.stdin.close()  # type: ignore[union-attr]
    outs = await asyncio.gather(*(p.communicate() for p in procs))
    return [(p.returncode or 0, err.decode()) for p, (_, err) in zip(procs, outs, strict=True)]


async def test_concurrent_first_opens_migrate_once(store: SqlStore, tmp_path: Path) -> None:
    """Several processes start at once on an empty database (serialised by an advisory lock
    on PostgreSQL, by SQLite's locks on SQLite), the CLI next to a server, or many workers.
    On SQLite each process opens a series of new files, so they race on each of them."""
    if store.dialect == "postgresql":
        await store.close()
        await reset_postgres(store.url)
        urls = [store.url]
    else:
        urls = [f"sqlite:///{tmp_path}/fresh{i}/taskgate.db" for i in range(50)]

    for code, err in await open_in_processes(urls, 4):
        assert code == 0, err

    for url in urls:
        fresh = SqlStore(url)
        await fresh.open()
        try:
            assert await versions(fresh) == [HEAD]
            assert await schema_diff(fresh) == []
            task, _ = await fresh.tasks.insert(a_task())
            assert await fresh.tasks.get(task.id) == task
        finally:
            await fresh.close()
