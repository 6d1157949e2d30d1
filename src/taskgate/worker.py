"""``taskgate worker``: the scheduler and its workers without the HTTP API, for the
distributed mode. Any number of them run against one PostgreSQL store; each claims from the
routes it serves (all, or those named), and SIGTERM (or Ctrl-C, or an admin's
``POST /v1/workers/{id}/drain``) drains it: it stops claiming, gives running calls ``grace``
seconds to finish, hands back the rest and exits. SIGHUP (or a reload on any gateway) reads
its config file again (ops/live.py)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from taskgate import services
from taskgate.config import Settings
from taskgate.ops.endpoints import OpsEndpoints
from taskgate.ops.live import LiveConfig
from taskgate.ops.metrics import Metrics
from taskgate.scheduling import Scheduler

log = logging.getLogger("taskgate.worker")


async def run(
    settings: Settings, routes: list[str] | None, grace: float, config_path: Path | None = None
) -> None:
    unknown = sorted(set(routes or ()) - {r.name for r in settings.routes})
    if unknown:
        raise ValueError(
            f"unknown routes {unknown}; configured: {[r.name for r in settings.routes]}"
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # a worker's metrics are served only on metrics.port: without one, nobody reads them
    metrics = Metrics() if settings.metrics.enabled and settings.metrics.port else None
    async with services.opened(settings, metrics) as s:
        scheduler = Scheduler(settings, s.store, s.events, s.files, routes=routes)
        ops = OpsEndpoints(  # served only with metrics.port: a worker has no other HTTP
            settings,
            s.store,
            s.events,
            metrics,
            instances=scheduler.instances,
            dispatching=scheduler.dispatching,
        )
        live = LiveConfig(settings, config_path, s.store, s.events, signals=True)
        live.on_change(scheduler.apply)
        live.on_change(ops.use)
        await live.start()  # registered instances join their routes; reloads are followed
        await scheduler.start()
        await ops.start()
        services.settle()
        print(  # whatever the log level: the line that says the worker is up
            f"taskgate worker {scheduler.worker_id}: running routes {', '.join(scheduler.lanes)}",
            file=sys.stderr,
            flush=True,
        )
        asked = asyncio.create_task(scheduler.drain_requested.wait())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait((asked, stopping), return_when=asyncio.FIRST_COMPLETED)
        asked.cancel()
        stopping.cancel()
        log.info("worker %s draining (grace %gs)", scheduler.worker_id, grace)
        await live.stop()
        await ops.stop()
        await scheduler.stop(grace)
    log.info("worker %s stopped", scheduler.worker_id)
