"""``GET /v1/stats`` (and ``taskgate stats``): per lane (a route and priority) what waits and
runs now, how long the oldest due task has waited, what ended and failed in the last minute
and hour, and the run time's p50 and p95; per instance its calls in flight, capacity, rate
allowance and, where this process runs a scheduler, its health as that scheduler sees it.
Queue figures are the whole cluster's (the store's); health is this process's view."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from taskgate import policy
from taskgate.config import Settings
from taskgate.models import Priority
from taskgate.ops.metrics import Instances
from taskgate.store import SqlStore
from taskgate.views import iso

FAILED = ("FAILED", "TIMEOUT")  # what counts as failed (a cancel is the client's choice)


async def cluster_stats(
    settings: Settings, store: SqlStore, instances: Instances | None
) -> dict[str, Any]:
    now = time.time()
    limits = {
        (r.name, i.name): (i.requests_per_minute, i.tokens_per_minute)
        for r in settings.routes
        for i in r.instances
        if i.rate_limited
    }
    snap = await store.stats.snapshot(now, limits)
    recent = await store.stats.recent(now)
    lanes = []
    for r in settings.routes:
        for p in Priority:
            lane = (r.name, int(p))
            ended = recent.ended.get(lane, {})
            times = sorted(recent.run_times.get(lane, []))
            lanes.append(
                {
                    "route": r.name,
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
            )
    states = instances() if instances is not None else {}
    out_instances = []
    for r in settings.routes:
        for i in r.instances:
            state = states.get((r.name, i.name))
            allowance = {
                limit: round(left, 2)
                for (route, inst, limit), left in snap.allowance.items()
                if (route, inst) == (r.name, i.name)
            }
            out_instances.append(
                {
                    "route": r.name,
                    "instance": i.name,
                    "state": policy.state_of(state, now) if state else None,
                    "in_flight": snap.running.get((r.name, i.name), 0),
                    "capacity": i.max_concurrency,
                    "cooldown_left_seconds": round(max(0.0, state.cooled_until - now), 3)
                    if state
                    else None,
                    "rate_allowance": allowance or None,
                }
            )
    return {"at": iso(now), "lanes": lanes, "instances": out_instances}


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile of sorted values (None when there are none)."""
    if not sorted_values:
        return None
    rank = max(1, round(q * len(sorted_values) + 0.5 - 1e-9))
    return round(sorted_values[min(rank, len(sorted_values)) - 1], 4)
