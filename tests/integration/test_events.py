"""Events between processes on the real PostgreSQL (LISTEN/NOTIFY) and Redis (pub/sub): two
Events objects stand for two processes."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from taskgate import events
from taskgate.events import Events, MemoryEvents
from taskgate.events.broadcast import Broadcast
from taskgate.events.postgres import PostgresEvents
from taskgate.events.redis import RedisEvents
from tests.conftest import PG_URL, REDIS_URL, drop_postgres_connections


@dataclasses.dataclass
class Ended:  # as the in-process ``ended`` Task: orjson would otherwise send it in full
    result: str


def make(kind: str) -> Broadcast:
    return PostgresEvents(PG_URL) if kind == "postgresql" else RedisEvents(REDIS_URL)


async def opened(kind: str) -> Broadcast:
    """A process's events, listening."""
    events = make(kind)
    await events.open()
    await asyncio.wait_for(events.connected.wait(), 10)
    return events


@pytest.fixture(
    params=[
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Broadcast, Broadcast]]:
    """Two processes' events, both listening."""
    a, b = await opened(request.param), await opened(request.param)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_a_message_reaches_the_other_process_and_the_publishers_own_once(
    pair: tuple[Broadcast, Broadcast],
) -> None:
    a, b = pair
    async with a.subscribe("task:1") as mine, b.subscribe("task:1") as theirs:
        await a.publish("task:1", {"type": "progress", "data": {"delta": "hi"}})
        assert await theirs.get(5) == {"type": "progress", "data": {"delta": "hi"}}
        assert await mine.get(5) == {"type": "progress", "data": {"delta": "hi"}}
        assert await mine.get(0.3) is None  # its own message, back from the transport, is dropped


async def test_equal_messages_in_a_row_all_arrive_in_order(
    pair: tuple[Broadcast, Broadcast],
) -> None:
    a, b = pair
    async with b.subscribe("task:2") as sub:
        for d in ["x", "x", "y", "x"]:
            await a.publish("task:2", {"type": "progress", "data": d})
        got = [await sub.get(5) for _ in range(4)]
    assert [m and m["data"] for m in got] == ["x", "x", "y", "x"]


async def test_only_json_crosses_and_other_topics_stay_away(
    pair: tuple[Broadcast, Broadcast],
) -> None:
    a, b = pair
    async with b.subscribe("task:3") as sub, b.subscribe("task:other") as other:
        await a.publish("task:3", {"type": "finished", "ended": Ended("big" * 1000)})
        assert await sub.get(5) == {"type": "finished", "ended": None}  # a dataclass too
        assert await other.get(0.3) is None


@pytest.mark.postgres
async def test_a_message_too_big_for_notify_still_says_which_task_changed() -> None:
    a, b = make("postgresql"), make("postgresql")
    for e in (a, b):
        await e.open()
        await asyncio.wait_for(e.connected.wait(), 10)
    try:
        async with b.subscribe("task:4") as sub:
            big = {"type": "progress", "task_id": "4", "status": "PROCESSING", "data": "x" * 9000}
            await a.publish("task:4", big)
            got = await sub.get(5)
        assert got == {
            "type": "progress",
            "task_id": "4",
            "status": "PROCESSING",
            "truncated": True,
        }
    finally:
        await a.close()
        await b.close()


async def _kill_listeners(kind: str) -> None:
    """Cut every listening connection from the server's side, as a restart would."""
    if kind == "postgresql":
        await drop_postgres_connections()
    else:  # only those on this test's db: other workers' listeners must stay up
        client = aioredis.from_url(REDIS_URL)
        try:
            db = str(client.connection_pool.connection_kwargs.get("db", 0))
            for listener in await client.client_list(_type="pubsub"):
                if listener["db"] == db:
                    await client.client_kill_filter(_id=listener["id"])
        finally:
            await client.aclose()


@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ],
)
async def test_listeners_reconnect_after_the_server_drops_them(kind: str) -> None:
    a, b = make(kind), make(kind)
    for e in (a, b):
        await e.open()
        await asyncio.wait_for(e.connected.wait(), 10)
    try:
        async with b.subscribe("task:5") as sub:
            await _kill_listeners(kind)
            got = None
            for _ in range(100):  # messages sent while it reconnects are lost: keep sending
                await a.publish("task:5", {"type": "ping"})
                if (got := await sub.get(0.2)) is not None:
                    break
            assert got == {"type": "ping"}
    finally:
        await a.close()
        await b.close()


@pytest.mark.redis
async def test_redis_events_on_another_db_number_stay_apart() -> None:
    """Pub/sub channels are server-wide: the channel names the db, or two deployments (or
    two test workers) on one Redis server would hear each other."""
    db = int(aioredis.ConnectionPool.from_url(REDIS_URL).connection_kwargs.get("db", 0))
    other = REDIS_URL.rsplit("/", 1)[0] + f"/{(db + 8) % 16}"
    a, near, far = RedisEvents(REDIS_URL), RedisEvents(REDIS_URL), RedisEvents(other)
    for e in (a, near, far):
        await e.open()
        await asyncio.wait_for(e.connected.wait(), 10)
    try:
        async with near.subscribe("task:6") as same, far.subscribe("task:6") as apart:
            await a.publish("task:6", {"type": "ping"})
            assert await same.get(5) == {"type": "ping"}
            assert await apart.get(0.3) is None
    finally:
        for e in (a, near, far):
            await e.close()


def test_from_url_picks_the_transport() -> None:
    assert isinstance(events.from_url(None, "sqlite:///x.db"), MemoryEvents)
    assert isinstance(events.from_url(None, PG_URL), PostgresEvents)
    assert isinstance(events.from_url("redis://localhost:6379/0", PG_URL), RedisEvents)
    assert type(events.from_url("memory://", PG_URL)) is MemoryEvents
    with pytest.raises(ValueError, match="unsupported events URL"):
        events.from_url("amqp://x")


async def test_in_process_events_keep_extras() -> None:
    bus: Events = MemoryEvents()
    marker = object()
    async with bus.subscribe("t") as sub:
        await bus.publish("t", {"ended": marker})
        got = await sub.get(1)
    assert got is not None and got["ended"] is marker
