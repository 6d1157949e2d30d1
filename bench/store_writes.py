"""What the tasks table's indexes cost the queue's writes, in process: tasks accepted in
batches (``Tasks.insert``), claimed (``Claims.claim``) and ended (``Claims.finish``), as the
embedded server does them, on a store already holding ``--prefill`` tasks (``store_fill.py``),
so that the indexes are as deep as a store in use has them. Steadier than ``e2e.py`` on a
shared machine: it reports this process's CPU time per task (on SQLite that is all the work:
SQLite runs inline) and, on PostgreSQL, the write-ahead log written per task (every index
entry a write makes is logged).

    .venv/bin/python bench/store_writes.py [-n 20000] [--prefill 100000]
    .venv/bin/python bench/store_writes.py --store postgresql://postgres@127.0.0.1/bench_w

It starts from an empty store each run: it drops the tables of a PostgreSQL database it is
given (use one of its own). Compare trees with ``PYTHONPATH=<tree>/src``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from store_fill import fill

from taskgate.models import Priority, Status
from taskgate.store import NewTask, SqlStore
from taskgate.store.base import Outcome
from taskgate.store.schema import metadata

BATCH = 100
ROUTE = "bench"


def new_task(i: int) -> NewTask:
    return NewTask(
        tenant="bench",
        api_key_id="key_bench",
        kind="chat",
        model="mock",
        route=ROUTE,
        priority=Priority.DEFAULT,
        input={"messages": [{"role": "user", "content": f"hello {i}"}]},
        params={},
        max_attempts=3,
    )


async def one_batch(store: SqlStore, first: int) -> None:
    await asyncio.gather(*(store.tasks.insert(new_task(first + i)) for i in range(BATCH)))
    claimed = await store.claims.claim(
        ROUTE, lambda *_: {Priority.DEFAULT: BATCH}, lambda ts: ["i1"] * len(ts), "w1", 30.0
    )
    ends = [
        Outcome(
            task_id=t.id,
            worker="w1",
            attempt=t.attempts,
            status=Status.SUCCESS,
            label="success",
            instance="i1",
            route=ROUTE,
            started_at=time.time(),
            result={"text": "hello there"},
        )
        for t in claimed
    ]
    await asyncio.gather(*(store.claims.finish(o) for o in ends))


async def wal_bytes(store: SqlStore) -> int:
    q = sa.text("SELECT pg_current_wal_lsn() - '0/0'")
    return int(await store.db.read(lambda c: c.execute(q).scalar()))


async def drop_tables(url: str) -> None:
    store = SqlStore(url)
    db: Any = store.db
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(db._driver_url)
    async with engine.begin() as conn:
        for table in [*metadata.tables, "alembic_version"]:
            await conn.execute(sa.text(f"DROP TABLE IF EXISTS {table} CASCADE"))
    await engine.dispose()


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = args.store or f"sqlite:///{Path(tmp) / 'taskgate.db'}"
        if url.startswith("postgresql"):
            await drop_tables(url)
        store = SqlStore(url)
        await store.open()
        try:
            if args.prefill:
                await fill(store, args.prefill, report=False)
            pg = store.dialect == "postgresql"
            wal0 = await wal_bytes(store) if pg else 0
            cpu0, t0 = time.process_time(), time.perf_counter()
            for first in range(0, args.n, BATCH):
                await one_batch(store, first)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
            wal = (await wal_bytes(store) - wal0) if pg else 0
        finally:
            await store.close()
    line = f"{args.n} tasks on {store.dialect} (prefill {args.prefill:,}): "
    line += f"{cpu / args.n * 1e6:.0f} us CPU and {wall / args.n * 1e6:.0f} us wall per task"
    if pg:
        line += f", {wal / args.n:,.0f} bytes of WAL per task"
    print(line, flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", help="a PostgreSQL URL (its tables are dropped); default SQLite")
    ap.add_argument("-n", type=int, default=20_000, help="tasks written")
    ap.add_argument("--prefill", type=int, default=100_000, help="tasks in the store before")
    asyncio.run(main(ap.parse_args()))
