"""taskiq's side of bench/compare.py, run by the peers' own Python (bench/.peers), never by
taskgate's: a RedisStreamBroker on the local Redis, a no-op task, and a load that kicks ``n``
tasks from ``c`` coroutines and waits until the worker has acknowledged every one.

    python taskiq_peer.py load N C      (the worker: taskiq worker taskiq_peer:broker)

The queue's name comes from ``TASKIQ_BENCH_QUEUE`` (a fresh stream per run) and Redis from
``TASKIQ_BENCH_REDIS``. A message is acknowledged after its task has run (taskiq's default,
``when_saved``, with no result backend), so "every message of the stream read and none
pending" is "every task done", read from ``XINFO GROUPS`` without touching the tasks."""

from __future__ import annotations

import asyncio
import os
import sys
import time

from taskiq_redis import RedisStreamBroker

QUEUE = os.environ.get("TASKIQ_BENCH_QUEUE", "taskiq-bench")
broker = RedisStreamBroker(
    os.environ.get("TASKIQ_BENCH_REDIS", "redis://127.0.0.1:6379/0"), queue_name=QUEUE
)


@broker.task
async def noop() -> None:
    return None


async def acknowledged() -> int:
    """How many messages the consumer group has read and acknowledged."""
    from redis.asyncio import Redis

    async with Redis(connection_pool=broker.connection_pool) as redis:
        (group,) = await redis.xinfo_groups(QUEUE)
        return int(group["entries-read"] or 0) - int(group["pending"])


async def load(n: int, concurrency: int) -> None:
    await broker.startup()  # declares the consumer group before the first message
    remaining = iter(range(n))

    async def kicker() -> None:
        for _ in remaining:
            await noop.kiq()

    t0 = time.perf_counter()
    await asyncio.gather(*(kicker() for _ in range(concurrency)))
    kicked = time.perf_counter()
    while await acknowledged() < n:  # noqa: ASYNC110 (a count in Redis, not a local flag)
        await asyncio.sleep(0.01)
    end = time.perf_counter()
    print(f"{n / (end - t0):.1f} {n / (kicked - t0):.1f}", flush=True)
    await broker.shutdown()


if __name__ == "__main__":
    asyncio.run(load(int(sys.argv[2]), int(sys.argv[3])))
