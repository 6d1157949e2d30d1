"""Claims of one route by several workers on PostgreSQL do not wait on each other: a claim
that finds another worker's claim holding the route's lock gives way at once
(store/claims.RouteBusy), leaving its tasks to that claim; and the dispatcher that gave way
looks at the route again soon, so that no task waits while capacity is free."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from taskgate.config import Settings
from taskgate.events import MemoryEvents
from taskgate.files import Files, LocalBlobs
from taskgate.gateway import Gateway
from taskgate.models import ApiKey, Priority, Status, Task
from taskgate.scheduling import Scheduler
from taskgate.store import SqlStore, ops
from taskgate.store.base import NewTask
from taskgate.store.claims import RouteBusy
from taskgate.submission import Submission
from tests.conftest import PG_URL

# the shared ``store`` fixture, on PostgreSQL only: claims contend there (on SQLite a write
# transaction waits for the others)
pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("store", ["postgresql"], indirect=True)]

KEY = ApiKey(id="k", tenant="t", name="k", admin=False, created_at=0)


@asynccontextmanager
async def another_workers_claim(route: str) -> AsyncIterator[None]:
    """A claim of another worker under way on ``route``: its transaction holds the route's
    lock until the block ends."""
    engine = create_async_engine(PG_URL.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with engine.connect() as conn, conn.begin():
            for _ in range(10_000):  # a claim of the scheduler's own may be under way
                if await conn.scalar(ops.TRY_ROUTE_LOCK, {"lock_route": route}):
                    break
                await asyncio.sleep(0.001)
            else:
                raise AssertionError("the route's lock never came free")
            yield
    finally:
        await engine.dispose()


def new_task(route: str) -> NewTask:
    return NewTask("t", "k", "chat", "m", route, Priority.DEFAULT, "hello", {}, 1)


async def claim(store: SqlStore, route: str) -> list[Task]:
    def assign(claimed: Sequence[Task]) -> list[str | None]:
        return ["i"] * len(claimed)

    return await store.claims.claim(route, lambda *_: {Priority.DEFAULT: 10}, assign, "w2", 30)


async def test_a_claim_gives_way_at_once_to_another_workers_claim_on_its_route(
    store: SqlStore,
) -> None:
    waiting, _ = await store.tasks.insert(new_task("r"))
    elsewhere, _ = await store.tasks.insert(new_task("other"))
    async with another_workers_claim("r"):
        # were it waiting for the lock, it would wait until the block ends: it never would
        with pytest.raises(RouteBusy):
            await asyncio.wait_for(claim(store, "r"), 60)
        assert [t.id for t in await claim(store, "other")] == [elsewhere.id]  # not held up
        still = await store.tasks.get(waiting.id)
        assert still is not None and still.status is Status.PENDING
    assert [t.id for t in await claim(store, "r")] == [waiting.id]


@pytest.fixture
async def scheduler(store: SqlStore, tmp_path: Path) -> AsyncIterator[Scheduler]:
    conf = Settings.model_validate(
        {
            "routes": [
                {
                    "name": "r",
                    "models": ["m"],
                    "provider": "mock",
                    "instances": [{"name": "i", "max_concurrency": 4}],
                }
            ],
            # no poll would find the task in this test's time: only the look after giving
            # way to another worker's claim can
            "scheduler": {"poll_interval": 3600},
        }
    )
    events = MemoryEvents()
    s = Scheduler(conf, store, events, Files(store, LocalBlobs(tmp_path / "files")))
    await s.start()
    try:
        yield s
    finally:
        await s.stop(grace=1)


async def test_a_worker_that_gave_way_takes_the_task_once_the_other_claim_ends(
    store: SqlStore, scheduler: Scheduler
) -> None:
    gave_way = asyncio.Event()
    give_way = scheduler.dispatcher.give_way

    def giving_way(route: str) -> None:
        give_way(route)
        gave_way.set()

    scheduler.dispatcher.give_way = giving_way  # type: ignore[method-assign]
    gateway = Gateway(scheduler.settings, store, scheduler.events)
    async with another_workers_claim("r"):
        # the task is announced while another worker claims: this one gives way
        task, _ = await gateway.submit(KEY, Submission("chat", "m", "hello", {}))
        await asyncio.wait_for(gave_way.wait(), 60)
    # that claim ended without taking the task (as if it had had no room): no event comes,
    # and the next poll is an hour away, yet the task runs
    end = time.monotonic() + 60
    while (t := await store.tasks.get(task.id)) is None or not t.terminal:
        assert time.monotonic() < end, "the task was left waiting with capacity free"
        await asyncio.sleep(0.02)
    assert t.status is Status.SUCCESS
