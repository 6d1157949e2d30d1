"""Admins' actions on the queue (admin keys only): run ended tasks again, cancel or retry
many at once by the listing's filters, pause and resume routes, and see and drain the
worker processes. The decisions are ``taskgate.control``'s; ``taskgate`` CLI commands make
the same calls (``cli/admin.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from taskgate.api import schemas as out
from taskgate.api.auth import admin, gateway
from taskgate.api.native import Body
from taskgate.api.responses import JSON
from taskgate.api.schemas import declare
from taskgate.api.strict import StrictRoute
from taskgate.gateway import Gateway
from taskgate.models import ApiKey, Status
from taskgate.ops.endpoints import OpsEndpoints
from taskgate.store import TaskFilter
from taskgate.store.control import Selection

router = APIRouter(route_class=StrictRoute, responses=out.ERRORS)


class SelectionIn(Body):
    """Which tasks a bulk action takes: the task listing's filters (at least one)."""

    status: list[Status] = Field(default_factory=list)
    kind: str | None = Field(None, max_length=32)
    model: str | None = Field(None, max_length=200)
    route: str | None = Field(None, max_length=100)
    tenant: str | None = Field(None, max_length=64)
    created_after: datetime | None = None
    created_before: datetime | None = None

    def selection(self) -> Selection:
        f = TaskFilter(
            tenant=self.tenant,
            statuses=tuple(self.status),
            kind=self.kind,
            model=self.model,
            created_after=self.created_after.timestamp() if self.created_after else None,
            created_before=self.created_before.timestamp() if self.created_before else None,
        )
        return Selection(f, route=self.route)


@router.post("/v1/tasks/retry", tags=["admin"], responses=declare(200, out.Retried, "How many"))
async def retry_tasks(
    body: SelectionIn, key: ApiKey = Depends(admin), gw: Gateway = Depends(gateway)
) -> JSON:
    """Run again every FAILED, TIMEOUT or CANCELLED task the filters take (``status`` narrows
    them), each under its id with a fresh attempt budget. Answers how many."""
    done = await gw.control.retry_where(key, body.selection())
    return JSON({"retried": len(done)})


@router.post("/v1/tasks/cancel", tags=["admin"], responses=declare(200, out.Cancelled, "How many"))
async def cancel_tasks(
    body: SelectionIn, key: ApiKey = Depends(admin), gw: Gateway = Depends(gateway)
) -> JSON:
    """Cancel every waiting or running task the filters take (running calls are stopped).
    Answers how many (the Volcengine AI Server's queue clearing)."""
    done = await gw.control.cancel_where(key, body.selection())
    return JSON({"cancelled": len(done)})


@router.post(
    "/v1/tasks/{task_id}/retry", tags=["admin"], responses=declare(200, out.TaskView, "The task")
)
async def retry_task(
    task_id: str, key: ApiKey = Depends(admin), gw: Gateway = Depends(gateway)
) -> JSON:
    """Run a FAILED, TIMEOUT or CANCELLED task again under the same id, with a fresh
    attempt budget; its earlier attempts stay in its history. 409 for any other status."""
    task = await gw.control.retry(key, task_id)
    return JSON(await gw.view(task))


@router.get("/v1/routes", tags=["admin"], responses=declare(200, out.RouteList, "The routes"))
async def list_routes(request: Request, _: ApiKey = Depends(admin)) -> JSON:
    """Each route: paused or not, tasks waiting and running, capacity, and its instances
    (calls in flight, capacity, rate allowance, health as this process sees it)."""
    ops: OpsEndpoints = request.app.state.ops
    return JSON({"data": await ops.route_states()})


async def _route(request: Request, name: str) -> dict[str, Any]:
    ops: OpsEndpoints = request.app.state.ops
    return next(r for r in await ops.route_states() if r["name"] == name)


@router.post(
    "/v1/routes/{name}/pause", tags=["admin"], responses=declare(200, out.RouteState, "The route")
)
async def pause_route(
    name: str, request: Request, key: ApiKey = Depends(admin), gw: Gateway = Depends(gateway)
) -> JSON:
    """Pause a route: its tasks are still accepted and wait, no worker starts any, and the
    running ones finish."""
    await gw.control.pause(key, name, paused=True)
    return JSON(await _route(request, name))


@router.post(
    "/v1/routes/{name}/resume", tags=["admin"], responses=declare(200, out.RouteState, "The route")
)
async def resume_route(
    name: str, request: Request, key: ApiKey = Depends(admin), gw: Gateway = Depends(gateway)
) -> JSON:
    """Resume a paused route: its waiting tasks start."""
    await gw.control.pause(key, name, paused=False)
    return JSON(await _route(request, name))


@router.get(
    "/v1/workers", tags=["admin"], responses=declare(200, out.WorkerList, "The worker processes")
)
async def list_workers(_: ApiKey = Depends(admin), gw: Gateway = Depends(gateway)) -> JSON:
    """The worker processes seen in the last hour (``serve`` and ``worker``): id, host, pid,
    routes, calls in flight, state (running, draining, stopped, lost), last heartbeat."""
    return JSON({"data": await gw.control.workers()})


@router.post(
    "/v1/workers/{worker_id}/drain", tags=["admin"], responses=declare(200, out.Drained, "Asked")
)
async def drain_worker(
    worker_id: str, _: ApiKey = Depends(admin), gw: Gateway = Depends(gateway)
) -> JSON:
    """Drain a worker as SIGTERM would: it stops claiming, gives its running calls its
    grace period, hands back the rest and stops (``taskgate serve`` keeps its API up)."""
    return JSON(await gw.control.drain(worker_id))
