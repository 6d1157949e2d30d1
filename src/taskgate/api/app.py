"""The HTTP application: one FastAPI app, its error mapping, and the lifespan that opens the
store and (in ``serve`` mode) runs the scheduler in the same process."""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from taskgate import __version__, services, store
from taskgate.api import aiflow, native, openai_api, tasksystem, volcengine
from taskgate.api.auth import KeyRing, caller, has_key
from taskgate.api.fastpath import ErrorHandler, FastPath
from taskgate.api.limits import BodyLimit
from taskgate.api.responses import JSON, STATUS_TYPES, as_api_error, error_body
from taskgate.api.strict import StrictRoute, malformed_message
from taskgate.config import Settings
from taskgate.errors import ApiError
from taskgate.gateway import Gateway
from taskgate.scheduling import Scheduler

log = logging.getLogger("taskgate")


def create_app(settings: Settings, *, run_scheduler: bool = True, grace: float = 10.0) -> FastAPI:
    """The HTTP app; with ``run_scheduler`` (``taskgate serve``) the scheduler and workers
    run in the same process, without it (``taskgate api``) other processes run them."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with services.opened(settings) as s:
            app.state.files = s.files
            app.state.gateway = Gateway(settings, s.store, s.events, s.files)
            app.state.keys = KeyRing(s.store, s.events, settings.auth_cache_seconds)
            await app.state.keys.start()
            await _bootstrap_admin_key(s.store)
            scheduler = Scheduler(settings, s.store, s.events, s.files) if run_scheduler else None
            app.state.scheduler = scheduler
            await app.state.gateway.routing.start()  # model discovery: before the first request
            if scheduler:
                await scheduler.start()
            try:
                yield
            finally:
                if scheduler:
                    await scheduler.stop(grace)
                await app.state.gateway.routing.stop()
                await app.state.keys.stop()

    app = FastAPI(
        title="taskgate",
        version=__version__,
        summary="Gateway and scheduler for AI model tasks",
        lifespan=lifespan,
        # FastAPI's OpenTelemetry hooks read the environment on every request (6% of a
        # submit here); taskgate has no tracer configured, so they stay off.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.router.route_class = StrictRoute  # the app's own routes (/health)
    app.include_router(native.router)
    app.include_router(openai_api.router)
    for api in (aiflow, volcengine, tasksystem):  # the compatible APIs
        app.include_router(api.router)
    errors: dict[type[Exception], ErrorHandler] = {
        ApiError: _api_error,
        RequestValidationError: _validation_error,
        HTTPException: _http_error,
        Exception: _unexpected,  # last resort: a fault outside every route
    }
    for cls, handler in errors.items():
        app.add_exception_handler(cls, handler)
    fast = {**native.FAST_ROUTES, **openai_api.FAST_ROUTES}
    app.add_middleware(FastPath, routes=fast, on_error=errors)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)  # outermost

    @app.get("/health", tags=["ops"])
    async def health(request: Request) -> JSON:
        """Whether the server is up. With an admin key, also its version and the tasks of
        every tenant counted by status (no store read without one)."""
        if not has_key(request) or not (await caller(request)).admin:  # a sent key must be good
            return JSON({"status": "ok"})
        counts = await request.app.state.gateway.store.tasks.counts()
        return JSON({"status": "ok", "version": __version__, "tasks": counts})

    return app


async def _bootstrap_admin_key(db: store.SqlStore) -> None:
    if await db.keys.has_admin():
        return
    _, secret = await db.keys.create("default", "bootstrap admin", admin=True)
    print(
        "\ntaskgate: no admin key existed, so one was created. It is shown only this once:\n"
        f"\n    {secret}\n\n"
        "Send it as 'Authorization: Bearer <key>'. Make tenant keys with\n"
        "    taskgate keys create --tenant NAME\n",
        file=sys.stderr,
        flush=True,
    )


async def _api_error(_: Request, exc: Exception) -> JSON:
    assert isinstance(exc, ApiError)
    return JSON({"error": exc.as_dict()}, status_code=exc.status_code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSON:
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


async def _http_error(_: Request, exc: Exception) -> JSON:
    assert isinstance(exc, HTTPException)
    type_ = STATUS_TYPES.get(exc.status_code, "error")
    return JSON(
        error_body(type_, str(exc.detail)),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )
