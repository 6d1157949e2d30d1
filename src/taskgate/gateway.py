"""What every API dialect does with tasks: accept, read, wait, cancel, list, always within the
caller's tenant. Routers (native, and the seed and OpenAI dialects) translate their shapes to
these calls; none of them reads or writes tasks, or talks to the scheduler, any other way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import orjson

from taskgate.config import Route, Settings
from taskgate.errors import BadRequest, NotFound
from taskgate.events import Events
from taskgate.models import ApiKey, Attempt, Priority, Status, Task
from taskgate.providers import lookup
from taskgate.store import NewTask, SqlStore, TaskFilter

# How often a waiter re-reads the store even without an event (events are hints).
WAIT_REREAD_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Submission:
    kind: str
    model: str
    input: Any
    params: dict[str, Any]
    priority: Priority = Priority.DEFAULT
    timeout: float | None = None  # run timeout, seconds
    queue_timeout: float | None = None  # longest wait in the queue, seconds
    idempotency_key: str | None = None


def scope(key: ApiKey) -> str | None:
    """The tenant a key may see: its own; admin keys see every tenant."""
    return None if key.admin else key.tenant


class Gateway:
    def __init__(self, settings: Settings, store: SqlStore, events: Events) -> None:
        self.settings = settings
        self.store = store
        self.events = events
        # the configured kinds, and those each route (or else its provider) declares serving
        declared = (
            r.kinds if r.kinds is not None else lookup(r.provider).kinds or ()
            for r in settings.routes
        )
        self.kinds = sorted(set(settings.kinds).union(*declared))

    # --- accepting -----------------------------------------------------------------------

    def route_for(self, kind: str, model: str) -> Route:
        if kind not in self.kinds:
            raise BadRequest(
                f"unknown kind {kind!r}; known kinds: {', '.join(self.kinds)}",
                field="kind",
            )
        route = self.settings.resolve(model)
        if route is None:
            raise BadRequest(f"unknown model {model!r}: no route serves it", field="model")
        served = route.kinds if route.kinds is not None else lookup(route.provider).kinds
        if served is not None and kind not in served:
            raise BadRequest(
                f"model {model!r} (route {route.name!r}) does not serve kind {kind!r}", field="kind"
            )
        return route

    def attempt_budget(self, route: Route) -> int:
        """Attempts over the route and every fallback it may reach (each counted once)."""
        seen: list[Route] = []
        todo = [route]
        while todo:
            r = todo.pop()
            if r not in seen:
                seen.append(r)
                todo.extend(self.settings.route(f) for f in r.fallbacks)
        return sum(r.retry.max_attempts for r in seen)

    async def submit(self, key: ApiKey, sub: Submission) -> tuple[Task, bool]:
        """Accept a task durably. Returns (task, created); created is False on an idempotent
        replay of an earlier submission with the same key and body."""
        route = self.route_for(sub.kind, sub.model)
        try:
            orjson.dumps([sub.input, sub.params])
        except TypeError as exc:  # e.g. an integer beyond 64 bits: the store could not keep it
            raise BadRequest(f"input and params must be storable JSON: {exc}") from None
        if sub.idempotency_key is not None and not 0 < len(sub.idempotency_key) <= 200:
            raise BadRequest(
                "idempotency key must have 1 to 200 characters", field="idempotency_key"
            )
        now = time.time()
        new = NewTask(
            tenant=key.tenant,
            api_key_id=key.id,
            kind=sub.kind,
            model=sub.model,
            route=route.name,
            priority=sub.priority,
            input=sub.input,
            params=sub.params,
            max_attempts=self.attempt_budget(route),
            run_timeout=sub.timeout,
            deadline=now + sub.queue_timeout if sub.queue_timeout else None,
            idempotency_key=sub.idempotency_key,
            request_hash=_request_hash(sub) if sub.idempotency_key else None,
        )
        task, created = await self.store.insert(new)
        if created:
            await self.events.publish(
                "queue", {"route": task.route, "priority": int(task.priority)}
            )
        return task, created

    # --- reading ---------------------------------------------------------------------------

    async def get(self, key: ApiKey, task_id: str) -> Task:
        task = await self.store.get(task_id, scope(key))
        if task is None:
            raise NotFound(f"no task {task_id!r}")
        return task

    async def view(self, task: Task, *, history: bool = True) -> dict[str, Any]:
        """The task as the native API shows it."""
        out = task_json(task)
        if task.status is Status.PENDING:
            out["position"] = await self.store.position(task)
        if history:
            out["history"] = [attempt_json(a) for a in await self.store.history(task.id)]
        return out

    async def wait(self, key: ApiKey, task_id: str, timeout: float) -> Task:
        """The task once it has ended, or as it is after ``timeout`` seconds."""
        task = await self.get(key, task_id)
        if task.terminal or timeout <= 0:
            return task
        end = time.monotonic() + timeout
        async with self.events.subscribe(f"task:{task_id}") as sub:
            task = await self.get(key, task_id)  # it may have ended before we subscribed
            while not task.terminal:
                left = end - time.monotonic()
                if left <= 0:
                    break
                message = await sub.get(min(left, WAIT_REREAD_SECONDS))
                if message is None or message.get("type") in ("finished", "retrying"):
                    task = await self.get(key, task_id)
        return task

    async def cancel(self, key: ApiKey, task_id: str) -> Task:
        task = await self.store.cancel(task_id, scope(key))
        if task is None:
            raise NotFound(f"no task {task_id!r}")
        if task.status is Status.CANCELLED:  # stop the call, on whichever worker runs it
            message: dict[str, Any] = {"task_id": task.id, "worker": task.worker}
            if task.provider_job:  # a backend job to cancel, even if no worker holds it
                message.update(provider_job=task.provider_job, kind=task.kind, model=task.model)
            await self.events.publish("cancel", message)
        await self.events.publish(
            f"task:{task.id}", {"type": "finished", "task_id": task.id, "status": task.status.value}
        )
        return task

    async def list_tasks(self, key: ApiKey, f: TaskFilter) -> list[Task]:
        return await self.store.list_tasks(dataclasses.replace(f, tenant=scope(key)))


def _request_hash(sub: Submission) -> str:
    body = [sub.kind, sub.model, sub.input, sub.params, int(sub.priority), sub.timeout]
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def task_json(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "status": task.status.value,
        "kind": task.kind,
        "model": task.model,
        "route": task.route,
        "priority": task.priority.label,
        "input": task.input,
        "params": task.params,
        "result": task.result,
        "error": task.error,
        "provider_job": _job_json(task.provider_job),
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "idempotency_key": task.idempotency_key,
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
        "deadline": iso(task.deadline),
    }


def _job_json(job: dict[str, Any] | None) -> dict[str, Any] | None:
    """The backend's job as clients see it: its id, where and when it was submitted."""
    if not job:
        return None
    return {
        "id": job.get("id"),
        "route": job.get("route"),
        "instance": job.get("instance"),
        "submitted_at": iso(job.get("submitted_at")),
    }


def attempt_json(a: Attempt) -> dict[str, Any]:
    out = a.as_dict()
    del out["task_id"]
    out["started_at"], out["ended_at"] = iso(a.started_at), iso(a.ended_at)
    return out
