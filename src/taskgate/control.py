"""What admins do to the queue, over the API (``api/admin.py``) and the CLI: run ended
tasks again, cancel many at once, pause and resume routes, see the routes and the worker
processes, and ask a worker to drain. Each decision is made here; the store writes it
(``store/control.py``), each task's change with an entry in its own log; events wake the
workers and waiters it concerns."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from taskgate.errors import BadRequest, Conflict, NotFound
from taskgate.events import Events
from taskgate.events.topics import WORKERS, announce_cancelled, announce_due, announce_queued
from taskgate.models import ApiKey, Priority, Task
from taskgate.routing import Routing
from taskgate.store import SqlStore, TaskFilter
from taskgate.store.control import RETRYABLE, Rerun, Selection, WorkerRecord
from taskgate.views import iso

LOST_AFTER = 15.0  # seconds without a heartbeat (three of them) before a worker is lost
LISTED_FOR = 3600.0  # workers seen in the last hour are listed


class Control:
    def __init__(self, store: SqlStore, events: Events, routing: Routing) -> None:
        self.store = store
        self.events = events
        self.routing = routing

    # --- tasks -------------------------------------------------------------------------------

    async def retry(self, key: ApiKey, task_id: str) -> Task:
        """Run one ended task again (409 if it has not ended, succeeded, or its model has
        no route now)."""
        task = await self.store.tasks.get(task_id, key.scope)
        if task is None:
            raise NotFound(f"no task {task_id!r}")
        if task.status not in RETRYABLE:
            raise Conflict(
                f"task {task_id} is {task.status.value}; only FAILED, TIMEOUT or CANCELLED "
                "tasks can be run again"
            )
        if self.rerun(task) is None:
            raise Conflict(f"model {task.model!r} of task {task_id} is served by no route now")
        done = await self._retry(key, Selection(TaskFilter(tenant=None), ids=(task.id,)))
        if not done:  # it changed meanwhile (run again by another admin)
            raise Conflict(f"task {task_id} changed meanwhile; read it again")
        return done[0]

    async def retry_where(self, key: ApiKey, sel: Selection) -> list[Task]:
        """Run again every ended task the selection takes (those whose model has no route
        now are left as they are)."""
        return await self._retry(key, self._checked(key, sel))

    async def _retry(self, key: ApiKey, sel: Selection) -> list[Task]:
        done = await self.store.control.retry(sel, self.rerun, key.id)
        await announce_queued(self.events, done)
        return done

    def rerun(self, task: Task) -> Rerun | None:
        """Where an ended task runs again and how many attempts it gets: the route now
        serving its model, and the attempts that route and its fallbacks allow."""
        try:
            route = self.routing.route_for(task.kind, task.model)
        except BadRequest:
            return None
        return Rerun(route.name, self.routing.attempt_budget(route))

    async def cancel_where(self, key: ApiKey, sel: Selection) -> list[Task]:
        """Cancel every task the selection takes that has not ended."""
        done = await self.store.control.cancel(self._checked(key, sel), key.id)
        await announce_cancelled(self.events, done)
        return done

    def _checked(self, key: ApiKey, sel: Selection) -> Selection:
        """A bulk selection, refused if it names no filter at all or an unknown route, and
        kept within the key's tenant."""
        f = sel.filter
        given = (f.statuses, f.kind, f.model, f.route, f.tenant, f.created_after, f.created_before)
        if sel.route is None and not any(v for v in given if v is not None):
            raise BadRequest(
                "name the tasks: give at least one filter (status, kind, model, route, "
                "tenant, created_after, created_before)"
            )
        for route in (sel.route, f.route):
            if route is not None:
                self.route(route)
        if key.scope is not None:
            sel = replace(sel, filter=replace(f, tenant=key.scope))
        return sel

    # --- routes ------------------------------------------------------------------------------

    def route(self, name: str) -> str:
        try:
            return self.routing.settings.route(name).name
        except KeyError:
            known = ", ".join(r.name for r in self.routing.settings.routes)
            raise NotFound(f"no route {name!r}; routes: {known}") from None

    async def pause(self, key: ApiKey, name: str, paused: bool) -> None:
        """Pause a route (its tasks are accepted and wait; running ones finish) or resume
        it (its waiting tasks start at once)."""
        await self.store.control.set_paused(self.route(name), paused, key.id)
        if not paused:  # wake the dispatchers of every lane of the route
            for priority in Priority:
                await announce_due(self.events, name, int(priority))

    # --- workers -----------------------------------------------------------------------------

    async def workers(self) -> list[dict[str, Any]]:
        now = time.time()
        return [worker_json(w, now) for w in await self.store.control.workers(now - LISTED_FOR)]

    async def drain(self, worker_id: str) -> dict[str, Any]:
        """Ask a worker process to drain, as SIGTERM does: it stops claiming, gives its
        running calls its grace period, hands back the rest and stops."""
        if not await self.store.control.request_drain(worker_id):
            raise NotFound(f"no running worker {worker_id!r}")
        await self.events.publish(WORKERS, {"drain": worker_id})
        return {"id": worker_id, "drain": True}


def worker_json(w: WorkerRecord, now: float) -> dict[str, Any]:
    if w.stopped_at is not None:
        state = "stopped"
    elif now - w.last_seen > LOST_AFTER:
        state = "lost"  # no heartbeat lately: killed, or cut off from the store
    else:
        state = "draining" if w.drain else "running"
    return {
        "id": w.id,
        "host": w.host,
        "pid": w.pid,
        "routes": w.routes,
        "in_flight": w.in_flight,
        "state": state,
        "started_at": iso(w.started_at),
        "last_seen": iso(w.last_seen),
    }
