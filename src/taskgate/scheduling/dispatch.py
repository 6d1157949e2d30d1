"""Dispatch: one loop that, for every route with free backend slots, claims due tasks from
the store, splitting the free slots between priorities by weight (or strictly), and hands
each claimed task, with the instance the claim picked for it, to be started. A route
without free slots is skipped, so a saturated backend never holds up another route."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from taskgate import policy
from taskgate.config import SchedulerSettings
from taskgate.models import Priority, Task
from taskgate.scheduling.state import Lane
from taskgate.store import SqlStore

log = logging.getLogger("taskgate.scheduler")


class Dispatcher:
    def __init__(
        self,
        conf: SchedulerSettings,
        store: SqlStore,
        lanes: dict[str, Lane],
        worker_id: str,
        start: Callable[[Lane, Task], None],
    ) -> None:
        self.conf = conf
        self.store = store
        self.lanes = lanes
        self.worker_id = worker_id
        self.start = start  # starts a claimed task
        self.stopping = False
        # held while claiming and starting: a reload changes the lanes between claims
        self.claiming = asyncio.Lock()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look for work now (a slot came free, a task was queued)."""
        self._wake.set()

    def due(self, message: dict[str, Any]) -> None:
        """A task became claimable on a lane: look there again."""
        lane = self.lanes.get(message.get("route", ""))
        if lane is not None:
            lane.dry.discard(Priority(message.get("priority", Priority.DEFAULT)))
            lane.announced += 1
            self.wake()

    async def run(self) -> None:
        interval = self.conf.poll_interval
        next_reread = time.monotonic()
        while not self.stopping:
            if time.monotonic() >= next_reread:  # retries fall due; other gateways add work
                next_reread = time.monotonic() + interval
                for lane in self.lanes.values():
                    lane.dry.clear()
            try:
                started = await self.dispatch_once()
            except Exception:
                log.exception("dispatch failed; retrying after the poll interval")
                started = 0
            if started:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()

    async def dispatch_once(self) -> int:
        """Claim and start what free capacity allows, on every route. Returns tasks started."""
        started = 0
        async with self.claiming:
            for lane in self.lanes.values():
                free = lane.free(time.time())
                if free <= 0:
                    continue
                for task in await self._claim(lane):
                    self.start(lane, task)
                    started += 1
        return started

    async def _claim(self, lane: Lane) -> list[Task]:
        """Claim what the route's free slots allow; when a priority runs dry, share what it
        left among the others at once."""
        claimed: list[Task] = []
        while len(claimed) < self.conf.claim_batch:
            live = [p for p in Priority if p not in lane.dry]
            if not live:
                break
            try:
                got, again = await self._claim_once(lane, live, len(claimed))
            except Exception:
                if not claimed:
                    raise
                log.exception("a further claim on route %s failed", lane.route.name)
                break  # start what the earlier claims took
            claimed += got
            if not again:
                break
        return claimed

    async def _claim_once(
        self, lane: Lane, live: list[Priority], taken: int
    ) -> tuple[list[Task], bool]:
        """One claim: the store counts every worker's calls on the route inside it (so
        capacity holds across workers) and each task's instance is picked there too.
        Returns the tasks and whether to claim again at once: a priority came up short,
        so the others may take its share, unless the claim took nothing and work was
        announced meanwhile (then the announcement's wake starts the next round)."""
        plan = LaneClaim(lane, live, self.conf.claim_batch - taken, self.conf.strict_priority)
        announced = lane.announced
        got = await self.store.claims.claim(
            lane.route.name,
            plan.wants,
            plan.assign,
            self.worker_id,
            self.conf.lease_seconds,
            lane.limits,
            plan,
        )
        short = marked = False
        for prio, want in plan.wanted.items():
            if sum(1 for t in got if t.priority == prio) < want:
                short = True
                if lane.announced == announced:  # else work came meanwhile: look again
                    lane.dry.add(prio)
                    marked = True
        return got, short and (marked or bool(got))


class LaneClaim:
    """The decisions of one claim on a lane. The store calls them *inside its claim
    transaction*, with the route locked: :meth:`wants` with what every worker has in
    flight and what the rate limits allow, :meth:`rooms` when tasks wait for one instance,
    :meth:`assign` with the tasks it took. All are quick and do no I/O."""

    def __init__(self, lane: Lane, live: list[Priority], room: int, strict: bool) -> None:
        self.lane = lane
        self.live = live  # the priorities not known to be empty
        self.room = room  # most tasks this claim may take
        self.strict = strict
        self.wanted: dict[Priority, int] = {}
        # the lane's states as the plan saw them, with the other workers' calls and the
        # rate limits counted in (the lane's own states only ever hold this worker's calls)
        self.planned: list[policy.InstanceState] = []

    def wants(
        self, busy: Mapping[str, int], allowed: Mapping[str, int | None]
    ) -> dict[Priority, int]:
        """How many tasks of each priority to take, given every worker's calls in flight on
        each instance (``busy``) and the calls the rate limits allow (``allowed``)."""
        self.planned.extend(
            dataclasses.replace(
                i,
                elsewhere=max(0, busy.get(i.name, 0) - i.in_flight),
                allowed=allowed.get(i.name),
            )
            for i in self.lane.instances
        )
        slots = min(policy.free_slots(self.planned, time.time()), self.room)
        split = policy.strict_plan if self.strict else self.lane.wrr.plan
        self.wanted.update(split(slots, self.live) if slots > 0 else {})
        return self.wanted

    def rooms(self) -> dict[str, int]:
        """Each instance's room for the tasks pinned to it, as planned."""
        now = time.time()
        return {i.name: policy.room(i, now) for i in self.planned}

    @property
    def since(self) -> float:
        """When the lane last took its route's instances (a task pinned to an instance
        this worker does not know, submitted after that, may name a newer one)."""
        return self.lane.changed_at

    def assign(self, claimed: Sequence[Task]) -> list[str | None]:
        """The instance for each claimed task (None: keep its own, a resumed backend job;
        a pinned task's own instance). Picked from the planned states: one that changed
        meanwhile (a call failing, on another coroutine, while the database answered) must
        not leave a task without."""
        avoids = [None if t.provider_job else [t.instance or ""] for t in claimed]
        pins = [t.pinned_instance for t in claimed]
        return policy.assign_instances(self.planned, time.time(), avoids, pins)
