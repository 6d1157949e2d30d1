"""What new settings do to a running scheduler (a reload, an instance joining or leaving
its route): lanes brought in line between two claims, keeping each instance's state (calls
in flight, health) where the instance stays; a changed route's provider rebuilt for new
calls while the old one serves the calls it started, then is closed; the calls on an
instance whose heartbeats stopped stopped and handed back to run elsewhere.

A route no longer configured loses its lane: no worker of this configuration claims its
tasks, which stay PENDING (to run if the route comes back, or to be cancelled, or to time
out on their queue deadline); its calls in flight finish."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from taskgate.config import Settings
from taskgate.ops.reload import Changes
from taskgate.providers import Provider, build
from taskgate.scheduling.call import Attempts
from taskgate.scheduling.dispatch import Dispatcher
from taskgate.scheduling.jobs import BackendJobs
from taskgate.scheduling.state import Lane, new_lane

log = logging.getLogger("taskgate.scheduler")


class Reconfigurer:
    def __init__(
        self,
        lanes: dict[str, Lane],
        dispatcher: Dispatcher,
        attempts: Attempts,
        jobs: BackendJobs,
        routes: Collection[str] | None,
    ) -> None:
        self.lanes = lanes  # the scheduler's, changed in place (its parts share it)
        self.dispatcher = dispatcher
        self.attempts = attempts
        self.jobs = jobs
        self.routes = routes  # the worker's --route filter (None: every route)
        self._retiring: set[asyncio.Task[None]] = set()

    async def apply(self, settings: Settings, changes: Changes) -> None:
        async with self.dispatcher.claiming:  # no claim is under way on a lane changed here
            retired = relane(self.lanes, settings, self.routes)
        for tag in changes.instances_expired:
            route, _, name = tag.rpartition("/")
            self._left(route, name)
        for provider in retired:
            task = asyncio.create_task(self._retire(provider), name="retire-provider")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        self.dispatcher.wake()  # new lanes and slots: look for work now

    def _left(self, route: str, name: str) -> None:
        why = {
            "type": "instance_expired",
            "message": f"instance {name!r} of route {route!r} stopped its heartbeats and left "
            "the route: the call was stopped and the task went back to the queue",
        }
        stopped = self.attempts.instance_left(route, name, why)
        if stopped:
            log.warning(
                "route %s: instance %s stopped its heartbeats; %d calls stopped and requeued",
                route,
                name,
                stopped,
            )

    async def _retire(self, provider: Provider) -> None:
        """Close a provider once nothing uses it: the calls it started, and what runs past
        its attempt (late results of backend jobs)."""
        running = self.attempts.running.values()
        using = [r.handle for r in running if r.provider is provider and r.handle is not None]
        using += self.jobs.background()
        if using:
            await asyncio.wait(using)
        await provider.aclose()

    async def stop(self) -> None:
        """Wait for the providers being retired to close (the calls have ended by now)."""
        await asyncio.gather(*self._retiring, return_exceptions=True)


def relane(
    lanes: dict[str, Lane], settings: Settings, wanted: Collection[str] | None = None
) -> list[Provider]:
    """Bring ``lanes`` in line with ``settings`` (only the routes ``wanted``, if given).
    Returns the providers that no longer take new calls. A route whose provider cannot be
    built here keeps its lane as it was (the file was checked before: this is a registered
    instance this process's provider refuses)."""
    routes = {r.name: r for r in settings.routes if wanted is None or r.name in wanted}
    missing = sorted(set(wanted or ()) - set(routes))
    if missing:
        log.warning("routes %s this worker runs are no longer configured", missing)
    retired = [lanes.pop(name).provider for name in list(lanes) if name not in routes]
    for name, route in routes.items():
        lane = lanes.get(name)
        if lane is not None and lane.route == route:
            continue
        try:
            if lane is None:
                lanes[name] = new_lane(settings, route)
                continue
            provider = build(route)
        except Exception:
            log.exception("route %s: cannot build its provider; keeping it as it was", name)
            continue
        retired.append(lane.provider)
        lane.use(route, provider)
    return retired
