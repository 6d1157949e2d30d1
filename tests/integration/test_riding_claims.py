"""Claims that ride on the write accepting a task (``Dispatcher.riding``): with a dispatcher
in the process and a free slot on the task's route, the task is claimed in the transaction
that accepts it, and starts without an event or a turn of the dispatch loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskgate.events.topics import queue_topic
from taskgate.models import Priority, Status
from taskgate.store.base import NewTask
from taskgate.submission import Submission
from tests.integration import test_scheduler
from tests.integration.test_scheduler import Rig, key, rig_factory, settings

__all__ = ["rig_factory"]  # the fixture, on both stores

A = key("a")


def published(rig: Rig) -> list[str]:
    """The topics the rig's gateway publishes to, from now on."""
    topics: list[str] = []
    publish = rig.gateway.events.publish

    async def spy(topic: str, message: Any) -> None:
        topics.append(topic)
        await publish(topic, message)

    rig.gateway.events.publish = spy  # type: ignore[method-assign]
    return topics


async def test_a_task_with_room_is_claimed_as_it_is_accepted(rig_factory: Any) -> None:
    rig = rig_factory(settings([{"name": "one", "max_concurrency": 2}]))
    scheduler = rig.make_scheduler()
    await scheduler.start()
    topics = published(rig)
    task, created = await rig.gateway.submit(A, _sub("hello"))
    assert created
    assert task.status is Status.PROCESSING
    assert (task.worker, task.attempts, task.instance) == (scheduler.worker_id, 1, "one")
    assert queue_topic("rec") not in topics  # nobody needs waking: it is already claimed
    await rig.wait_all([task.id])


async def test_a_task_without_room_waits_and_is_announced(rig_factory: Any) -> None:
    rig = rig_factory(settings([{"name": "one", "max_concurrency": 1}]))
    recorder = test_scheduler.RECORDER  # (the fixture made it anew)
    recorder.gate = asyncio.Event()
    scheduler = rig.make_scheduler()
    await scheduler.start()
    first, _ = await rig.gateway.submit(A, _sub("first"))
    assert first.status is Status.PROCESSING
    topics = published(rig)
    second, _ = await rig.gateway.submit(A, _sub("second"))
    assert second.status is Status.PENDING  # the one slot is taken
    assert queue_topic("rec") in topics
    recorder.gate.set()
    await rig.wait_all([first.id, second.id])
    assert [text for text, _ in recorder.started] == ["first", "second"]


async def test_a_paused_route_claims_nothing_on_accepting(rig_factory: Any) -> None:
    rig = rig_factory(settings([{"name": "one", "max_concurrency": 2}]))
    scheduler = rig.make_scheduler()
    await scheduler.start()
    await rig.store.control.set_paused("rec", True, "admin")
    task, _ = await rig.gateway.submit(A, _sub("held"))
    assert task.status is Status.PENDING
    await rig.store.control.set_paused("rec", False, "admin")
    scheduler.dispatcher.wake()  # (the resume endpoint announces the route's work)
    await rig.wait_all([task.id])


async def test_a_ride_whose_write_rolls_back_starts_nothing(rig_factory: Any) -> None:
    rig = rig_factory(settings([{"name": "one", "max_concurrency": 2}]))
    scheduler = rig.make_scheduler()  # not started: nothing else claims
    task, _ = await rig.gateway.submit(A, _sub("kept"))
    assert task.status is Status.PENDING  # no dispatcher runs: nothing rides
    lane = [("rec", Priority.DEFAULT)]

    def claim_then_fail(conn: Any, ride: Any) -> None:
        assert task.id in ride.claim(conn)
        raise RuntimeError("the write fails after the claim")

    with pytest.raises(RuntimeError):
        async with scheduler.dispatcher.riding(lane) as ride:
            await rig.store.db.write(claim_then_fail, ride)
    assert not scheduler.attempts.running
    assert (await rig.store.tasks.get(task.id)).status is Status.PENDING  # type: ignore[union-attr]

    async with scheduler.dispatcher.riding(lane) as ride:
        claimed = await rig.store.db.write(lambda conn: ride.claim(conn))
    assert list(claimed) == [task.id]
    assert list(scheduler.attempts.running) == [task.id]  # started once committed
    await rig.wait_all([task.id])


async def test_no_ride_without_room_or_once_stopped(rig_factory: Any) -> None:
    rig = rig_factory(settings([{"name": "one", "max_concurrency": 2}]))
    scheduler = rig.make_scheduler()
    async with scheduler.dispatcher.riding([("elsewhere", Priority.DEFAULT)]) as ride:
        assert ride is None  # no lane of this worker's
    scheduler.dispatcher.lanes["rec"].instances[0].in_flight = 2
    async with scheduler.dispatcher.riding([("rec", Priority.DEFAULT)]) as ride:
        assert ride is None  # no free slot
    scheduler.dispatcher.lanes["rec"].instances[0].in_flight = 0
    await scheduler.start()
    await scheduler.stop(grace=1)
    assert rig.store.tasks.riding is None  # a stopped dispatcher offers no rides


def _sub(text: str) -> Submission:
    return Submission("chat", "rec", text, {}, Priority.DEFAULT)


async def test_a_task_joining_an_empty_lane_is_stored_claimed(
    rig_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its row is written claimed by the insert (the claim takes it before it is stored),
    as the store's claim would have written it; a lane that holds tasks already is
    claimed in the store, in the same ride."""
    rig = rig_factory(settings([{"name": "one", "max_concurrency": 2}]))
    scheduler = rig.make_scheduler()  # not started: only rides claim
    low, _ = await rig.gateway.submit(A, Submission("chat", "rec", "low", {}, Priority.LOW))
    assert low.status is Status.PENDING  # no dispatcher rides yet
    rig.store.tasks.riding = scheduler.dispatcher.riding
    in_store: list[tuple[str, Priority]] = []
    take = rig.store.claims._take

    def spy(conn: Any, route: str, priority: Priority, *args: Any) -> Any:
        in_store.append((route, priority))
        return take(conn, route, priority, *args)

    monkeypatch.setattr(rig.store.claims, "_take", spy)
    task, _ = await rig.gateway.submit(A, _sub("new"))
    assert task.status is Status.PROCESSING
    assert ("rec", Priority.LOW) in in_store  # the waiting task, claimed in the store
    assert ("rec", Priority.DEFAULT) not in in_store  # the new one, before its insert
    stored = [await rig.store.tasks.get(t) for t in (task.id, low.id)]
    assert stored[0] == task  # as returned: written claimed
    for t in stored:
        assert t is not None and t.status is Status.PROCESSING
        assert (t.worker, t.attempts, t.instance) == (scheduler.worker_id, 1, "one")
        assert t.claimed_at is not None and t.lease_until is not None
        assert t.started_at == t.claimed_at == t.updated_at
        assert t.lease_until - t.claimed_at == pytest.approx(
            scheduler.dispatcher.conf.lease_seconds
        )
    assert sorted(scheduler.attempts.running) == sorted([task.id, low.id])
    await rig.wait_all([task.id, low.id])


async def test_a_task_joining_a_lane_with_waiting_tasks_queues_behind_them(
    rig_factory: Any,
) -> None:
    rig = rig_factory(settings([{"name": "one", "max_concurrency": 1}]))
    scheduler = rig.make_scheduler()  # not started: only rides claim
    ahead = await rig.submit(A, "ahead")  # waits: no dispatcher rides yet
    rig.store.tasks.riding = scheduler.dispatcher.riding
    late, _ = await rig.gateway.submit(A, _sub("late"))
    assert late.status is Status.PENDING  # the one slot went to the task ahead of it
    assert list(scheduler.attempts.running) == [ahead]


async def test_a_task_a_claim_fails_is_announced_to_its_waiters(rig_factory: Any) -> None:
    """A task pinned to an instance that has left its route fails in the claim that finds
    it: its waiters hear of it then, not at their next read of the store."""
    rig = rig_factory(settings([{"name": "one", "max_concurrency": 2}]))
    new = NewTask(
        "t", "a", "chat", "rec", "rec", Priority.DEFAULT, "x", {}, 1, pinned_instance="old"
    )
    task, _ = await rig.store.tasks.insert(new)  # before the worker reads its instances
    async with rig.gateway.events.subscribe(f"task:{task.id}") as heard:
        await rig.make_scheduler().start()
        message = await heard.get(timeout=30)
    assert message is not None and message["type"] == "finished"
    assert message["status"] == Status.FAILED.value
