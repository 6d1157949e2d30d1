"""The channel bookkeeping of events between processes (``events/broadcast.py``), on a
transport of the test's own: what a subscriber sees when the transport fails under it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskgate.events.broadcast import Broadcast
from taskgate.events.redis import RedisEvents


class Stalled(Broadcast):
    """A transport whose confirmations the test gives or takes away (``pending``)."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[asyncio.Future[None]] = []

    async def _listen(self) -> None:
        await asyncio.Event().wait()

    async def _hear(self, channel: str) -> None:
        self.pending.append(asyncio.get_running_loop().create_future())
        await self.pending[-1]

    async def _unhear(self, channel: str) -> None:
        pass

    async def _send(self, batch: list[tuple[str, str]]) -> None:
        pass

    async def _reset(self, what: str) -> None:
        pass


async def test_a_subscriber_outlives_a_confirmation_the_connection_s_end_cancelled() -> None:
    """The listener's end cancels the confirmations it was waiting for: the subscriber
    waiting on one goes on (the listener hears its channel once it reconnects); it must not
    be cancelled itself, or a worker's listener for its route's work would end for good."""
    events = Stalled()
    events.connected.set()
    entered = asyncio.Event()

    async def subscriber() -> None:
        async with events.subscribe("task:1"):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(subscriber())
    for _ in range(100):
        if events.pending:
            break
        await asyncio.sleep(0.01)
    events.pending[0].cancel()  # as the listening loop's end does
    await asyncio.wait_for(entered.wait(), 5)
    assert not task.done()
    task.cancel()


class FailingPubSub:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.fail = True

    async def subscribe(self, channel: str) -> None:
        if self.fail:
            raise ConnectionError("connection lost")
        self.sent.append(channel)


async def test_a_subscribe_that_failed_is_sent_again_by_the_next_follower() -> None:
    events = RedisEvents("redis://127.0.0.1:6379/3")
    pubsub: Any = FailingPubSub()
    events._pubsub = pubsub
    with pytest.raises(ConnectionError):
        await events._hear("taskgate_tasks")
    assert not events._confirming  # nothing left waiting for a confirmation never asked for
    pubsub.fail = False
    hearing = asyncio.create_task(events._hear("taskgate_tasks"))
    for _ in range(100):
        if pubsub.sent:
            break
        await asyncio.sleep(0.01)
    assert pubsub.sent == ["taskgate_tasks:3"]  # sent again, with the db's suffix
    events._confirmed(b"taskgate_tasks:3")  # as the listening loop does when it reads it
    await asyncio.wait_for(hearing, 5)
