"""Events wake waiters: a client long-polling a task, an SSE stream, the scheduler when a task
arrives, the worker holding a task that was cancelled. They are hints, never the truth: every
listener re-reads the store, and pollers at a bounded interval finish the job if an event is lost.

Topics used: ``task:{id}`` (status, position and progress of one task), ``queue:{route}`` (a
task became claimable on the route), ``cancel`` (a running task was cancelled),
``key_revoked`` (an API key was revoked: gateways drop it from their caches), ``reload``
(every process reads its config file again) and ``instances`` (a backend instance was
registered or removed).

Messages are JSON objects, except one shortcut: a ``finished`` event published in-process
carries the ended :class:`~taskgate.models.Task` under ``ended``, which saves each waiter a
read of the store. A transport between processes drops what is not JSON.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

Message = dict[str, Any]


async def nap(wake: asyncio.Event, seconds: float) -> None:
    """A loop's wait between looks: until ``wake`` is set or ``seconds`` pass; then ``wake``
    is cleared. Under ``asyncio.timeout``, not ``wait_for``: Python 3.11's ``wait_for``
    returns the wake-up and drops a cancel that comes in the same turn of the event loop,
    and the loop never stops."""
    try:
        async with asyncio.timeout(seconds):
            await wake.wait()
    except TimeoutError:
        pass
    wake.clear()


class Subscription:
    """Messages of one topic, buffered; the oldest are dropped if a slow reader falls behind."""

    def __init__(self, topic: str, only: frozenset[str] | None = None, maxsize: int = 1000) -> None:
        self.topic = topic
        self._queue: asyncio.Queue[Message] = asyncio.Queue(maxsize)
        # the types of message the reader waits for (None: all); others are dropped as they
        # come, rather than waking it to be skipped
        self.only = only

    def put(self, message: Message) -> None:
        if self.only is not None and message.get("type") not in self.only:
            return
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(message)

    async def get(self, timeout: float | None = None) -> Message | None:
        """The next message, or None if none came within ``timeout`` seconds."""
        if not self._queue.empty():
            return self._queue.get_nowait()
        try:  # (not wait_for: it wraps the get in a task of its own, a turn of the loop more)
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        except TimeoutError:
            return None


class Events(abc.ABC):
    @abc.abstractmethod
    async def publish(self, topic: str, message: Message) -> None: ...

    @abc.abstractmethod
    def _add(self, sub: Subscription) -> None: ...

    @abc.abstractmethod
    def _remove(self, sub: Subscription) -> None: ...

    @asynccontextmanager
    async def subscribe(
        self, topic: str, only: frozenset[str] | None = None
    ) -> AsyncIterator[Subscription]:
        """Messages of ``topic`` from now until the block ends; with ``only``, just the
        messages whose ``type`` is one of those."""
        sub = Subscription(topic, only)
        self._add(sub)
        try:
            yield sub
        finally:
            self._remove(sub)

    def listening(self) -> bool:
        """Whether messages from other processes reach this one now (in-process: always)."""
        return True

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect (a transport between processes); in-process events need nothing."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass
