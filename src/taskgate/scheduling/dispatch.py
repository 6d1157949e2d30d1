"""Dispatch: one loop that, for every route with free backend slots, claims due tasks from
the store, splitting the free slots between priorities by weight (or strictly), and hands
each claimed task, with the instance the claim picked for it, to be started. A route
without free slots is skipped, so a saturated backend never holds up another route; so is
a route another worker is claiming on at that moment (PostgreSQL), which is looked at again
``CONTENDED_RETRY`` later (not before, whatever wakes the loop; not later either: the poll
may be far off)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from taskgate import policy
from taskgate.config import SchedulerSettings
from taskgate.events.base import nap
from taskgate.models import Priority, Task
from taskgate.scheduling.state import Lane
from taskgate.store import SqlStore
from taskgate.store.claims import Unclaimed

log = logging.getLogger("taskgate.scheduler")

# Seconds before a route another worker was claiming on is looked at again: that claim
# takes its worker's share, and what it leaves (tasks, free capacity) is ours to take. Four
# workers of one route spent a third less CPU per task at 25 ms than at 10 (bench/README.md).
CONTENDED_RETRY = 0.025
# Seconds a task pinned to an instance its worker does not know waits to hear of it (a
# registration, every ``registration.reread_seconds``; a reload of the configuration)
# before it fails as pinned to an instance gone from the route.
UNKNOWN_PIN_WAIT = 60.0


class Dispatcher:
    def __init__(
        self,
        conf: SchedulerSettings,
        store: SqlStore,
        lanes: dict[str, Lane],
        worker_id: str,
        start: Callable[[Lane, Task], None],
        failed: Callable[[Sequence[Task]], Awaitable[None]],
    ) -> None:
        self.conf = conf
        self.store = store
        self.lanes = lanes
        self.worker_id = worker_id
        self.start = start  # starts a claimed task
        self.failed = failed  # tells of tasks a claim failed (pinned to a gone instance)
        self.stopping = False
        # held while claiming and starting: a reload changes the lanes between claims
        self.claiming = asyncio.Lock()
        self._wake = asyncio.Event()
        # routes another worker was claiming on when we tried: when to look at each again
        self._given_way: dict[str, float] = {}

    def wake(self) -> None:
        """Look for work now (a slot came free, a task was queued)."""
        self._wake.set()

    def freed(self, route: str) -> None:
        """A slot of ``route`` came free: look for work there, unless none is known to wait
        (every lane of it was last seen empty; new work clears that, and wakes the loop)."""
        lane = self.lanes.get(route)
        if lane is None or not lane.all_dry:
            self.wake()

    def due(self, message: dict[str, Any]) -> None:
        """A task became claimable on a lane: look there again."""
        priority = Priority(message.get("priority", Priority.DEFAULT))
        self._look_at(message.get("route", ""), [priority])

    def look_again(self, route: str) -> None:
        """Work may wait on every lane of ``route`` unannounced (its channel was not heard
        until now): look there again."""
        self._look_at(route, Priority)

    def _look_at(self, route: str, priorities: Iterable[Priority]) -> None:
        lane = self.lanes.get(route)
        if lane is not None:
            lane.dry.difference_update(priorities)
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
            await nap(self._wake, self._until_next_look(interval))

    def give_way(self, route: str) -> None:
        """Another worker was claiming on ``route``: look there again a moment later."""
        self._given_way[route] = time.monotonic() + CONTENDED_RETRY

    def _until_next_look(self, interval: float) -> float:
        """Seconds until the next look: the poll interval, or less if a route we gave way
        on is due to be looked at again."""
        now = time.monotonic()
        self._given_way = {r: at for r, at in self._given_way.items() if at > now}
        return min([interval, *(at - now for at in self._given_way.values())])

    async def dispatch_once(self) -> int:
        """Claim and start what free capacity allows, on every route, a transaction per
        route. Returns tasks started."""
        started = 0
        async with self.claiming:
            for lane in self.lanes.values():
                if self._given_way.get(lane.route.name, 0.0) > time.monotonic():
                    continue  # another worker was claiming there a moment ago
                if lane.free(time.time()) <= 0 or lane.all_dry:
                    continue  # no room, or nothing known to wait there: no transaction
                ride = Ride(self, [(lane, set())])
                await self.store.claims.claim_with(ride.claim)
                started += await ride.start()
        return started

    @contextlib.asynccontextmanager
    async def riding(self, lanes: Iterable[tuple[str, Priority]]) -> AsyncIterator[Ride | None]:
        """Claims that ride on a write of this process accepting tasks into ``lanes`` (route
        and priority): for those of its lanes with free slots, claims inside that write's
        transaction (:meth:`Ride.claim`), their tasks started once the block ends (the write
        committed). A task is then claimed in the transaction that accepts it, and reaches
        its call without an event or a turn of the dispatch loop. None: nothing to ride (no
        free slot there)."""
        lanes = list(lanes)
        if self.stopping or not self._with_room(lanes):
            yield None
            return
        async with self.claiming:  # (waits out a claim of the loop's, or a reload)
            fresh = self._with_room(lanes)  # as they are now
            ride = Ride(self, fresh) if fresh else None
            yield ride
            if ride is not None:  # (not reached if the block raised: the write rolled back)
                await ride.start()

    def _with_room(self, lanes: list[tuple[str, Priority]]) -> list[tuple[Lane, set[Priority]]]:
        """The lanes among ``lanes`` with a free slot, each with its priorities named."""
        now = time.time()
        fresh: dict[str, set[Priority]] = {}
        for route, priority in lanes:
            lane = self.lanes.get(route)
            if lane is not None and lane.free(now) > 0:
                fresh.setdefault(route, set()).add(priority)
        return [(self.lanes[r], p) for r, p in fresh.items()]


class Ride:
    """Claims on some lanes, made inside one write transaction (:meth:`claim`: the
    dispatch loop's own, or a write accepting tasks that they ride on), and their tasks
    started once it has committed (:meth:`start`)."""

    def __init__(self, dispatcher: Dispatcher, lanes: list[tuple[Lane, set[Priority]]]) -> None:
        self.dispatcher = dispatcher
        self.lanes = lanes  # each with the priorities that just got work
        self.taken: list[tuple[Lane, list[Task], list[Task]]] = []  # claimed, and failed
        self.more = False  # a lane may hold more than the claims took

    def claim(self, conn: Any, unclaimed: Unclaimed | None = None) -> dict[str, Task]:
        """Claim what each lane's free slots allow, in the caller's transaction; when a
        priority runs dry, share what it left among the others at once. Returns the tasks
        claimed, by id. Synchronous, as the transaction's work is. The lanes of
        ``unclaimed`` (new tasks, not inserted yet) are claimed from it."""
        conf = self.dispatcher.conf
        self.taken, self.more = [], False
        for lane, fresh in self.lanes:
            lane.dry -= fresh  # (a hint: harmless if the transaction rolls back)
            count, again = 0, True
            while again and count < conf.claim_batch:
                live = [p for p in Priority if p not in lane.dry]
                if not live:
                    break
                plan = LaneClaim(lane, live, conf.claim_batch - count, conf.strict_priority)
                got, failed, again = self._claim_once(conn, plan, unclaimed)
                self.taken.append((lane, got, failed))
                count += len(got)
            self.more |= again
        return {t.id: t for _, got, _ in self.taken for t in got}

    def _claim_once(
        self, conn: Any, plan: LaneClaim, unclaimed: Unclaimed | None
    ) -> tuple[list[Task], list[Task], bool]:
        """One claim: the store counts every worker's calls on the route inside it (so
        capacity holds across workers) and each task's instance is picked there too.
        Returns the tasks claimed and failed, and whether to claim again at once: a priority
        came up short, so the others may take its share, unless the claim took nothing and
        work was announced meanwhile (then the announcement's wake starts the next round)."""
        d, lane = self.dispatcher, plan.lane
        announced = lane.announced
        done = d.store.claims.claim_in(
            conn,
            lane.route.name,
            plan.wants,
            plan.assign,
            d.worker_id,
            d.conf.lease_seconds,
            lane.limits,
            plan,
            unclaimed,
        )
        if done is None:  # another worker is claiming there: nothing is marked dry, and
            d.give_way(lane.route.name)  # the route is looked at again soon
            return [], [], False
        got, failed = done
        short = marked = False
        for prio, want in plan.wanted.items():
            if sum(1 for t in got if t.priority == prio) < want:
                short = True
                if lane.announced == announced:  # else work came meanwhile: look again
                    lane.dry.add(prio)
                    marked = True
        return got, failed, short and (marked or bool(got))

    async def start(self) -> int:
        """Once the claims have committed: tell of them, start their tasks, and announce
        those they failed (pinned to an instance that has left the route). Returns the tasks
        started."""
        d = self.dispatcher
        started = 0
        for lane, got, failed in self.taken:
            d.store.claims.tell(got, failed)
            for task in got:
                d.start(lane, task)
            started += len(got)
        if self.more:
            d.wake()  # claimed as much as one claim may: the loop takes the rest
        if failed := [t for _, _, lost in self.taken for t in lost]:
            await d.failed(failed)
        return started


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
        """A task pinned to an instance this worker does not know fails if it was submitted
        before this: before the lane last took its route's instances, or more than
        ``UNKNOWN_PIN_WAIT`` ago. A later one may name an instance newer than this worker's
        list, but news of an instance reaches a worker well within that wait; a pin from a
        gateway whose configuration is stale never becomes one."""
        return max(self.lane.changed_at, time.time() - UNKNOWN_PIN_WAIT)

    def assign(self, claimed: Sequence[Task]) -> list[str | None]:
        """The instance for each claimed task (None: keep its own, a resumed backend job;
        a pinned task's own instance). Picked from the planned states: one that changed
        meanwhile (a call failing, on another coroutine, while the database answered) must
        not leave a task without."""
        avoids = [None if t.provider_job else [t.instance or ""] for t in claimed]
        pins = [t.pinned_instance for t in claimed]
        return policy.assign_instances(self.planned, time.time(), avoids, pins)
