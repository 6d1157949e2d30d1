"""The messages taskgate publishes, in one place: ``task:{id}`` (a task's life, for waiters
and event streams), ``queue:{route}`` (work became due on a lane of the route: heard only by
the workers that serve it), ``cancel`` (stop a call),
``key_revoked`` (forget a key: revoked, or its limits changed), ``workers`` (an admin's
drain request), ``reload`` (read the config file again) and ``instances`` (a backend
instance was registered or removed: read them again; see ops/live.py)."""

from __future__ import annotations

from typing import Any

from taskgate.events.base import Events
from taskgate.models import Status, Task

KEY_REVOKED = "key_revoked"
WORKERS = "workers"  # {"drain": worker id}: an admin asked that worker to drain
RELOAD = "reload"
INSTANCES = "instances"


def queue_topic(route: str) -> str:
    """The topic of the work that becomes due on ``route``."""
    return f"queue:{route}"


async def announce_due(events: Events, route: str, priority: int) -> None:
    """Wake the dispatchers that serve ``route``: work became due on one of its lanes."""
    await events.publish(queue_topic(route), {"route": route, "priority": priority})


def task_event(task: Task, type_: str, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "task_id": task.id, "status": task.status.value, **extra}


async def announce_queued(events: Events, tasks: list[Task]) -> None:
    """Wake a dispatcher of each task's lane: work became due there (once per lane). A task
    already claimed (in the transaction that accepted it) needs no one woken."""
    due = (t for t in tasks if t.status is Status.PENDING)
    for route, priority in dict.fromkeys((t.route, int(t.priority)) for t in due):
        await announce_due(events, route, priority)


async def announce_cancelled(events: Events, tasks: list[Task]) -> None:
    """Stop each cancelled task's call on whichever worker runs it (and its backend job,
    even if no worker holds it), and wake its waiters."""
    for task in tasks:
        message: dict[str, Any] = {"task_id": task.id, "worker": task.worker}
        if task.provider_job:
            message.update(provider_job=task.provider_job, kind=task.kind, model=task.model)
        await events.publish("cancel", message)
        await events.publish(f"task:{task.id}", task_event(task, "finished"))


async def announce_revoked(events: Events, key_id: str) -> None:
    """Every gateway drops the key from its cache of verified keys."""
    await events.publish(KEY_REVOKED, {"key_id": key_id})


async def announce_key_changed(events: Events, key_id: str) -> None:
    """Every gateway drops the key from its cache, to read it (its limits) again."""
    await events.publish(KEY_REVOKED, {"key_id": key_id, "changed": True})
