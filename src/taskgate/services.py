"""What every taskgate process opens, built from the settings: the store (also the queue),
the events that wake waiters and workers, the file storage, and the metrics (the store
tells them, and the logs, of each transition it writes). ``taskgate serve`` and
``taskgate api`` open them under the HTTP app; ``taskgate worker`` under the scheduler."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from taskgate import events, files, store
from taskgate.config import Settings
from taskgate.events import Events
from taskgate.files import Files
from taskgate.ops.metrics import Metrics
from taskgate.ops.transitions import Transitions
from taskgate.providers import load_plugins
from taskgate.store import SqlStore

log = logging.getLogger("taskgate")


@dataclass(frozen=True)
class Services:
    store: SqlStore
    events: Events
    files: Files
    metrics: Metrics | None  # None: metrics are off


@asynccontextmanager
async def opened(settings: Settings, metrics: Metrics | None = None) -> AsyncIterator[Services]:
    """Open what a process needs; ``metrics`` (the process's own) hear of every transition."""
    load_plugins(settings.plugins)
    _warn_missing_secrets(settings)
    db = store.from_url(settings.store_url)
    db.db.observer = Transitions(metrics)  # a log line and the metrics per transition
    await db.open()
    bus = events.from_url(settings.events_url, settings.store_url)
    secret = settings.files_secret.get_secret_value() if settings.files_secret else None
    blobs = files.from_url(settings.files_url, key_id=settings.files_key_id, secret=secret)
    try:
        await bus.open()
        yield Services(db, bus, Files(db, blobs), metrics)
    finally:
        await bus.close()
        await blobs.close()
        await db.close()


# Collect cycles after this many new container objects, not CPython's 700: a request makes
# hundreds, and a collection every few requests cost 10 % of a loaded server's time
GC_THRESHOLD = (10_000, 10, 10)


def settle() -> None:
    """Once a process has started: what was made to start it (modules, the app, its
    routes, compiled statements) lives as long as the process, so the garbage collector
    stops looking at it (``gc.freeze``), and collects less often. On the OpenAI path under
    load this took the time spent collecting from about 10 % of the server's to nearly
    nothing, and with it the longest pauses (bench/README.md)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def _warn_missing_secrets(settings: Settings) -> None:
    for route in settings.routes:
        for inst in route.instances:
            if inst.secret_env and inst.secret is None:
                log.warning(
                    "route %s, instance %s: environment variable %s is not set; "
                    "calls to it will fail to authenticate",
                    route.name,
                    inst.name,
                    inst.secret_env,
                )
