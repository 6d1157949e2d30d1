"""The queue in numbers, on SQLite and PostgreSQL: what waits and runs now, what ended in
the last minute and hour with its run times and in each of the last minutes, and the rate
buckets' allowance."""

from __future__ import annotations

import time

from taskgate.models import Priority, Status
from taskgate.store import SqlStore
from taskgate.store.schema import tasks
from tests.integration.db import on_db
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


async def test_per_minute_counts_what_ended_by_route_minute_and_status(store: SqlStore) -> None:
    await add(store, 3)
    a, b, c = await claim(store, 3)
    await store.claims.finish(outcome(a))
    await store.claims.finish(outcome(b, Status.FAILED, error={"type": "x", "message": "no"}))
    now = time.time()
    found = await store.stats.per_minute(now, 60)
    assert list(found) == [ROUTE]
    totals: dict[str, int] = {}
    for minute, counts in found[ROUTE].items():  # one minute, or two if one ended just after
        assert minute % 60 == 0 and now - 120 < minute <= now
        for status, n in counts.items():
            totals[status] = totals.get(status, 0) + n
    assert totals == {"SUCCESS": 1, "FAILED": 1}
    assert await store.stats.per_minute(now + 3600, 60) == {}  # an hour on: none
    assert await store.stats.per_minute(now + 120, 1) == {}  # only the minute under way
    assert c.status is Status.PROCESSING


async def test_a_minute_holds_what_ended_from_its_first_second_to_its_last(
    store: SqlStore,
) -> None:
    task = (await add(store, 1))[0]
    template = {col.name: getattr(task, col.name) for col in tasks.columns}
    template.update(priority=int(task.priority), status="SUCCESS")
    minute = 60.0 * 30_000_000  # 2027-01-15 08:00 UTC
    ended = [(minute - 0.1, "SUCCESS"), (minute, "TIMEOUT"), (minute + 59.9, "SUCCESS")]
    rows = [
        {**template, "id": f"{i:032x}", "finished_at": at, "status": status}
        for i, (at, status) in enumerate(ended, 1)
    ]
    await on_db(store.url, lambda conn: conn.execute(tasks.insert(), rows))
    found = await store.stats.per_minute(minute + 30, 2)
    assert found == {ROUTE: {minute - 60: {"SUCCESS": 1}, minute: {"TIMEOUT": 1, "SUCCESS": 1}}}
