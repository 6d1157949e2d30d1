"""A task's whole path in one process, without HTTP: the gateway accepts it, the scheduler
claims and runs it on the zero-latency mock, its ending is written, and its submitter, waiting
on it, wakes. ``-c`` submitters each submit and wait, one task at a time. Reports this
process's CPU time per task (on SQLite that is all the work: SQLite runs inline) and the
statements and transactions per task, counted on SQLite's connection: steadier than the HTTP
benchmarks on a shared machine, and it says where a change moved the work.

    .venv/bin/python bench/task_path.py [-c 1 32] [-n 3200] [--capacity 128]

Compare trees with ``PYTHONPATH=<tree>/src``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import tempfile
import time
from pathlib import Path

from taskgate.config import Settings
from taskgate.events import MemoryEvents
from taskgate.files import Files, LocalBlobs
from taskgate.gateway import Gateway
from taskgate.models import ApiKey, Priority
from taskgate.scheduling import Scheduler
from taskgate.store import SqlStore
from taskgate.submission import Submission

ROUTE = {
    "name": "mock",
    "models": ["mock"],
    "provider": "mock",
}
KEY = ApiKey(id="key_bench", tenant="bench", name="bench", admin=False, created_at=0)


def verb(sql: str) -> str:
    """What a traced statement is: BEGIN (a read), BEGIN IMMEDIATE (a write), SELECT, ..."""
    words = sql.split()
    return " ".join(words[:2]) if words[0] == "BEGIN" else words[0].upper()


async def run(concurrency: int, n: int, capacity: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        route = {**ROUTE, "instances": [{"name": "m", "max_concurrency": capacity}]}
        conf = Settings.model_validate({"routes": [route]})
        store = SqlStore(f"sqlite:///{Path(tmp) / 'taskgate.db'}")
        await store.open()
        events = MemoryEvents()
        gateway = Gateway(conf, store, events)
        scheduler = Scheduler(conf, store, events, Files(store, LocalBlobs(Path(tmp) / "f")))
        await scheduler.start()

        async def submitter(count: int) -> None:
            for i in range(count):
                sub = Submission("chat", "mock", f"hello {i}", {}, Priority.DEFAULT)
                task, _ = await gateway.submit(KEY, sub)
                await gateway.wait(KEY, task.id, 30)

        each = n // concurrency
        await asyncio.gather(*(submitter(each // 4) for _ in range(concurrency)))  # warm-up
        seen: collections.Counter[str] = collections.Counter()
        sqlite = store.db._writer.connection.driver_connection  # type: ignore[union-attr]
        sqlite.set_trace_callback(lambda sql: seen.update([verb(sql)]))
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(submitter(each) for _ in range(concurrency)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        sqlite.set_trace_callback(None)
        await scheduler.stop(1)
        await store.close()
    done = each * concurrency
    counts = ", ".join(f"{k} {v / done:.2f}" for k, v in sorted(seen.items()))
    print(
        f"{concurrency:>3} submitters, capacity {capacity}: "
        f"{cpu / done * 1e6:5.0f} us CPU per task, {done / wall:5.0f} tasks/s; per task: {counts}",
        flush=True,
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--concurrency", type=int, nargs="+", default=[1, 32])
    ap.add_argument("-n", type=int, default=3200, help="tasks per run")
    ap.add_argument(
        "--capacity", type=int, default=128, help="the backend's slots (below -c: a queue)"
    )
    args = ap.parse_args()
    for c in args.concurrency:
        asyncio.run(run(c, args.n, args.capacity))
