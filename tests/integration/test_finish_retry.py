"""An attempt's ending that the store fails to write is written again, not thrown away: the
backend's answer, already paid for, outlives a database restart. On PostgreSQL the database
really goes away (it refuses connections and ends those it had); on SQLite the store's writes
are made to fail as a locked database fails them."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from taskgate import Call, Provider, Result, errors, register_provider
from taskgate.config import Settings
from taskgate.errors import Unavailable
from taskgate.events import MemoryEvents
from taskgate.files import Files, LocalBlobs
from taskgate.gateway import Gateway
from taskgate.models import ApiKey, Status, Task
from taskgate.providers import Job, OutputFile
from taskgate.scheduling import Scheduler
from taskgate.store import SqlStore
from taskgate.submission import Submission
from tests.conftest import allow_connections, reset_postgres, store_url


@dataclass
class Backend:
    calls: list[str] = field(default_factory=list)  # the tasks it was paid for, once a call
    before_answer: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


BACKEND = Backend()


async def answer(call: Call) -> Result:
    for hook in BACKEND.before_answer:
        await hook()
    return Result({"text": f"paid for {call.input}"})


@register_provider("paid")
class PaidProvider(Provider):
    async def run(self, call: Call) -> Result:
        BACKEND.calls.append(call.task_id)
        return await answer(call)


@register_provider("paid_image")
class PaidImageProvider(Provider):
    """Answers with a file, which the ending must store (the store is needed for it too)."""

    async def run(self, call: Call) -> Result:
        BACKEND.calls.append(call.task_id)
        text = await answer(call)
        return Result(text.output, files=(OutputFile(b"\x89PNG...", "image/png", "out.png"),))


@register_provider("paid_job")
class PaidJobProvider(Provider):
    """Answers through a job on the backend's side, polled once."""

    async def run(self, call: Call) -> Job:
        BACKEND.calls.append(call.task_id)
        return Job("job-1")

    async def poll(self, call: Call, job: Job) -> Result:
        return await answer(call)


def locked() -> Unavailable:
    """What the store raises when SQLite's file stays locked (as its helper would)."""
    driver = OperationalError("UPDATE tasks", {}, sqlite3.OperationalError("database is locked"))
    error = Unavailable("the store cannot be reached now")
    error.__cause__ = driver
    return error


class Breaker:
    """Takes the database away: on PostgreSQL it refuses connections, on SQLite every write
    fails as a locked database's do (with ``only_endings``, the writes of endings alone).
    Counts the endings (and their files) and the lease renewals that failed, and the leases
    renewed."""

    def __init__(self, store: SqlStore, kind: str) -> None:
        self.kind = kind
        self.broken = False
        self.only_endings = False
        self.finish_failures = 0
        self.renew_failures = 0
        self.renewed = 0
        write, finish, renew = store.db.write, store.claims.finish, store.claims.renew
        add_file = store.file_records.add

        async def writing(*args: Any) -> Any:
            if self.broken and kind == "sqlite" and not self.only_endings:
                raise locked()
            return await write(*args)

        async def finishing(*args: Any) -> Task | None:
            try:
                if self.broken and self.only_endings:
                    raise locked()
                return await finish(*args)
            except Exception:
                self.finish_failures += 1
                raise

        async def renewing(*args: Any) -> set[str]:
            try:
                held = await renew(*args)
            except Exception:
                self.renew_failures += 1
                raise
            self.renewed += len(held)
            return held

        async def adding_file(*args: Any) -> None:
            try:
                await add_file(*args)
            except Exception:
                self.finish_failures += 1  # a file of the ending
                raise

        store.db.write = writing  # type: ignore[method-assign, assignment]
        store.claims.finish = finishing  # type: ignore[method-assign, assignment]
        store.file_records.add = adding_file  # type: ignore[method-assign]
        store.claims.renew = renewing  # type: ignore[method-assign, assignment]

    async def down(self) -> None:
        self.broken = True
        if self.kind == "postgresql":
            await allow_connections(False)

    async def up(self) -> None:
        if self.broken and self.kind == "postgresql":
            await allow_connections(True)
        self.broken = False


@dataclass
class Rig:
    store: SqlStore
    breaker: Breaker
    scheduler: Scheduler

    async def submit(self) -> str:
        conf, events = self.scheduler.settings, self.scheduler.events
        key = ApiKey(id="k", tenant="t", name="k", admin=False, created_at=0)
        gateway = Gateway(conf, self.store, events)
        task, _ = await gateway.submit(key, Submission("chat", "paid", "hello", {}))
        return task.id

    async def ended(self, task_id: str) -> Task:
        deadline = time.monotonic() + 30
        while (task := await self.store.tasks.get(task_id)) is None or not task.terminal:
            assert time.monotonic() < deadline, f"task {task_id} did not end"
            await asyncio.sleep(0.02)
        return task


@asynccontextmanager
async def rigged(
    kind: str, tmp_path: Path, lease_seconds: float = 30, provider: str = "paid"
) -> AsyncIterator[Rig]:
    global BACKEND
    BACKEND = Backend()
    if kind == "postgresql":
        await allow_connections(True)  # in case an earlier run was killed while it was closed
        await reset_postgres()
    conf = Settings.model_validate(
        {
            "routes": [
                {
                    "name": "paid",
                    "models": ["paid"],
                    "provider": provider,
                    "instances": [{"name": "i"}],
                    "poll": {"interval": 0.05},
                }
            ],
            "scheduler": {"poll_interval": 0.05, "lease_seconds": lease_seconds},
        }
    )
    store = SqlStore(store_url(kind, tmp_path))
    await store.open()
    files = Files(store, LocalBlobs(tmp_path / "files"))
    scheduler = Scheduler(conf, store, MemoryEvents(), files)
    breaker = Breaker(store, kind)
    try:
        yield Rig(store, breaker, scheduler)
    finally:
        await breaker.up()
        await scheduler.stop(grace=1)
        await store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def rig(kind: str, tmp_path: Path) -> AsyncIterator[Rig]:
    async with rigged(kind, tmp_path) as r:
        yield r


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_an_ending_the_store_fails_to_write_is_written_again(rig: Rig) -> None:
    await the_ending_outlives_the_outage(rig)


async def test_an_answer_with_files_outlives_the_outage_too(kind: str, tmp_path: Path) -> None:
    """Its files are stored as the ending is settled, which needs the store as well."""
    async with rigged(kind, tmp_path, provider="paid_image") as rig:
        task = await the_ending_outlives_the_outage(rig)
        [f] = task.result["files"]
        stored, data = await rig.scheduler.files.open(f["id"], "t")
        assert data == b"\x89PNG..." and stored.task_id == task.id


async def the_ending_outlives_the_outage(rig: Rig) -> Task:
    BACKEND.before_answer.append(rig.breaker.down)  # the database goes as the backend answers
    task_id = await rig.submit()
    await rig.scheduler.start()
    await until(lambda: rig.breaker.finish_failures >= 3)
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
        await rig.scheduler.leases.renew()
    run = rig.scheduler.attempts.running.get(task_id)  # a failed renewal stops nothing
    assert run is not None and run.handle is not None and not run.handle.done()
    await rig.breaker.up()
    task = await rig.ended(task_id)
    assert task.status is Status.SUCCESS
    assert task.result is not None and task.result["output"] == {"text": "paid for hello"}
    assert BACKEND.calls == [task_id]  # paid for once
    assert [a.outcome for a in await rig.store.tasks.history(task_id)] == ["success"]
    return task


@pytest.mark.parametrize("provider", ["paid", "paid_job"])
async def test_a_stopping_worker_still_writes_its_ending_during_its_grace(
    kind: str, provider: str, tmp_path: Path
) -> None:
    """Also when the answer came from a job on the backend's side: a run that only waits
    on the backend is handed back at once, not one that has its answer."""
    async with rigged(kind, tmp_path, provider=provider) as rig:
        await stop_while_the_store_is_down(rig)


async def stop_while_the_store_is_down(rig: Rig) -> None:
    BACKEND.before_answer.append(rig.breaker.down)
    task_id = await rig.submit()
    await rig.scheduler.start()
    await until(lambda: rig.breaker.finish_failures >= 1)
    stopping = asyncio.create_task(rig.scheduler.stop(grace=60))
    failed = rig.breaker.finish_failures
    await until(lambda: rig.breaker.finish_failures >= failed + 2)  # still at it
    assert not stopping.done()
    await rig.breaker.up()
    await asyncio.wait_for(stopping, 30)
    task = await rig.ended(task_id)
    assert task.status is Status.SUCCESS
    assert BACKEND.calls == [task_id]


async def test_the_ending_is_given_up_once_the_lease_may_have_lapsed(tmp_path: Path) -> None:
    """The store fails while the call runs: its renewals fail, so the lease, as claimed,
    ends 3 s after the claim. The ending is tried again until then, and not after: another
    worker may have taken the task over."""
    async with rigged("sqlite", tmp_path, lease_seconds=3) as rig:

        async def renewals_fail() -> None:  # the call outlasts two renewals that fail
            await rig.breaker.down()
            await until(lambda: rig.breaker.renew_failures >= 2)

        BACKEND.before_answer.append(renewals_fail)
        task_id = await rig.submit()
        await rig.scheduler.start()
        await until(lambda: rig.breaker.renew_failures >= 2)
        run = rig.scheduler.attempts.running[task_id]
        lease_until = run.held_until  # as claimed
        await until(
            lambda: rig.scheduler.attempts.running.get(task_id) is not run
        )  # (run again later)
        given_up_at = time.time()
        assert rig.breaker.finish_failures >= 2
        assert lease_until <= given_up_at < lease_until + 1.5  # not a lease after the call


async def test_an_ending_that_fails_while_the_lease_is_renewed_is_given_up(
    tmp_path: Path,
) -> None:
    """Only the ending fails (it cannot be written, whatever the reason): the renewals keep
    the lease, but the ending is given up after a lease's length, not tried forever."""
    async with rigged("sqlite", tmp_path, lease_seconds=1.5) as rig:
        rig.breaker.only_endings = True
        BACKEND.before_answer.append(rig.breaker.down)
        task_id = await rig.submit()
        await rig.scheduler.start()
        await until(lambda: rig.breaker.finish_failures >= 1)
        run = rig.scheduler.attempts.running[task_id]
        await until(lambda: rig.scheduler.attempts.running.get(task_id) is not run, timeout=20)
        assert rig.breaker.finish_failures >= 3
        assert rig.breaker.renewed >= 1  # the lease was kept meanwhile


async def test_an_input_file_the_store_cannot_read_now_fails_the_attempt_only(
    tmp_path: Path,
) -> None:
    """A blip of the store while a call reads its input file is retried, not a failed task."""
    async with rigged("sqlite", tmp_path) as rig:

        async def unreachable(*_: Any) -> Any:
            raise Unavailable("the store cannot be reached now")

        rig.scheduler.files.open = unreachable  # type: ignore[method-assign]
        with pytest.raises(errors.RetryableError, match="cannot be read now"):
            await rig.scheduler.attempts.read_file("t", "f1")
