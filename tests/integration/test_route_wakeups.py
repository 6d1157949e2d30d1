"""Only the workers that serve a route hear its work, on the real PostgreSQL (LISTEN/NOTIFY)
and Redis (pub/sub): a worker whose lanes do not serve route R never receives R's
``queue:{route}`` announcements (nor any process that waits on no task the task events);
one that gains R on a reload hears them from then on; and a channel no subscriber needs
any more stops being heard."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from taskgate.config import Settings
from taskgate.events import MemoryEvents, broadcast
from taskgate.events import postgres as postgres_events
from taskgate.events import redis as redis_events
from taskgate.events.broadcast import Broadcast
from taskgate.events.postgres import PostgresEvents
from taskgate.events.topics import RELOAD, announce_due, queue_topic
from taskgate.files import Files, LocalBlobs
from taskgate.gateway import Gateway
from taskgate.models import ApiKey, Priority, Status
from taskgate.ops.reload import diff
from taskgate.scheduling import Scheduler
from taskgate.store import SqlStore
from taskgate.submission import Submission
from tests.conftest import REDIS_URL
from tests.integration.test_events import opened, pair

__all__ = ["pair"]  # the fixture: two processes' events, on both transports

KEY = ApiKey(id="k", tenant="t", name="k", admin=False, created_at=0)


class Heard:
    """The topics of the messages one process received from another (``sender``: on a
    Redis shared with other test runs, messages of theirs may come too)."""

    def __init__(self, events: Broadcast, sender: Broadcast) -> None:
        self.topics: list[str] = []
        received = events._received

        def spy(payload: str | bytes) -> None:
            envelope = orjson.loads(payload)
            if envelope["o"] == sender.origin:
                self.topics.append(envelope["t"])
            received(payload)

        events._received = spy  # type: ignore[method-assign]

    async def until(self, found: Callable[[], bool], send: Callable[[], Any]) -> None:
        """Send (again and again: a subscription may be on its way) until ``found``."""
        for _ in range(200):
            await send()
            await asyncio.sleep(0.05)
            if found():
                return
        raise AssertionError(f"never heard it; heard {self.topics}")


def settings(*routes: str) -> Settings:
    return Settings.model_validate(
        {
            "routes": [
                {"name": r, "models": [r], "provider": "mock", "instances": [{"name": "i"}]}
                for r in routes
            ],
            "scheduler": {"poll_interval": 3600},
        }
    )


async def test_a_worker_hears_the_work_of_its_routes_only_and_of_a_route_a_reload_adds(
    pair: tuple[Broadcast, Broadcast], tmp_path: Path
) -> None:
    events, api = pair
    store = SqlStore(f"sqlite:///{tmp_path}/taskgate.db")
    await store.open()
    scheduler = Scheduler(
        settings("a"), store, events, Files(store, LocalBlobs(tmp_path / "files"))
    )
    due: list[str] = []
    scheduler.dispatcher.due = lambda message: due.append(message["route"])  # type: ignore[method-assign]
    heard = Heard(events, api)
    await scheduler.start()
    try:

        async def announce_b_then_a() -> None:
            await announce_due(api, "b", 1)  # sent first: it would arrive first
            await announce_due(api, "a", 1)

        await heard.until(lambda: "a" in due, announce_b_then_a)
        assert queue_topic("b") not in heard.topics and "b" not in due

        # a reload adds route b to this worker's lanes: its work is heard from then on
        wider = settings("a", "b")
        await scheduler.apply(wider, diff(scheduler.settings, wider))
        await heard.until(lambda: "b" in due, lambda: announce_due(api, "b", 1))
    finally:
        await scheduler.stop(grace=1)
        await store.close()
    # nor did the worker receive any task's events (it waits on none)
    assert not [t for t in heard.topics if t.startswith("task:")]


async def test_a_channel_no_subscriber_needs_is_no_longer_heard(
    pair: tuple[Broadcast, Broadcast], monkeypatch: pytest.MonkeyPatch
) -> None:
    listener, sender = pair
    heard = Heard(listener, sender)
    async with listener.subscribe("task:1") as sub:
        await sender.publish("task:1", {"type": "progress"})
        assert await sub.get(10) == {"type": "progress"}  # heard once subscribed
    monkeypatch.setattr(broadcast, "LINGER", 0.0)
    await listener._drop_idle()  # what the listening loop does now and then

    async def task_then_reload() -> None:
        await sender.publish("task:1", {"type": "late"})  # sent first: it would arrive first
        await sender.publish(RELOAD, {"origin": "elsewhere"})

    await heard.until(lambda: RELOAD in heard.topics, task_then_reload)
    assert heard.topics.count("task:1") == 1  # the one heard while subscribed


@pytest.mark.redis
async def test_redis_drops_an_idle_channel_while_messages_keep_coming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The listening loop looks for idle channels every TICK even when a message arrives
    more often than that (its read then never comes back empty)."""
    monkeypatch.setattr(redis_events, "TICK", 0.1)
    monkeypatch.setattr(broadcast, "LINGER", 0.0)
    listener, sender = await opened("redis"), await opened("redis")
    client = aioredis.from_url(REDIS_URL)
    try:
        async with listener.subscribe("task:1"):
            pass  # heard, and idle from now on
        wire = broadcast.TASKS_CHANNEL + listener._suffix

        async def subscribed() -> int:
            return int(dict(await client.pubsub_numsub(wire))[wire.encode()])

        end = time.monotonic() + 10
        while await subscribed():
            assert time.monotonic() < end, "the idle channel was never dropped"
            await sender.publish("noise", {})  # the general channel, every 20 ms
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()
        await listener.close()
        await sender.close()


@pytest.mark.postgres
async def test_a_listen_that_gets_no_answer_fails_within_the_keepalive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """LISTEN, UNLISTEN and the keepalive share the listening connection one at a time,
    each bounded: one stuck (a network gone silent) fails the next, and the loop
    reconnects, rather than every follower waiting on it for good."""
    monkeypatch.setattr(postgres_events, "KEEPALIVE", 0.2)
    events = await opened("postgresql")
    assert isinstance(events, PostgresEvents)
    try:
        async with events._using_listener:  # as a command that never returns would
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(events._hear("taskgate_tasks"), 10)
            assert time.monotonic() - started < 5
    finally:
        await events.close()


async def test_work_queued_before_a_route_is_heard_is_claimed_once_it_is(
    tmp_path: Path,
) -> None:
    """A route's queue channel is heard a moment after the worker starts serving it (a
    reload, or its listener starting again): work announced before that moment was not
    heard, so once it is, the dispatcher looks at every lane of the route again."""
    store = SqlStore(f"sqlite:///{tmp_path}/taskgate.db")
    await store.open()
    conf = settings("a")
    scheduler = Scheduler(conf, store, MemoryEvents(), Files(store, LocalBlobs(tmp_path / "f")))
    await scheduler.start()
    try:
        lane = scheduler.dispatcher.lanes["a"]
        for _ in range(500):  # its first look found nothing: no lane of it is looked at again
            if lane.dry.issuperset(Priority):
                break
            await asyncio.sleep(0.01)
        assert lane.dry.issuperset(Priority)
        store.tasks.riding = None  # accepted elsewhere: another process, whose
        elsewhere = Gateway(conf, store, MemoryEvents())  # announcement this one never hears
        task, _ = await elsewhere.submit(KEY, Submission("chat", "a", "hi", {}, Priority.LOW))
        assert task.status is Status.PENDING
        scheduler._hearing.pop("a").cancel()  # its listener starts again, as after a reload
        scheduler._hear_lanes()
        ended = await elsewhere.wait(KEY, task.id, 20)
        assert ended.status is Status.SUCCESS
    finally:
        await scheduler.stop(grace=1)
        await store.close()
