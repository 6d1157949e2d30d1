"""Live configuration over HTTP (admin keys): ``POST /v1/admin/reload`` and the backend
instances that join and leave a route at run time, ``/v1/routes/{name}/instances``.
What they do is :mod:`taskgate.ops.live`'s and :mod:`taskgate.registration`'s."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import Field

from taskgate import registration
from taskgate.api.auth import admin
from taskgate.api.native import Body
from taskgate.api.responses import JSON
from taskgate.api.schemas import ERRORS
from taskgate.api.strict import StrictRoute
from taskgate.config import ConfigError
from taskgate.errors import BadRequest, NotFound
from taskgate.models import ApiKey
from taskgate.ops.live import LiveConfig
from taskgate.store.instances import Registered

router = APIRouter(route_class=StrictRoute, responses=ERRORS)

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,199}$"
INSTANCE = Path(pattern=NAME, description="the instance's name")


class InstanceIn(Body):
    """A backend instance joining a route; the fields are those of a configured instance."""

    name: str = Field(pattern=NAME, description="unique on the route")
    endpoint: str | None = Field(None, max_length=2000, description="the backend's base URL")
    max_concurrency: int = Field(8, ge=1, le=100_000, description="calls at once (capacity)")
    weight: float = Field(1.0, gt=0, le=1_000_000)
    secret_env: str | None = Field(
        None, pattern=ENV_NAME, description="the environment variable holding its secret"
    )
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    options: dict[str, Any] = Field(default_factory=dict, description="provider options")
    ttl: float | None = Field(
        None, gt=0, description="seconds a heartbeat keeps it (none: kept until removed)"
    )

    def record(self, route: str) -> Registered:
        return Registered(route=route, **self.model_dump())


def live_config(request: Request) -> LiveConfig:
    live: LiveConfig = request.app.state.live
    return live


@router.post("/v1/admin/reload", tags=["admin"])
async def reload(_: ApiKey = Depends(admin), live: LiveConfig = Depends(live_config)) -> JSON:
    """Read the config file again, here and (over the events) in every other process.
    A file that cannot be used is refused with a 400 naming the file, line and key, and
    nothing changes anywhere. Answers what changed in this process."""
    try:
        changes = await live.reload_everywhere()
    except ConfigError as exc:
        raise BadRequest(f"config refused: {exc}", **exc.details()) from None
    return JSON(changes.as_dict())


@router.get("/v1/routes/{route}/instances", tags=["instances"])
async def list_instances(
    route: str, _: ApiKey = Depends(admin), live: LiveConfig = Depends(live_config)
) -> JSON:
    """The route's configured instances, and those registered (live or expired)."""
    conf = registration.configured_route(live.file, route)
    now = time.time()
    registered = await live.store.instances.find(route)
    return JSON(
        {
            "route": route,
            "data": [registration.configured_json(conf, i) for i in conf.instances]
            + [registration.registered_json(r, now) for r in registered],
        }
    )


@router.post("/v1/routes/{route}/instances", status_code=201, tags=["instances"])
async def register_instance(
    route: str,
    body: InstanceIn,
    _: ApiKey = Depends(admin),
    live: LiveConfig = Depends(live_config),
) -> JSON:
    """Add a backend instance to a route (201), or refresh one of the same name (200):
    every process adds it, sharing capacity, health and rate limits with the configured
    ones, until it is removed or, with a ``ttl``, its heartbeats stop."""
    new = body.record(route)
    await registration.check(live.file, new)
    kept, created = await live.store.instances.register(new)
    await live.instances_changed()
    view = registration.registered_json(kept, time.time())
    return JSON(view, status_code=201 if created else 200)


@router.post("/v1/routes/{route}/instances/{name}/heartbeat", tags=["instances"])
async def heartbeat(
    route: str,
    name: str = INSTANCE,
    _: ApiKey = Depends(admin),
    live: LiveConfig = Depends(live_config),
) -> JSON:
    """Keep a registered instance for another ``ttl`` (one that expired comes back). 404:
    no such instance (register it again)."""
    kept = await live.store.instances.heartbeat(route, name)
    if kept is None:
        raise NotFound(f"no registered instance {name!r} on route {route!r}")
    if not live.runs(route, name):  # it had expired (or is new here): back now, everywhere
        await live.instances_changed()
    return JSON(registration.registered_json(kept, time.time()))


@router.delete("/v1/routes/{route}/instances/{name}", tags=["instances"])
async def remove_instance(
    route: str,
    name: str = INSTANCE,
    _: ApiKey = Depends(admin),
    live: LiveConfig = Depends(live_config),
) -> JSON:
    """Remove a registered instance: it takes no new calls, its calls in flight finish."""
    if not await live.store.instances.remove(route, name):
        raise NotFound(f"no registered instance {name!r} on route {route!r}")
    await live.instances_changed()
    return JSON({"route": route, "name": name, "removed": True})
