"""The dispatcher's bookkeeping of empty lanes, with a stand-in store: work announced while
a claim runs is never missed."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from taskgate.config import Settings
from taskgate.models import Priority, Task
from taskgate.scheduling.dispatch import UNKNOWN_PIN_WAIT, Dispatcher, LaneClaim
from taskgate.scheduling.state import Lane, build_lanes

CONF = Settings.model_validate(
    {"routes": [{"name": "r", "models": ["m"], "provider": "mock", "instances": [{"name": "i"}]}]}
)


def dispatcher(during_claim: Any) -> tuple[Dispatcher, Lane]:
    """A dispatcher whose store finds nothing to claim, calling ``during_claim`` first."""

    def claim_in(conn: Any, route: str, plan: Any, assign: Any, *_: Any) -> tuple[list[Task], ...]:
        plan({}, {})
        during_claim(d)
        return [], []

    async def claim_with(claims: Any) -> Any:
        return claims(None)  # (no transaction: the stand-in store has none)

    lanes = build_lanes(CONF)
    found = SimpleNamespace(claim_in=claim_in, claim_with=claim_with, tell=lambda *_: None)
    store = SimpleNamespace(claims=found)

    async def failed(tasks: Any) -> None:
        pass

    d = Dispatcher(CONF.scheduler, store, lanes, "w", lambda lane, task: None, failed)  # type: ignore[arg-type]
    return d, lanes["r"]


async def test_an_empty_claim_marks_its_priorities_dry() -> None:
    d, lane = dispatcher(lambda d: None)
    await d.dispatch_once()
    assert lane.dry == set(Priority)


async def test_work_announced_while_a_claim_runs_keeps_its_lane_live() -> None:
    d, lane = dispatcher(lambda d: d.due({"route": "r", "priority": int(Priority.DEFAULT)}))
    await d.dispatch_once()
    assert lane.dry == set()  # the claim may have missed it: the next one looks again


def test_a_freed_slot_wakes_the_loop_unless_its_lanes_were_seen_empty() -> None:
    d, lane = dispatcher(lambda d: None)
    lane.dry = set(Priority)
    d.freed("r")
    assert not d._wake.is_set()  # nothing known to wait there: no look
    lane.dry.discard(Priority.LOW)
    d.freed("r")
    assert d._wake.is_set()
    d._wake.clear()
    d.freed("a route of another worker's settings")
    assert d._wake.is_set()  # unknown here: look, as before


def test_a_task_pinned_to_an_unknown_instance_waits_to_hear_of_it_only_so_long() -> None:
    lane = build_lanes(CONF)["r"]
    claim = LaneClaim(lane, [Priority.DEFAULT], 1, False)
    assert claim.since == lane.changed_at  # just read: a later pin may name a newer instance
    # read long ago: a pin since then, to an instance still unknown, is a stale gateway's
    lane.changed_at -= 3 * UNKNOWN_PIN_WAIT
    before, since, after = time.time(), claim.since, time.time()
    assert before - UNKNOWN_PIN_WAIT <= since <= after - UNKNOWN_PIN_WAIT
