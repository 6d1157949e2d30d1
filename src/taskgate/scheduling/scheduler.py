"""The scheduler of one worker process: it builds a lane per route and composes the parts,
each in its own module: dispatch (claims), call (one attempt), outcome (its ending), jobs
(backend jobs), leases (renewal, lost work, sweeping), presence (its heartbeat in the
workers' registry), retention (purging what has expired), reconfigure (new settings at run
time); and it starts and stops their loops and listens for new work (on the routes its lanes
serve, and only those: ``queue:{route}``) and for cancellations."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from taskgate import policy
from taskgate.config import Settings
from taskgate.events import Events
from taskgate.events.topics import WORKERS, queue_topic
from taskgate.files import Files
from taskgate.ops import tracing
from taskgate.ops.reload import Changes
from taskgate.ops.retention import Purger
from taskgate.providers.fetch import MediaFetcher
from taskgate.scheduling.announce import Announcer
from taskgate.scheduling.call import Attempts
from taskgate.scheduling.dispatch import Dispatcher
from taskgate.scheduling.jobs import BackendJobs
from taskgate.scheduling.leases import Leases
from taskgate.scheduling.outcome import Endings
from taskgate.scheduling.presence import Presence
from taskgate.scheduling.reconfigure import Reconfigurer
from taskgate.scheduling.state import Lane, build_lanes
from taskgate.store import SqlStore
from taskgate.webhooks import Deliverer

log = logging.getLogger("taskgate.scheduler")


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        store: SqlStore,
        events: Events,
        files: Files,
        *,
        routes: list[str] | None = None,
        worker_id: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.events = events
        self.files = files
        host = socket.gethostname()[:40]
        self.worker_id = worker_id or f"{host}:{os.getpid()}:{os.urandom(3).hex()}"
        rng = rng or random.Random()
        conf = settings.scheduler
        self.lanes: dict[str, Lane] = build_lanes(settings, routes)
        announcer = Announcer(store, events)
        self.jobs = BackendJobs(store, files, announcer, self.lanes, self.worker_id, rng)
        self.dispatcher = Dispatcher(
            conf,
            store,
            self.lanes,
            self.worker_id,
            lambda lane, t: self.attempts.start(lane, t),
            announcer.announce_all,
        )
        endings = Endings(
            conf,
            store,
            files,
            self.jobs,
            self.worker_id,
            rng,
            self.dispatcher.due,
            prices=lambda: self.settings.prices,  # those in force at each ending
        )
        self.media = MediaFetcher(settings.media)  # clients' media URLs, where routes allow
        self.attempts = Attempts(
            store,
            files,
            announcer,
            self.jobs,
            endings,
            self.worker_id,
            self.dispatcher.freed,
            keep_traces=settings.log_errors_to_store,
            tracing=tracing.from_settings(settings.tracing),
            fetch_url=self.media.fetch,
        )
        self.leases = Leases(
            conf, store, self.attempts, announcer, self.worker_id, self.dispatcher.wake
        )
        self.webhooks = Deliverer(settings.webhooks, store, rng)
        self.presence = Presence(
            store, self.worker_id, lambda: list(self.lanes), lambda: len(self.attempts.running)
        )
        self.retention = Purger(settings.retention, store, files)
        self.reconfigurer = Reconfigurer(
            self.lanes, self.dispatcher, self.attempts, self.jobs, routes
        )
        self._loops: list[asyncio.Task[None]] = []
        self._keepers: list[asyncio.Task[None]] = []
        self._hearing: dict[str, asyncio.Task[None]] = {}  # route: its queue's listener
        self._stopped = False

    @property
    def drain_requested(self) -> asyncio.Event:
        """Set when an admin asks this worker to drain; its process then stops it."""
        return self.presence.drain_requested

    async def start(self) -> None:
        await self.leases.reclaim_from_dead_local_workers()
        await self.presence.join()
        # tasks accepted by this process are claimed as they are written, where there is room
        self.store.tasks.riding = self.dispatcher.riding
        self._loops = [
            asyncio.create_task(self.dispatcher.run(), name="dispatch"),
            asyncio.create_task(self.leases.keep_sweeping(), name="sweep"),
            # webhooks of ended tasks, sent from the worker process (stops with the loops)
            asyncio.create_task(self.webhooks.run(), name="webhooks"),
            # ended tasks past their retention, purged in small batches
            asyncio.create_task(self.retention.keep_purging(), name="retention"),
        ]
        self._hear_lanes()
        # what keeps running tasks ours and cancellable: runs on through stop()'s grace
        self._keepers = [
            asyncio.create_task(self.leases.keep_renewing(), name="leases"),
            asyncio.create_task(self._listen("cancel", self.attempts.cancel), name="cancels"),
            asyncio.create_task(self.presence.keep_beating(), name="heartbeat"),
            asyncio.create_task(self._listen(WORKERS, self._on_workers), name="drains"),
        ]

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, let running calls finish for ``grace`` seconds, hand back the rest.
        (Once: a drained scheduler is stopped again when its process ends.)"""
        if self._stopped:
            return
        self._stopped = True
        self.dispatcher.stopping = True
        if self.store.tasks.riding == self.dispatcher.riding:
            self.store.tasks.riding = None
        hearing = list(self._hearing.values())
        for loop in self._loops + hearing:
            loop.cancel()
        await asyncio.gather(*self._loops, *hearing, self.jobs.stop(), return_exceptions=True)
        await self.attempts.stop(grace)
        for keeper in self._keepers:
            keeper.cancel()
        await asyncio.gather(*self._keepers, return_exceptions=True)
        await self.reconfigurer.stop()
        for lane in self.lanes.values():
            await lane.provider.aclose()
        await self.media.aclose()
        await self.presence.stopped()

    async def apply(self, settings: Settings, changes: Changes) -> None:
        """Run on with new settings (a reload; an instance joined or left a route): see
        :mod:`~taskgate.scheduling.reconfigure`. What the parts were given at start-up (the
        ``scheduler`` section, webhooks) stays as it was: those need a restart."""
        self.settings = settings
        await self.retention.use(settings)
        await self.reconfigurer.apply(settings, changes)
        if not self._stopped:
            self._hear_lanes()

    def dispatching(self) -> bool:
        """Whether the dispatch loop runs (for readiness)."""
        return bool(self._loops) and not self._loops[0].done()

    def instances(self) -> dict[tuple[str, str], policy.InstanceState]:
        """Each instance's load and health as this worker sees it (metrics, statistics)."""
        return {
            (name, inst.name): inst for name, lane in self.lanes.items() for inst in lane.instances
        }

    async def _on_workers(self, message: dict[str, Any]) -> None:
        if message.get("drain") == self.worker_id:
            self.presence.drain("an event")

    async def _on_queue(self, message: dict[str, Any]) -> None:
        self.dispatcher.due(message)

    def _hear_lanes(self) -> None:
        """Listen for the work announced on each route a lane serves, and on no other: a
        route a reload added is heard from now on, one it removed no more; a listener that
        ended (it failed) starts again. Once the transport has confirmed a route's channel,
        the dispatcher looks again: work announced before that was not heard."""
        for route in set(self._hearing) - set(self.lanes):
            self._hearing.pop(route).cancel()
        for route in self.lanes:
            if route in self._hearing and not self._hearing[route].done():
                continue
            self._hearing[route] = asyncio.create_task(
                self._listen(
                    queue_topic(route),
                    self._on_queue,
                    heard=functools.partial(self.dispatcher.look_again, route),
                ),
                name=f"queue:{route}",
            )

    async def _listen(
        self,
        topic: str,
        handler: Callable[[dict[str, Any]], Awaitable[None]],
        heard: Callable[[], None] | None = None,
    ) -> None:
        """Pass each message of ``topic`` to ``handler``; ``heard`` once listening."""
        async with self.events.subscribe(topic) as sub:
            if heard is not None:
                heard()
            while True:
                message = await sub.get()
                if message is None:
                    continue
                try:
                    await handler(message)
                except Exception:
                    log.exception("handling %s message %r failed", topic, message)
