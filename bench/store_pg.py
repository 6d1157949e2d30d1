"""The store's hot path on PostgreSQL, in one process and nothing else: ``-n`` tasks inserted
``--batch`` at a time, then claimed ``--batch`` at a time, each claim's tasks ended at once
(their endings share transactions, as a worker's do). Prints, per step, the CPU time per
task of this process and of the PostgreSQL backends serving the database, and the wall
time per task. No HTTP, no events, no scheduler: the figures are the store's own, and on
a machine shared with other work they vary less than a whole cluster's.

Uses the database ``taskgate_bench`` on the local server (created if missing, emptied
first); set TASKGATE_BENCH_PG to use another (bench/distributed.py uses the same)."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import asyncpg
from distributed import PG, cpu_seconds, fresh_database

from taskgate.models import Priority, Status, Task
from taskgate.store import NewTask, Outcome, SqlStore

NEW = NewTask(
    "t", "k", "chat", "mock", "r", Priority.DEFAULT, {"messages": [{"role": "user"}]}, {}, 3
)


class Meter:
    """CPU of this process and of the database's backends, summed per step."""

    def __init__(self, admin: asyncpg.Connection) -> None:
        self.admin = admin
        self.used: dict[str, list[float]] = {}  # step: [process, postgres, wall]

    async def backends(self) -> dict[int, float]:
        q = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        own = self.admin.get_server_pid()
        return {
            r["pid"]: cpu_seconds(r["pid"]) for r in await self.admin.fetch(q) if r["pid"] != own
        }

    async def run(self, step: str, work: Awaitable[Any]) -> Any:
        pg0, p0, t0 = await self.backends(), time.process_time(), time.perf_counter()
        out = await work
        t1, p1, pg1 = time.perf_counter(), time.process_time(), await self.backends()
        used = self.used.setdefault(step, [0.0, 0.0, 0.0])
        used[0] += p1 - p0
        used[1] += sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items())
        used[2] += t1 - t0
        return out


def ending(t: Task) -> Outcome:
    return Outcome(t.id, "w", t.attempts, Status.SUCCESS, "success", "i", "r", time.time())


async def main(n: int, batch: int) -> None:
    await fresh_database(PG)
    store = SqlStore(PG)
    await store.open()
    admin = await asyncpg.connect(PG)
    meter = Meter(admin)
    try:
        for _ in range(0, n, batch):
            inserts = asyncio.gather(*(store.tasks.insert(NEW) for _ in range(batch)))
            await meter.run("insert", inserts)
        done = 0
        while done < n:
            got = await meter.run(
                "claim",
                store.claims.claim(
                    "r", lambda *_: {Priority.DEFAULT: batch}, lambda ts: ["i"] * len(ts), "w", 30
                ),
            )
            await meter.run(
                "finish", asyncio.gather(*(store.claims.finish(ending(t)) for t in got))
            )
            done += len(got)
    finally:
        await admin.close()
        await store.close()
    print(f"{n} tasks, batches of {batch}, PostgreSQL")
    for step, (process, postgres, wall) in meter.used.items():
        print(
            f"{step:7s} CPU/task: this process {1e6 * process / n:4.0f} us, postgres "
            f"{1e6 * postgres / n:4.0f} us; wall {1e6 * wall / n:5.0f} us/task"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5_000)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    asyncio.run(main(args.n, args.batch))
