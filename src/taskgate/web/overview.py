"""The overview (admin keys): per route what waits and runs, the oldest wait, whether it is
paused and a chart of what ended and failed per minute over the last hour; per instance its
state, calls in flight against capacity and rate allowance; the worker processes. The
cluster's part refreshes itself every few seconds (htmx), from the same reads as
``GET /v1/routes``, ``GET /v1/stats`` and ``GET /v1/workers``."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from taskgate.ops.endpoints import OpsEndpoints
from taskgate.ops.stats import cluster_timeline
from taskgate.store.sessions import Session
from taskgate.web.render import page
from taskgate.web.session import admin_viewer, viewer

router = APIRouter(include_in_schema=False, tags=["ui"])

CHART_MINUTES = 60
CHART_W, CHART_H = 360, 60


@router.get("/ui")
async def home(session: Session = Depends(viewer)) -> Response:
    """Admins land on the overview; tenant keys on their tasks."""
    return RedirectResponse("/ui/overview" if session.key.admin else "/ui/tasks", status_code=303)


@router.get("/ui/overview")
async def overview(request: Request, session: Session = Depends(admin_viewer)) -> Response:
    return page(request, "overview.html", session, **await cluster(request))


@router.get("/ui/overview/live")
async def overview_live(request: Request, session: Session = Depends(admin_viewer)) -> Response:
    """The refreshing part of the overview (an htmx fragment)."""
    return page(request, "_cluster.html", session, **await cluster(request))


async def cluster(request: Request) -> dict[str, Any]:
    ops: OpsEndpoints = request.app.state.ops
    routes = await ops.route_states()
    stats = await ops.stats()
    timeline = await cluster_timeline(ops.settings, ops.store, CHART_MINUTES)
    points = {t["route"]: t["points"] for t in timeline["routes"]}
    for r in routes:
        lanes = [lane for lane in stats["lanes"] if lane["route"] == r["name"]]
        r["oldest_wait_seconds"] = max((lane["oldest_wait_seconds"] for lane in lanes), default=0)
        r["chart"] = chart(points.get(r["name"], []))
    return {
        "routes": routes,
        "instances": stats["instances"],
        "workers": await request.app.state.gateway.control.workers(),
        "at": time.time(),
    }


def chart(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Two polylines (ended, failed per minute, oldest first) as SVG points, scaled to the
    busiest minute."""
    ended = [p["ended"] for p in points] or [0]
    failed = [p["failed"] for p in points] or [0]
    top = max(max(ended), 1)
    step = CHART_W / max(len(ended) - 1, 1)

    def line(values: list[int]) -> str:
        return " ".join(
            f"{i * step:.1f},{CHART_H - v / top * (CHART_H - 2):.1f}" for i, v in enumerate(values)
        )

    return {
        "ended": line(ended),
        "failed": line(failed),
        "top": top,
        "last_ended": sum(ended[-2:]),
        "last_failed": sum(failed[-2:]),
        "width": CHART_W,
        "height": CHART_H,
    }
