"""The scheduler in-process on the real store: priorities, fairness, capacity, instance choice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from taskgate import Call, Provider, Result, register_provider
from taskgate.config import Settings
from taskgate.events import MemoryEvents
from taskgate.files import Files, LocalBlobs
from taskgate.gateway import Gateway
from taskgate.models import ApiKey, Priority, Status
from taskgate.providers import OutputFile
from taskgate.scheduling import Scheduler
from taskgate.store import SqlStore
from taskgate.submission import Submission
from tests.conftest import reset_postgres, store_url


@dataclass
class Recorder:
    """What the `recorder` provider saw: start order, concurrency per instance."""

    started: list[tuple[str, str]] = field(default_factory=list)  # (task input, instance)
    in_flight: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    gate: asyncio.Event | None = None


RECORDER = Recorder()


@register_provider("recorder")
class RecordingProvider(Provider):
    async def run(self, call: Call) -> Result:
        inst = call.instance.name
        RECORDER.started.append((str(call.input), inst))
        RECORDER.in_flight[inst] = RECORDER.in_flight.get(inst, 0) + 1
        RECORDER.peak[inst] = max(RECORDER.peak.get(inst, 0), RECORDER.in_flight[inst])
        try:
            if RECORDER.gate is not None:
                await RECORDER.gate.wait()
            await asyncio.sleep(float(call.option("latency_ms", 0)) / 1000)
        finally:
            RECORDER.in_flight[inst] -= 1
        return Result({"ok": True}, usage={"total_tokens": int(call.option("tokens", 0))})


def settings(instances: list[dict[str, Any]], **scheduler: Any) -> Settings:
    return Settings.model_validate(
        {
            "routes": [
                {
                    "name": "rec",
                    "models": ["rec"],
                    "provider": "recorder",
                    "instances": instances,
                    "retry": {"max_attempts": 1},
                }
            ],
            "scheduler": {"poll_interval": 0.05, **scheduler},
        }
    )


@dataclass
class Rig:
    store: SqlStore
    gateway: Gateway
    make_scheduler: Callable[..., Scheduler]

    async def submit(self, key: ApiKey, text: str, priority: Priority = Priority.DEFAULT) -> str:
        task, _ = await self.gateway.submit(key, Submission("chat", "rec", text, {}, priority))
        return task.id

    async def wait_all(self, ids: list[str], timeout: float = 20) -> None:
        end = time.monotonic() + timeout
        for task_id in ids:
            while (t := await self.store.tasks.get(task_id)) is None or not t.terminal:
                assert time.monotonic() < end, f"task {task_id} did not end"
                await asyncio.sleep(0.02)
            assert t.status is Status.SUCCESS, t.error


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def rig_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[Settings], Rig]]:
    global RECORDER
    RECORDER = Recorder()
    if request.param == "postgresql":
        await reset_postgres()
    store = SqlStore(store_url(request.param, tmp_path))
    await store.open()
    schedulers: list[Scheduler] = []

    def make(conf: Settings) -> Rig:
        events = MemoryEvents()
        gateway = Gateway(conf, store, events)

        def make_scheduler(worker_id: str | None = None) -> Scheduler:
            files = Files(store, LocalBlobs(tmp_path / "files"))
            s = Scheduler(conf, store, events, files, worker_id=worker_id)
            schedulers.append(s)
            return s

        return Rig(store, gateway, make_scheduler)

    yield make
    for s in schedulers:
        await s.stop(grace=1)
    await store.close()


def key(name: str) -> ApiKey:
    return ApiKey(id=name, tenant="t", name=name, admin=False, created_at=0)


async def run_in_order(rig: Rig, ids: list[str]) -> list[str]:
    """Start the scheduler on a backlog and return the order in which inputs started."""
    scheduler = rig.make_scheduler()
    await scheduler.start()
    await rig.wait_all(ids)
    return [text for text, _ in RECORDER.started]


async def test_weighted_priorities_share_one_slot_six_three_one(rig_factory: Any) -> None:
    rig = rig_factory(settings([{"name": "one", "max_concurrency": 1}]))
    a = key("a")
    ids = []
    for prio in (Priority.LOW, Priority.DEFAULT, Priority.CRITICAL):
        ids += [await rig.submit(a, prio.label, prio) for _ in range(20)]
    order = await run_in_order(rig, ids)
    first = order[:20]
    assert (first.count("critical"), first.count("default"), first.count("low")) == (12, 6, 2)
    assert "low" in order[:10], "low priority must not starve"


async def test_strict_priorities_drain_critical_first(rig_factory: Any) -> None:
    rig = rig_factory(settings([{"name": "one", "max_concurrency": 1}], strict_priority=True))
    a = key("a")
    ids = [await rig.submit(a, "low", Priority.LOW) for _ in range(5)]
    ids += [await rig.submit(a, "critical", Priority.CRITICAL) for _ in range(5)]
    order = await run_in_order(rig, ids)
    assert order == ["critical"] * 5 + ["low"] * 5


async def test_one_keys_backlog_does_not_starve_another_key(rig_factory: Any) -> None:
    rig = rig_factory(settings([{"name": "one", "max_concurrency": 1}]))
    ids = [await rig.submit(key("flood"), f"flood-{i}") for i in range(200)]
    ids.append(await rig.submit(key("small"), "small"))
    scheduler = rig.make_scheduler()
    await scheduler.start()
    await rig.wait_all(ids[-1:])
    order = [text for text, _ in RECORDER.started]
    assert order.index("small") <= 2


async def test_capacity_is_never_exceeded_and_load_spreads_by_weight(rig_factory: Any) -> None:
    rig = rig_factory(
        settings(
            [
                {"name": "small", "max_concurrency": 2, "weight": 1},
                {"name": "big", "max_concurrency": 6, "weight": 3},
            ]
        )
    )
    RECORDER.gate = asyncio.Event()
    a = key("a")
    ids = [await rig.submit(a, f"t{i}") for i in range(40)]
    scheduler = rig.make_scheduler()
    await scheduler.start()
    for _ in range(100):
        if sum(RECORDER.in_flight.values()) == 8:
            break
        await asyncio.sleep(0.02)
    assert RECORDER.in_flight == {"small": 2, "big": 6}  # full, and no more than full
    pending = await rig.store.tasks.get(ids[-1])
    assert pending is not None and pending.status is Status.PENDING
    RECORDER.gate.set()
    await rig.wait_all(ids)
    assert RECORDER.peak == {"small": 2, "big": 6}


async def test_capacity_holds_across_schedulers_sharing_the_store(rig_factory: Any) -> None:
    """Three workers on one store: each would run 3 + 2 calls on its own, together they run
    no more than the instances' 3 + 2, and every task runs exactly once. (Without the
    store's count inside the claim, the peaks here reach 6 or more.)"""
    slow = {"latency_ms": 20}
    rig = rig_factory(
        settings(
            [
                {"name": "a", "max_concurrency": 3, "options": slow},
                {"name": "b", "max_concurrency": 2, "options": slow},
            ]
        )
    )
    ids = [await rig.submit(key("k"), f"t{i}") for i in range(60)]
    # worker ids of other hosts: the same process's ids would look like a dead earlier life
    schedulers = [rig.make_scheduler(f"host{n}:1:x") for n in range(3)]
    for s in schedulers:
        await s.start()
    await rig.wait_all(ids)
    assert RECORDER.peak == {"a": 3, "b": 2}
    assert sorted(text for text, _ in RECORDER.started) == sorted(f"t{i}" for i in range(60))


async def started_after(seconds: float) -> int:
    await asyncio.sleep(seconds)
    return len(RECORDER.started)


async def test_requests_per_minute_hold_across_schedulers(rig_factory: Any) -> None:
    rig = rig_factory(settings([{"name": "a", "max_concurrency": 8, "requests_per_minute": 5}]))
    ids = [await rig.submit(key("k"), f"t{i}") for i in range(12)]
    for n in range(2):
        await rig.make_scheduler(f"host{n}:1:x").start()
    assert await started_after(1.0) == 5  # a minute's worth at once, then one every 12 s
    waiting = [t for i in ids if (t := await rig.store.tasks.get(i)) and t.status is Status.PENDING]
    assert len(waiting) == 7


async def test_tokens_per_minute_stop_calls_once_spent(rig_factory: Any) -> None:
    """Each call uses 60 of the 100 tokens a minute: the first two start (the bucket is not
    empty before either), the third waits for the bucket to refill above zero."""
    inst = {"name": "a", "max_concurrency": 1, "tokens_per_minute": 100, "options": {"tokens": 60}}
    rig = rig_factory(settings([inst]))
    for i in range(4):
        await rig.submit(key("k"), f"t{i}")
    await rig.make_scheduler().start()
    assert await started_after(1.0) == 2


async def test_a_failing_instance_cools_down_and_is_probed(rig_factory: Any) -> None:
    conf = settings([{"name": "a", "max_concurrency": 4}, {"name": "b", "max_concurrency": 4}])
    rig = rig_factory(conf)
    scheduler = rig.make_scheduler()
    lane = scheduler.lanes["rec"]
    now = time.time()
    from taskgate import policy

    for _ in range(conf.routes[0].health.failure_threshold):
        policy.record_failure(lane.instances[0], conf.routes[0].health, now)
    assert lane.free(now) == 4  # only b's slots
    assert lane.free(now + conf.routes[0].health.cooldown) == 5  # b's four plus one probe of a


@register_provider("filer")
class FileProvider(Provider):
    async def run(self, call: Call) -> Result:
        return Result({"ok": True}, files=(OutputFile(b"\x89PNG...", "image/png", "x.png"),))


async def test_a_result_that_cannot_be_kept_fails_the_attempt(tmp_path: Path) -> None:
    conf = Settings.model_validate(
        {
            "routes": [
                {
                    "name": "f",
                    "models": ["f"],
                    "provider": "filer",
                    "instances": [{"name": "i"}],
                    "retry": {"max_attempts": 2, "backoff_base": 0.01},
                }
            ],
            "scheduler": {"poll_interval": 0.05},
        }
    )
    store = SqlStore(store_url("sqlite", tmp_path))
    await store.open()
    (tmp_path / "not-a-folder").write_text("")  # the blob root cannot be created
    events = MemoryEvents()
    scheduler = Scheduler(conf, store, events, Files(store, LocalBlobs(tmp_path / "not-a-folder")))
    try:
        await scheduler.start()
        task, _ = await Gateway(conf, store, events).submit(
            key("a"), Submission("image", "f", "x", {})
        )
        for _ in range(200):
            if (t := await store.tasks.get(task.id)) is not None and t.terminal:
                break
            await asyncio.sleep(0.02)
        assert t is not None and t.status is Status.FAILED
        assert t.error is not None and "could not be kept" in t.error["message"]
        assert [a.outcome for a in await store.tasks.history(task.id)] == ["retry", "failed"]
    finally:
        await scheduler.stop(grace=1)
        await store.close()
