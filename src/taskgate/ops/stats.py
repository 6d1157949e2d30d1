"""``GET /v1/stats`` (and ``taskgate stats``): per lane (a route and priority) what waits and
runs now, how long the oldest due task has waited, what ended and failed in the last minute
and hour, and the run time's p50 and p95; per instance its calls in flight, capacity, rate
allowance and, where this process runs a scheduler, its health as that scheduler sees it.
Queue figures are the whole cluster's (the store's); health is this process's view.

``GET /v1/stats/timeline``: per route, what ended and failed in each of the last minutes
(the overview's chart)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from taskgate import policy
from taskgate.config import Instance, Settings
from taskgate.models import Priority
from taskgate.ops.metrics import Instances
from taskgate.store import SqlStore
from taskgate.store.stats import QueueSnapshot, Recent
from taskgate.views import iso

FAILED = ("FAILED", "TIMEOUT")  # what counts as failed (a cancel is the client's choice)


async def cluster_stats(
    settings: Settings, store: SqlStore, instances: Instances | None
) -> dict[str, Any]:
    now = time.time()
    snap = await store.stats.snapshot(now, settings.rate_limits)
    recent = await store.stats.recent(now)
    states = instances() if instances is not None else {}
    return {
        "at": iso(now),
        "lanes": [_lane(r.name, p, snap, recent) for r in settings.routes for p in Priority],
        "instances": [
            _instance(r.name, i, snap, states.get((r.name, i.name)), now)
            for r in settings.routes
            for i in r.instances
        ],
    }


async def cluster_routes(
    settings: Settings, store: SqlStore, instances: Instances | None
) -> list[dict[str, Any]]:
    """``GET /v1/routes``: each route with its state (paused or not), what waits and runs on
    it, its capacity and its instances (as in ``/v1/stats``)."""
    now = time.time()
    snap = await store.stats.snapshot(now, settings.rate_limits)
    states = instances() if instances is not None else {}
    out = []
    for r in settings.routes:
        insts = [_instance(r.name, i, snap, states.get((r.name, i.name)), now) for i in r.instances]
        out.append(
            {
                "name": r.name,
                "provider": r.provider,
                "models": r.models,
                "paused": r.name in snap.paused,
                "paused_since": iso(snap.paused.get(r.name)),
                "waiting": sum(snap.waiting.get((r.name, int(p)), 0) for p in Priority),
                "running": sum(snap.running_by_lane.get((r.name, int(p)), 0) for p in Priority),
                "capacity": sum(i.max_concurrency for i in r.instances),
                "instances": [_named(i) for i in insts],
            }
        )
    return out


async def cluster_timeline(settings: Settings, store: SqlStore, minutes: int) -> dict[str, Any]:
    """Per route (the configured ones, then any other that ended tasks lately), a point
    for each of the last ``minutes`` minutes, oldest first, the one under way last: the
    tasks that ended in it and those of them that failed (FAILED or TIMEOUT)."""
    now = time.time()
    found = await store.stats.per_minute(now, minutes)
    first = (math.floor(now / 60) - minutes + 1) * 60.0
    starts = [first + 60.0 * i for i in range(minutes)]
    names = [r.name for r in settings.routes]
    names += sorted(set(found) - set(names))
    return {
        "at": iso(now),
        "minutes": minutes,
        "routes": [{"route": r, "points": _points(found.get(r, {}), starts)} for r in names],
    }


def _points(by_minute: dict[float, dict[str, int]], starts: list[float]) -> list[dict[str, Any]]:
    out = []
    for start in starts:
        ended = by_minute.get(start, {})
        failed = sum(ended.get(s, 0) for s in FAILED)
        out.append({"minute": iso(start), "ended": sum(ended.values()), "failed": failed})
    return out


def _named(instance: dict[str, Any]) -> dict[str, Any]:
    """An instance as a route lists it: by ``name``, without its route."""
    out = {k: v for k, v in instance.items() if k not in ("route", "instance")}
    return {"name": instance["instance"], **out}


def _lane(route: str, p: Priority, snap: QueueSnapshot, recent: Recent) -> dict[str, Any]:
    lane = (route, int(p))
    ended = recent.ended.get(lane, {})  # status: (last hour, last minute)
    times = sorted(recent.run_times.get(lane, []))
    return {
        "route": route,
        "priority": p.label,
        "waiting": snap.waiting.get(lane, 0),
        "running": snap.running_by_lane.get(lane, 0),
        "oldest_wait_seconds": round(snap.oldest_wait.get(lane, 0.0), 3),
        "ended_last_minute": sum(m for _, m in ended.values()),
        "failed_last_minute": sum(ended.get(s, (0, 0))[1] for s in FAILED),
        "ended_last_hour": sum(h for h, _ in ended.values()),
        "failed_last_hour": sum(ended.get(s, (0, 0))[0] for s in FAILED),
        "run_seconds_p50": percentile(times, 0.50),
        "run_seconds_p95": percentile(times, 0.95),
    }


def _instance(
    route: str,
    inst: Instance,
    snap: QueueSnapshot,
    state: policy.InstanceState | None,
    now: float,
) -> dict[str, Any]:
    allowance = {
        limit: round(left, 2)
        for (r, name, limit), left in snap.allowance.items()
        if (r, name) == (route, inst.name)
    }
    return {
        "route": route,
        "instance": inst.name,
        "state": policy.state_of(state, now) if state else None,  # this process's view
        "in_flight": snap.running.get((route, inst.name), 0),
        "capacity": inst.max_concurrency,
        "cooldown_left_seconds": round(max(0.0, state.cooled_until - now), 3) if state else None,
        "rate_allowance": allowance or None,
    }


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile of sorted values (None when there are none)."""
    if not sorted_values:
        return None
    rank = max(1, round(q * len(sorted_values) + 0.5 - 1e-9))
    return round(sorted_values[min(rank, len(sorted_values)) - 1], 4)
