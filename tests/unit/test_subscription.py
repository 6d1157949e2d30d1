"""A subscription's queue: the types its reader waits for, and waiting for one."""

from __future__ import annotations

from taskgate.events.base import Subscription


async def test_messages_of_types_not_waited_for_are_dropped_as_they_come() -> None:
    sub = Subscription("task:t1")
    sub.only = frozenset({"finished"})
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
