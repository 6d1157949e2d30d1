"""What the scheduler tells the rest of the system about its tasks, over the events: a task
started, made progress, will be retried or has ended (and a first-wins batch's winner
cancels the rest of its batch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskgate.events import Events
from taskgate.events.topics import announce_cancelled, announce_queued, task_event
from taskgate.models import Status, Task
from taskgate.store import SqlStore


class Announcer:
    def __init__(self, store: SqlStore, events: Events) -> None:
        self.store = store
        self.events = events

    async def publish(self, task: Task, type_: str, **extra: Any) -> None:
        await self.events.publish(f"task:{task.id}", task_event(task, type_, **extra))

    async def announce(self, task: Task) -> None:
        """Tell waiters about a task's new state; put retried tasks back on the queue."""
        if task.status is Status.PENDING:
            await self.publish(
                task,
                "retrying",
                run_after=task.run_after,
                route=task.route,
                attempt=task.attempts,  # the attempt that ended, and how
                error=task.error,
            )
            await announce_queued(self.events, [task])
        else:  # in-process waiters take the ended task from the event: no read of the store
            await self.publish(task, "finished", ended=task)
            if task.status is Status.SUCCESS and task.batch_id is not None:
                await self._first_wins(task)

    async def announce_all(self, tasks: Sequence[Task]) -> None:
        for task in tasks:
            await self.announce(task)

    async def _first_wins(self, task: Task) -> None:
        """The first success of a first-wins batch cancels the rest of it."""
        if task.batch_id is not None:
            cancelled = await self.store.batches.cancel(task.batch_id, winner=task.id)
            await announce_cancelled(self.events, cancelled)
