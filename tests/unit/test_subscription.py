"""A subscription's queue: the types its reader waits for, and waiting for one; a loop's
nap between looks."""

from __future__ import annotations

import asyncio

import pytest

from taskgate.events.base import Subscription, nap


async def test_messages_of_types_not_waited_for_are_dropped_as_they_come() -> None:
    sub = Subscription("task:t1", only=frozenset({"finished"}))
    sub.put({"type": "started"})
    sub.put({"type": "progress"})
    sub.put({"type": "finished", "status": "SUCCESS"})
    assert await sub.get(0.01) == {"type": "finished", "status": "SUCCESS"}
    assert await sub.get(0.01) is None  # nothing else was kept


async def test_a_message_waiting_is_taken_at_once_and_none_comes_after_the_timeout() -> None:
    sub = Subscription("task:t1")
    sub.put({"type": "started"})
    assert await sub.get(0) == {"type": "started"}  # (no wait at all)
    assert await sub.get(0.01) is None


async def test_a_nap_ends_when_woken_or_after_its_time_and_clears_the_wake() -> None:
    wake = asyncio.Event()
    await nap(wake, 0.01)  # nobody woke it
    wake.set()
    await nap(wake, 30)  # returns at once
    assert not wake.is_set()


async def test_a_cancel_that_meets_a_wake_up_ends_the_nap() -> None:
    wake = asyncio.Event()
    napping = asyncio.create_task(nap(wake, 30))
    await asyncio.sleep(0)  # (it waits on the event now)
    wake.set()
    napping.cancel()  # in the same turn: asyncio.wait_for would have dropped it
    with pytest.raises(asyncio.CancelledError):
        await napping
