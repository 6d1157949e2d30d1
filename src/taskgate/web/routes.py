"""The routes page (admin keys): each route's state, queue and instances (configured and
registered), its pause and resume buttons, and a button that reloads the configuration in
every process, all over the same calls as the API's."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from taskgate.config import ConfigError
from taskgate.ops.endpoints import OpsEndpoints
from taskgate.ops.live import LiveConfig
from taskgate.store.sessions import Session
from taskgate.web.render import page
from taskgate.web.session import admin_acting, admin_viewer

router = APIRouter(include_in_schema=False, tags=["ui"])


async def _page(request: Request, session: Session, **said: Any) -> Response:
    ops: OpsEndpoints = request.app.state.ops
    return page(request, "routes.html", session, routes=await ops.route_states(), **said)


@router.get("/ui/routes")
async def routes(request: Request, session: Session = Depends(admin_viewer)) -> Response:
    return await _page(request, session)


@router.post("/ui/routes/{name}/pause")
async def pause(name: str, request: Request, session: Session = Depends(admin_acting)) -> Response:
    await request.app.state.gateway.control.pause(session.key, name, paused=True)
    return await _page(request, session, notice=f"Route {name} is paused.")


@router.post("/ui/routes/{name}/resume")
async def resume(name: str, request: Request, session: Session = Depends(admin_acting)) -> Response:
    await request.app.state.gateway.control.pause(session.key, name, paused=False)
    return await _page(request, session, notice=f"Route {name} is running again.")


@router.post("/ui/reload")
async def reload(request: Request, session: Session = Depends(admin_acting)) -> Response:
    live: LiveConfig = request.app.state.live
    try:
        changes = await live.reload_everywhere()
    except ConfigError as exc:
        return await _page(request, session, error=f"The configuration was refused: {exc}")
    said = "The configuration was reloaded" + ("." if changes.changed else "; nothing changed.")
    return await _page(request, session, notice=said, changes=changes.as_dict())
