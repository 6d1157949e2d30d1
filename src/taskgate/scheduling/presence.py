"""This worker process's record in the store, for ``GET /v1/workers``: a heartbeat every
``HEARTBEAT`` seconds with its routes and calls in flight, and its stop. The heartbeat also
brings back an admin's request that it drain (``POST /v1/workers/{id}/drain``), which the
``workers`` events topic announces at once; the process then drains as on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

from taskgate.store import SqlStore
from taskgate.store.control import WorkerRecord

log = logging.getLogger("taskgate.scheduler")

HEARTBEAT = 5.0  # seconds between heartbeats
FORGET_AFTER = 86_400.0  # a worker not seen for a day leaves the registry


class Presence:
    def __init__(
        self,
        store: SqlStore,
        worker_id: str,
        routes: Callable[[], list[str]],
        in_flight: Callable[[], int],
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.routes = routes
        self.in_flight = in_flight
        self.started_at = time.time()
        self.drain_requested = asyncio.Event()

    def record(self) -> WorkerRecord:
        return WorkerRecord(
            id=self.worker_id,
            host=socket.gethostname()[:100],
            pid=os.getpid(),
            routes=self.routes(),
            in_flight=self.in_flight(),
            started_at=self.started_at,
            last_seen=time.time(),
            drain=False,
        )

    async def join(self) -> None:
        """Into the registry, before claiming anything; workers gone for a day leave it."""
        await self.beat()
        await self.store.control.forget_workers(time.time() - FORGET_AFTER)

    async def beat(self) -> None:
        """One heartbeat; an admin's drain request comes back with it."""
        if await self.store.control.heartbeat(self.record()):
            self.drain("the store")

    def drain(self, told_by: str) -> None:
        if not self.drain_requested.is_set():
            log.info(
                "worker %s: an admin asked it to drain (heard from %s)", self.worker_id, told_by
            )
            self.drain_requested.set()

    async def keep_beating(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception:  # the store is down: the next beat tries again
                log.warning("worker %s: heartbeat failed", self.worker_id, exc_info=True)
            await asyncio.sleep(HEARTBEAT)

    async def stopped(self) -> None:
        try:
            await self.store.control.worker_stopped(self.worker_id)
        except Exception:
            log.warning("worker %s: could not record its stop", self.worker_id, exc_info=True)
