"""The HTTP application: one FastAPI app, its error mapping, and the lifespan that opens the
store and (in ``serve`` mode) runs the scheduler in the same process."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute, APIRouter
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.responses import Response

from taskgate import __version__, services, store, web
from taskgate.api import admin as admin_api
from taskgate.api import aiflow, docs, native, openai_api, retention, tasksystem, usage, volcengine
from taskgate.api import live as live_api
from taskgate.api.auth import KEY_NEEDED, KEY_OPTIONAL, KeyRing, admin, caller, has_key
from taskgate.api.fastpath import ErrorHandler, FastPath
from taskgate.api.limits import BodyLimit
from taskgate.api.responses import JSON, STATUS_TYPES, as_api_error, error_body
from taskgate.api.schemas import ERRORS
from taskgate.api.strict import StrictRoute, malformed_message
from taskgate.config import Settings
from taskgate.errors import ApiError
from taskgate.files import FileLinks
from taskgate.gateway import Gateway
from taskgate.models import ApiKey
from taskgate.ops import tracing
from taskgate.ops.endpoints import Observed, OpsEndpoints, Traced
from taskgate.ops.live import LiveConfig
from taskgate.ops.metrics import Metrics
from taskgate.ops.retention import Purger
from taskgate.scheduling import Scheduler
from taskgate.web.session import LoginNeeded, error_page, login_redirect

log = logging.getLogger("taskgate")

DESCRIPTION = """The calls shown with a lock need an API key, sent as
`Authorization: Bearer <key>`: press **Authorize** and paste one. The native API's errors are
`{"error": {"type", "message", ...}}`; each compatible API answers in its own shape."""


def create_app(
    settings: Settings,
    *,
    run_scheduler: bool = True,
    grace: float = 10.0,
    config_path: Path | None = None,
) -> FastAPI:
    """The HTTP app; with ``run_scheduler`` (``taskgate serve``) the scheduler and workers
    run in the same process, without it (``taskgate api``) other processes run them.
    ``config_path``: the file ``settings`` came from, read again on a reload (SIGHUP or
    ``POST /v1/admin/reload``); without it, reloads are refused."""

    metrics = Metrics() if settings.metrics.enabled else None
    traced = tracing.from_settings(settings.tracing)  # None: tracing is off

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with services.opened(settings, metrics) as s:
            app.state.files = s.files
            links = await FileLinks.from_store(s.store, settings.files.url_lifetime)
            app.state.gateway = Gateway(settings, s.store, s.events, s.files, links)
            app.state.keys = KeyRing(
                s.store, s.events, settings.auth_cache_seconds, settings.auth.anonymous_tenant
            )
            await app.state.keys.start()
            await _bootstrap_admin_key(s.store)
            scheduler = Scheduler(settings, s.store, s.events, s.files) if run_scheduler else None
            app.state.scheduler = scheduler
            app.state.purger = (  # purges by hand (the scheduler's also runs in the background)
                scheduler.retention if scheduler else Purger(settings.retention, s.store, s.files)
            )
            app.state.ops = OpsEndpoints(
                settings,
                s.store,
                s.events,
                s.metrics,
                instances=scheduler.instances if scheduler else None,
                dispatching=scheduler.dispatching if scheduler else None,
            )
            app.state.live = live = LiveConfig(
                settings, config_path, s.store, s.events, signals=config_path is not None
            )
            live.on_change(app.state.gateway.use)
            live.on_change(app.state.ops.use)
            if scheduler:
                live.on_change(scheduler.apply)  # its purger's too
            else:
                live.on_change(app.state.purger.use)
            await app.state.gateway.routing.start()  # model discovery: before the first request
            drains = None
            await live.start()  # registered instances join their routes
            if scheduler:
                await scheduler.start()
                drains = asyncio.create_task(_drain_when_asked(scheduler, grace), name="drain")
            await app.state.ops.start()
            services.settle()
            try:
                yield
            finally:
                await live.stop()
                await app.state.ops.stop()
                if scheduler and drains:
                    drains.cancel()
                    await asyncio.gather(drains, return_exceptions=True)
                    await scheduler.stop(grace)
                await app.state.gateway.routing.stop()
                await app.state.keys.stop()
                if traced:
                    traced.flush()  # the last requests' and attempts' spans

    app = FastAPI(
        title="taskgate",
        version=__version__,
        summary="Gateway and scheduler for AI model tasks",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # api/docs.py serves /docs from files installed with taskgate
        redoc_url=None,
        # FastAPI's OpenTelemetry hooks read the environment on every request (6% of a
        # submit here); they stay off: taskgate's own spans (ops/tracing.py) come from Observed.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.router.route_class = StrictRoute  # the app's own routes (/health)
    routers = [native.router, admin_api.router, retention.router, usage.router]
    routers += [live_api.router, openai_api.router]
    routers += [api.router for api in (aiflow, volcengine, tasksystem)]  # the compatible APIs
    routers += web.routers()  # the dashboard, /ui
    for router in routers:
        app.include_router(router)
    app.mount("/ui/static", web.static_files(), name="ui-static")
    for prefix, folder in settings.static_dirs.items():  # a client's own page, same origin
        app.mount(prefix, StaticFiles(directory=folder, html=True), name=f"static:{prefix}")
    errors: dict[type[Exception], ErrorHandler] = {
        LoginNeeded: _login_needed,
        ApiError: _api_error,
        RequestValidationError: _validation_error,
        HTTPException: _http_error,
        Exception: _unexpected,  # last resort: a fault outside every route
    }
    for cls, handler in errors.items():
        app.add_exception_handler(cls, handler)
    fast = {**native.FAST_ROUTES, **openai_api.FAST_ROUTES}
    app.add_middleware(FastPath, routes=fast, on_error=errors)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    _ops_routes(app, settings)
    routers.append(app.router)  # the app's own routes, above
    docs.install(app, routers)
    labels = route_labels(routers)
    app.add_middleware(  # outermost: it times and logs every answer, refusals included
        Observed, metrics=metrics, access_log=settings.access_log, labels=labels
    )
    if traced:  # around even that: the request's span holds all of its handling
        app.add_middleware(Traced, tracing=traced, labels=labels)
    if settings.cors.allow_origins:  # outermost: a preflight is answered before anything
        app.add_middleware(CORSMiddleware, **settings.cors.model_dump())
    return app


async def _drain_when_asked(scheduler: Scheduler, grace: float) -> None:
    """An admin drained this process's worker: stop it; the API stays up."""
    await scheduler.drain_requested.wait()
    await scheduler.stop(grace)


def _ops_routes(app: FastAPI, settings: Settings) -> None:
    @app.get("/health", tags=["ops"], openapi_extra=KEY_OPTIONAL)
    async def health(request: Request) -> JSON:
        """Whether the server is up. With an admin key, also its version and the tasks of
        every tenant counted by status (no store read without one)."""
        if not has_key(request) or not (await caller(request)).admin:  # a sent key must be good
            return JSON({"status": "ok"})
        counts = await request.app.state.gateway.store.tasks.counts()
        return JSON({"status": "ok", "version": __version__, "tasks": counts})

    @app.get("/health/live", tags=["ops"])
    async def live(request: Request) -> Response:
        """The process answers (no key needed)."""
        ops: OpsEndpoints = request.app.state.ops
        return await ops.live()

    @app.get("/health/ready", tags=["ops"])
    async def ready(request: Request) -> Response:
        """200 when the store answers and is migrated, the events channel is connected and
        (where the scheduler runs) the dispatch loop is alive; 503 otherwise. No key needed;
        the answer carries no counts."""
        ops: OpsEndpoints = request.app.state.ops
        return await ops.ready()

    @app.get("/v1/stats", tags=["ops"], responses=ERRORS)
    async def stats(request: Request, _: ApiKey = Depends(admin)) -> JSON:
        """The queue in numbers (admin keys): per route and priority, what waits and runs,
        the oldest wait, what ended and failed in the last minute and hour, run time p50
        and p95; per instance, calls in flight, capacity, rate allowance and health."""
        ops: OpsEndpoints = request.app.state.ops
        return JSON(await ops.stats())

    @app.get("/v1/stats/timeline", tags=["ops"])
    async def stats_timeline(
        request: Request,
        minutes: int = Query(60, ge=1, le=1440, description="how many minutes, up to now"),
        _: ApiKey = Depends(admin),
    ) -> JSON:
        """What ended and failed (FAILED or TIMEOUT) per route in each of the last minutes
        (admin keys), oldest first, the minute under way last: the overview's chart."""
        ops: OpsEndpoints = request.app.state.ops
        return JSON(await ops.timeline(minutes))

    if settings.metrics.enabled and settings.metrics.port is None:

        @app.get(
            "/metrics",
            tags=["ops"],
            response_class=Response,
            openapi_extra=KEY_NEEDED if settings.metrics.require_key else None,
        )
        async def metrics(request: Request) -> Response:
            """Prometheus metrics: this process's counters and histograms, and the whole
            queue's gauges. Needs an admin key when ``metrics.require_key`` is set."""
            if settings.metrics.require_key:
                await admin(request)
            ops: OpsEndpoints = request.app.state.ops
            return await ops.render()


API_BY_TAG = {
    "OpenAI API": "openai",
    "AIFlow API": "aiflow",
    "Volcengine AI Server API": "volcengine",
    "AI Task System API": "tasksystem",
    "ops": "ops",
    "ui": "ui",
}


def route_labels(routers: list[APIRouter]) -> dict[tuple[str, str], tuple[str, str]]:
    """The API and path template of each route of ``routers``, for the request metrics."""
    out = {}
    for route in (r for router in routers for r in router.routes):
        if isinstance(route, APIRoute):
            tags = [str(t) for t in route.tags]
            api = next((API_BY_TAG[t] for t in tags if t in API_BY_TAG), "native")
            for method in route.methods or ():
                out[(method, route.path)] = (api, route.path)
    return out


async def _bootstrap_admin_key(db: store.SqlStore) -> None:
    if await db.keys.has_admin():
        return
    _, secret = await db.keys.create("default", "bootstrap admin", admin=True)
    print(
        "\ntaskgate: no admin key existed, so one was created. It is shown only this once:\n"
        f"\n    {secret}\n\n"
        "Send it as 'Authorization: Bearer KEY'. Make tenant keys with\n"
        "    taskgate keys create --tenant NAME\n",
        file=sys.stderr,
        flush=True,
    )


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if _dashboard_page(request):
        return await error_page(request, exc)
    return JSON({"error": exc.as_dict()}, status_code=exc.status_code, headers=exc.headers)


def _dashboard_page(request: Request) -> bool:
    """A page of the dashboard, whose errors are pages too (the APIs' stay JSON)."""
    path = request.url.path
    return (path == "/ui" or path.startswith("/ui/")) and not path.startswith("/ui/static/")


async def _login_needed(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginNeeded)
    return login_redirect(exc)


async def _unexpected(request: Request, exc: Exception) -> Response:
    return await _api_error(request, as_api_error(exc))


async def _validation_error(_: Request, exc: Exception) -> JSON:
    assert isinstance(exc, RequestValidationError)
    problems = [_describe(e) for e in exc.errors()]
    if (message := malformed_message(exc)) is not None:
        return JSON(error_body("bad_request", message), status_code=400)
    return JSON(
        error_body("invalid_request", "; ".join(problems), problems=problems), status_code=422
    )


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
    return f"{where}: {error.get('msg', 'invalid')}"


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    type_ = STATUS_TYPES.get(exc.status_code, "error")
    if _dashboard_page(request):
        error = ApiError(str(exc.detail))
        error.status_code, error.code = exc.status_code, type_
        return await error_page(request, error)
    return JSON(
        error_body(type_, str(exc.detail)),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )
