"""The scheduler's runtime records, shared by its parts: a :class:`Lane` per route (its
provider, instances and priority bookkeeping) and a :class:`Running` per attempt in hand."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from taskgate import policy
from taskgate.config import Instance, Route, Settings
from taskgate.models import Priority, Status, Task
from taskgate.providers import Call, Provider, build
from taskgate.store import Outcome


@dataclass
class Lane:
    """Runtime state of one route: its provider, instances and priority bookkeeping."""

    route: Route
    provider: Provider
    instances: list[policy.InstanceState]
    wrr: policy.SmoothWeightedRoundRobin
    dry: set[Priority] = field(default_factory=set)  # lanes last seen empty
    # work announced so far: a claim that came up short marks its priorities dry only if
    # none was announced while it ran (it may have missed that work)
    announced: int = 0
    # when it last took its route's instances (store/claims.Pinning.since)
    changed_at: float = field(default_factory=time.time)

    def free(self, now: float) -> int:
        return policy.free_slots(self.instances, now)

    @property
    def all_dry(self) -> bool:
        """Every priority was last seen empty: nothing is known to wait here."""
        return self.dry.issuperset(Priority)

    @functools.cached_property
    def limits(self) -> dict[str, tuple[int | None, int | None]]:
        """The route's rate limits (read on every claim: kept once made)."""
        return self.route.limits

    def instance_config(self, name: str) -> Instance:
        return next(i for i in self.route.instances if i.name == name)

    def use(self, route: Route, provider: Provider) -> None:
        """Serve ``route`` as a reload changed it, with ``provider`` for new calls. The
        instances that stay keep their state (calls in flight, health), with their new
        capacity and weight; new ones join; those gone leave the list, and their calls in
        flight release the state they hold."""
        states = {i.name: i for i in self.instances}
        self.instances = [_updated(states.get(i.name), i) for i in route.instances]
        self.route, self.provider = route, provider
        self.changed_at = time.time()
        self.__dict__.pop("limits", None)  # the cached rate limits, made again on next use


def _updated(state: policy.InstanceState | None, i: Instance) -> policy.InstanceState:
    if state is None:
        return instance_state(i)
    state.capacity, state.weight = i.max_concurrency, i.weight
    return state


def build_lanes(settings: Settings, routes: Iterable[str] | None = None) -> dict[str, Lane]:
    """A lane for each configured route (or for those named in ``routes``)."""
    wanted = None if routes is None else set(routes)
    return {
        r.name: new_lane(settings, r) for r in settings.routes if wanted is None or r.name in wanted
    }


def new_lane(settings: Settings, route: Route) -> Lane:
    weights = {p: settings.scheduler.weight(p) for p in Priority}
    return Lane(
        route,
        build(route),
        [instance_state(i) for i in route.instances],
        policy.SmoothWeightedRoundRobin(weights),
    )


def instance_state(i: Instance) -> policy.InstanceState:
    return policy.InstanceState(i.name, i.max_concurrency, i.weight)


@dataclass
class Running:
    """One attempt of a task that this worker holds, from its claim to its ending."""

    task: Task
    lane: Lane
    instance: policy.InstanceState
    started_at: float
    handle: asyncio.Task[None] | None = None
    call: Call | None = None
    calling: bool = False  # the provider call is under way: a cancel may stop it
    cancelled: bool = False
    holds_slot: bool = True  # False once a backend job is submitted (or when resuming one)
    provider_job: dict[str, Any] | None = None  # the backend's job, kept on the task
    timed_out: bool = False  # the run timeout (not a backend's own timeout) ended the call
    polls: int = 0  # of the backend job, by this attempt
    held_until: float = field(init=False)  # the lease, as claimed or last renewed
    ended: Outcome | None = None  # the outcome last built for this attempt (for its span)
    # the lane's route, instance and provider as the attempt started: a reload that changes
    # the lane lets this attempt finish on them
    route: Route = field(init=False)
    config: Instance = field(init=False)
    provider: Provider = field(init=False)
    # why the call was stopped, when its instance left (the error its attempt records)
    stopped: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.held_until = self.task.lease_until or 0.0
        self.route, self.provider = self.lane.route, self.lane.provider
        self.config = self.lane.instance_config(self.instance.name)

    def count_poll(self) -> None:
        self.polls += 1

    @property
    def polling(self) -> bool:
        return self.provider_job is not None and not self.holds_slot

    def outcome(self, worker: str, status: Status, label: str, **kw: Any) -> Outcome:
        """The end of this attempt, fenced on the worker and attempt number; kept as
        ``ended`` (the attempt's span reports it)."""
        kw.setdefault("provider_job", self.provider_job)
        self.ended = Outcome(
            task_id=self.task.id,
            worker=worker,
            attempt=self.task.attempts,
            status=status,
            label=label,
            instance=self.instance.name,
            route=self.lane.route.name,
            started_at=self.started_at,
            task=self.task,
            **kw,
        )
        return self.ended
