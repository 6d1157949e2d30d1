"""The queue in numbers, on SQLite and PostgreSQL: what waits and runs now, what ended in
the last minute and hour with its run times, and the rate buckets' allowance."""

from __future__ import annotations

import time

from taskgate.models import Priority, Status
from taskgate.store import SqlStore
from tests.integration.test_store import ROUTE, add, claim, outcome


async def test_a_snapshot_counts_waiting_and_running_tasks_per_lane_and_instance(
    store: SqlStore,
) -> None:
    started = time.time()
    await add(store, 3)
    await add(store, 1, priority=Priority.LOW)
    running = await store.claims.claim(
        ROUTE, lambda *_: {Priority.DEFAULT: 2}, lambda ts: ["gpu1"] * len(ts), "w1", 30
    )
    assert len(running) == 2
    snap = await store.stats.snapshot(time.time(), {})
    assert snap.waiting == {(ROUTE, int(Priority.DEFAULT)): 1, (ROUTE, int(Priority.LOW)): 1}
    assert snap.running == {(ROUTE, "gpu1"): 2}
    assert snap.running_by_lane == {(ROUTE, int(Priority.DEFAULT)): 2}
    oldest = snap.oldest_wait[(ROUTE, int(Priority.DEFAULT))]
    assert 0 <= oldest <= time.time() - started  # since it was submitted


async def test_recent_counts_what_ended_in_the_last_minute_and_hour(store: SqlStore) -> None:
    await add(store, 3)
    a, b, c = await claim(store, 3)
    await store.claims.finish(outcome(a))
    await store.claims.finish(outcome(b, Status.FAILED, error={"type": "x", "message": "no"}))
    recent = await store.stats.recent(time.time())
    lane = (ROUTE, int(Priority.DEFAULT))
    assert recent.ended[lane] == {"SUCCESS": (1, 1), "FAILED": (1, 1)}
    assert len(recent.run_times[lane]) == 2 and all(t >= 0 for t in recent.run_times[lane])
    later = await store.stats.recent(time.time() + 120)  # two minutes on: the hour only
    assert later.ended[lane] == {"SUCCESS": (1, 0), "FAILED": (1, 0)}
    assert (await store.stats.recent(time.time() + 7200)).ended == {}
    assert c.status is Status.PROCESSING


async def test_the_allowance_is_what_the_rate_buckets_hold_now(store: SqlStore) -> None:
    await add(store, 2)
    limits = {"gpu1": (60, 1000)}  # a request a second, 1,000 tokens a minute
    await store.claims.claim(
        ROUTE, lambda *_: {Priority.DEFAULT: 2}, lambda ts: ["gpu1"] * len(ts), "w1", 30, limits
    )
    snap = await store.stats.snapshot(time.time(), {(ROUTE, "gpu1"): limits["gpu1"]})
    requests = snap.allowance[(ROUTE, "gpu1", "requests")]
    assert 58 <= requests <= 59  # two taken from a full minute's 60, refilling since
    assert snap.allowance[(ROUTE, "gpu1", "tokens")] == 1000
    assert (await store.stats.snapshot(time.time(), {})).allowance == {}  # none configured
