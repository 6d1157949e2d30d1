"""What one process serves to operators: ``/metrics`` (with the queue gauges kept fresh
from the store), ``/health/live`` and ``/health/ready``; on the API port, and with
``metrics.port`` on a port of their own (the only HTTP a ``taskgate worker`` has). Also the
ASGI middleware that times every HTTP request and writes the access log, and the one that
(with tracing on) makes each request's span."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from taskgate.config import Settings
from taskgate.events import Events
from taskgate.ops.health import Readiness
from taskgate.ops.metrics import CONTENT_TYPE, Metrics, QueueGauges
from taskgate.ops.stats import Instances, cluster_routes, cluster_stats, cluster_timeline
from taskgate.ops.tracing import Tracing
from taskgate.store import SqlStore

access = logging.getLogger("taskgate.access")


class OpsEndpoints:
    def __init__(
        self,
        settings: Settings,
        store: SqlStore,
        events: Events,
        metrics: Metrics | None,
        *,
        instances: Instances | None = None,
        dispatching: Callable[[], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.instances = instances  # None: this process runs no scheduler
        self.metrics = metrics
        self.readiness = Readiness(store, events, dispatching)
        self.gauges: QueueGauges | None = None
        if metrics is not None:
            self.gauges = QueueGauges(
                settings,
                lambda now: store.stats.snapshot(now, self.settings.rate_limits),
                instances,
            )
            metrics.registry.register(self.gauges)
        self._refreshing: asyncio.Task[None] | None = None
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.gauges is not None:
            self._refreshing = asyncio.create_task(self.gauges.keep_refreshing(), name="gauges")
        port = self.settings.metrics.port
        if port is not None:
            app = Starlette(routes=self.routes())
            config = uvicorn.Config(
                app,
                host=self.settings.host,
                port=port,
                lifespan="off",
                log_config=None,
                access_log=False,
            )
            # bound here, so that a port in use fails the start with the OS's own error;
            # connections wait in its backlog until the server runs
            sock = socket.create_server((self.settings.host, port))
            self._server = _QuietServer(config)
            self._serving = asyncio.create_task(self._server.serve([sock]), name="ops-port")

    async def stop(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
        if self._server is not None:
            self._server.should_exit = True  # it closes its connections, then returns
        running = [t for t in (self._refreshing, self._serving) if t is not None]
        await asyncio.gather(*running, return_exceptions=True)

    async def use(self, settings: Settings, *_: object) -> None:
        """Show the routes and instances of new settings (a reload) from now on."""
        self.settings = settings
        if self.gauges is not None:
            self.gauges.settings = settings

    async def stats(self) -> dict[str, Any]:
        return await cluster_stats(self.settings, self.store, self.instances)

    async def timeline(self, minutes: int) -> dict[str, Any]:
        return await cluster_timeline(self.settings, self.store, minutes)

    async def route_states(self) -> list[dict[str, Any]]:
        return await cluster_routes(self.settings, self.store, self.instances)

    def routes(self) -> list[Route]:
        """What the port of its own serves (the API port has its own routes, documented)."""
        out = [Route("/health/live", self.live), Route("/health/ready", self.ready)]
        if self.metrics is not None:
            out.append(Route("/metrics", self.render))
        return out

    async def render(self, _: Request | None = None) -> Response:
        assert self.metrics is not None
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    async def live(self, _: Request | None = None) -> Response:
        return JSONResponse({"status": "alive"})

    async def ready(self, _: Request | None = None) -> Response:
        answer = await self.readiness.check()
        return JSONResponse(answer, status_code=200 if answer["status"] == "ready" else 503)


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals to the process it runs in."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


Labels = Mapping[tuple[str, str], tuple[str, str]]  # (method, path): (api, path template)


class Answer:
    """A request's ``send``, passed through, noting the status of the response."""

    def __init__(self, send: Any) -> None:
        self.send = send
        self.status = 500  # unless a response starts

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)


def labelled(labels: Labels, scope: dict[str, Any]) -> tuple[str, str]:
    """The API and path template of a request, once the app has answered it."""
    route = scope.get("route")
    path = getattr(route, "path", None) or scope["path"]
    return labels.get((scope["method"], path), ("none", "unmatched"))


class Observed:
    """ASGI middleware: each HTTP request's latency in the metrics, by API, method, path
    template and status, and (``access_log``) one log line. ``labels`` names the API and
    template of the routes the router does not match itself (the fast path's)."""

    def __init__(self, app: Any, metrics: Metrics | None, access_log: bool, labels: Labels) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        self.labels = labels

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        answer = Answer(send)
        try:
            await self.app(scope, receive, answer)
        finally:
            self._observe(scope, answer.status, time.perf_counter() - started)

    def _observe(self, scope: dict[str, Any], status: int, took: float) -> None:
        method = scope["method"]
        api, template = labelled(self.labels, scope)
        if self.metrics is not None:
            self.metrics.http.observe(took, api, method, template, str(status))
        if self.access_log:
            fields = {"api": api, "status": status, "duration_ms": round(took * 1000, 2)}
            access.info("%s %s %d", method, scope["path"], status, extra={"fields": fields})


class Traced:
    """ASGI middleware, there only with tracing on: each HTTP request is a span, named by
    its method and path template (see :meth:`Tracing.request`)."""

    def __init__(self, app: Any, tracing: Tracing, labels: Labels) -> None:
        self.app = app
        self.tracing = tracing
        self.labels = labels

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        answer = Answer(send)
        with self.tracing.request(scope) as span:
            try:
                await self.app(scope, receive, answer)
            finally:
                api, template = labelled(self.labels, scope)
                Tracing.answered(span, scope, api, template, answer.status)
