"""Contract tests of the SQL store (which is also the queue), run on SQLite and PostgreSQL.

Every test takes the ``store`` fixture from ``tests/conftest.py``, so each runs once per backend.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from taskgate.errors import Conflict
from taskgate.models import Priority, Status, Task
from taskgate.store import NewTask, Outcome, SqlStore, TaskFilter
from taskgate.store.claims import RouteBusy
from taskgate.store.ops import SWEEP_BATCH
from taskgate.store.schema import api_keys
from tests.integration.db import on_db

ROUTE = "chat-main"
LEASE = 30.0
MS = 0.002  # ids order by millisecond; tasks this far apart get ids in creation order


# --- helpers ---------------------------------------------------------------------------------


def new_task(**changes: Any) -> NewTask:
    """A valid NewTask in the default lane (ROUTE, DEFAULT priority) of tenant t1, key key_a."""
    fields: dict[str, Any] = {
        "tenant": "t1",
        "api_key_id": "key_a",
        "kind": "chat",
        "model": "llama3",
        "route": ROUTE,
        "priority": Priority.DEFAULT,
        "input": {"messages": [{"role": "user", "content": "hi"}]},
        "params": {"temperature": 0.5},
        "max_attempts": 3,
    }
    fields.update(changes)
    return NewTask(**fields)


async def add(store: SqlStore, n: int = 1, *, gap: float = 0.0, **changes: Any) -> list[Task]:
    """Insert ``n`` tasks one after another (``gap`` seconds apart); return them in order."""
    out = []
    for _ in range(n):
        task, created = await store.tasks.insert(new_task(**changes))
        assert created
        out.append(task)
        if gap:
            await asyncio.sleep(gap)
    return out


async def add_one(store: SqlStore, **changes: Any) -> Task:
    return (await add(store, 1, **changes))[0]


async def claim(
    store: SqlStore,
    limit: int = 10,
    *,
    worker: str = "w1",
    route: str = ROUTE,
    priority: Priority = Priority.DEFAULT,
    lease: float = LEASE,
) -> list[Task]:
    return await store.claims.claim(route, lambda *_: {priority: limit}, no_instance, worker, lease)


def no_instance(claimed: Sequence[Task]) -> list[str | None]:
    return [None] * len(claimed)


async def claim_only(store: SqlStore, task: Task, **kw: Any) -> Task:
    """Claim the lane that holds only ``task``; return the claimed task."""
    claimed = await claim(store, route=task.route, priority=task.priority, **kw)
    assert [t.id for t in claimed] == [task.id]
    return claimed[0]


def outcome(task: Task, status: Status = Status.SUCCESS, **changes: Any) -> Outcome:
    """The end of the current attempt of a claimed ``task`` by the worker that holds it."""
    assert task.worker is not None
    fields: dict[str, Any] = {
        "task_id": task.id,
        "worker": task.worker,
        "attempt": task.attempts,
        "status": status,
        "label": status.value.lower(),
        "instance": "inst-1",
        "route": task.route,
        "started_at": time.time(),
        "result": {"text": "hello"} if status is Status.SUCCESS else None,
        "task": task,
    }
    fields.update(changes)
    return Outcome(**fields)


def retry(task: Task, delay: float = 0.0, **changes: Any) -> Outcome:
    """A retry outcome: back to the queue ``delay`` seconds from now."""
    fields: dict[str, Any] = {
        "label": "retry",
        "error": {"type": "overloaded", "message": "503"},
        "run_after": time.time() + delay,
    }
    return outcome(task, Status.PENDING, **{**fields, **changes})


def ids(tasks: Sequence[Task]) -> list[str]:
    return [t.id for t in tasks]


def claim_order(tasks: Sequence[Task]) -> list[Task]:
    return sorted(tasks, key=lambda t: (t.fair_seq, t.id))


async def wait_past(moment: float) -> None:
    """Sleep until the wall clock is past ``moment`` (what the store compares against)."""
    await asyncio.sleep(max(0.0, moment - time.time()) + 0.02)


# --- insert and get --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [42, -1.5, 0, True, None, "42", [1, "2"], {"n": 3}])
async def test_any_json_input_and_result_is_read_back_as_it_was(
    store: SqlStore, value: Any
) -> None:
    """SQLite gives JSON columns NUMERIC affinity: a bare number is kept as a number, and
    must still read back (a task with the input 42 once broke every claim of its route)."""
    task, _ = await store.tasks.insert(new_task(input=value))
    assert (await store.tasks.get(task.id)).input == value  # type: ignore[union-attr]
    claimed = await claim_only(store, task)
    assert claimed.input == value
    ended = await store.claims.finish(outcome(claimed, result=value))
    assert ended is not None and ended.result == value


async def test_insert_returns_a_pending_task_with_the_given_fields(store: SqlStore) -> None:
    before = time.time()
    new = new_task(run_timeout=12.5, deadline=before + 600, priority=Priority.LOW)
    task, created = await store.tasks.insert(new)

    assert created
    assert task.id
    assert task.status is Status.PENDING
    for name in NewTask.__slots__:
        # the limits it is held to are counted, its callback kept apart: neither is on the task
        if name not in ("quotas", "callback"):
            assert getattr(task, name) == getattr(new, name), name
    assert task.attempts == 0
    assert task.worker is None and task.lease_until is None
    assert task.result is None and task.error is None
    assert task.started_at is None and task.finished_at is None
    assert before <= task.created_at <= time.time()
    assert task.updated_at == task.created_at


async def test_get_returns_the_stored_task(store: SqlStore) -> None:
    task = await add_one(store)
    assert await store.tasks.get(task.id) == task
    assert await store.tasks.get("no-such-task") is None


async def test_get_is_scoped_by_tenant(store: SqlStore) -> None:
    task = await add_one(store, tenant="t1")
    assert await store.tasks.get(task.id, tenant="t1") == task
    assert await store.tasks.get(task.id, tenant="t2") is None
    assert await store.tasks.get(task.id, tenant=None) == task


# --- idempotency -----------------------------------------------------------------------------


async def test_idempotent_replay_returns_the_same_task(store: SqlStore) -> None:
    first, created = await store.tasks.insert(new_task(idempotency_key="k1", request_hash="h1"))
    again, created_again = await store.tasks.insert(
        new_task(idempotency_key="k1", request_hash="h1")
    )
    assert created and not created_again
    assert again == first
    assert len(await store.tasks.find(TaskFilter(tenant=None))) == 1


async def test_idempotency_key_reused_with_another_request_conflicts(store: SqlStore) -> None:
    first, _ = await store.tasks.insert(new_task(idempotency_key="k1", request_hash="h1"))
    with pytest.raises(Conflict) as info:
        await store.tasks.insert(new_task(idempotency_key="k1", request_hash="h2"))
    assert info.value.details["task_id"] == first.id
    assert len(await store.tasks.find(TaskFilter(tenant=None))) == 1


async def test_idempotency_keys_are_per_tenant(store: SqlStore) -> None:
    mine, _ = await store.tasks.insert(
        new_task(tenant="t1", idempotency_key="k1", request_hash="h1")
    )
    theirs, created = await store.tasks.insert(
        new_task(tenant="t2", idempotency_key="k1", request_hash="h1")
    )
    assert created
    assert theirs.id != mine.id
    assert theirs.tenant == "t2"


async def test_concurrent_inserts_are_batched_and_all_stored(store: SqlStore) -> None:
    flushes: list[int] = []
    flush = store.tasks._inserts._flush

    async def counting_flush(batch: Sequence[NewTask]) -> Any:
        flushes.append(len(batch))
        return await flush(batch)

    store.tasks._inserts._flush = counting_flush
    news = [new_task(idempotency_key=f"k{i}", request_hash="h") for i in range(20)]
    news += [new_task() for _ in range(20)]

    results = await asyncio.gather(*(store.tasks.insert(n) for n in news))

    assert all(created for _, created in results)
    assert [t.idempotency_key for t, _ in results] == [n.idempotency_key for n in news]
    made = {t.id for t, _ in results}
    assert len(made) == len(news)
    assert {t.id for t in await store.tasks.find(TaskFilter(tenant=None, limit=100))} == made
    assert sum(flushes) == len(news)
    assert len(flushes) < len(news), "concurrent inserts should share transactions"


async def test_concurrent_replays_of_one_key_settle_on_one_task(store: SqlStore) -> None:
    """Two copies of one request in flight at once (a client retry), next to other inserts."""
    keyed = new_task(idempotency_key="dup", request_hash="h")
    results = await asyncio.gather(
        store.tasks.insert(keyed),
        store.tasks.insert(keyed),
        store.tasks.insert(new_task()),
        return_exceptions=True,
    )

    for r in results:
        assert not isinstance(r, BaseException), repr(r)
    (a, a_new), (b, b_new), (_, other_new) = results  # type: ignore[misc]
    assert a.id == b.id
    assert sorted([a_new, b_new]) == [False, True]
    assert other_new
    assert len(await store.tasks.find(TaskFilter(tenant=None))) == 2


async def test_concurrent_conflicting_requests_on_one_key(store: SqlStore) -> None:
    results = await asyncio.gather(
        store.tasks.insert(new_task(idempotency_key="dup", request_hash="h1")),
        store.tasks.insert(new_task(idempotency_key="dup", request_hash="h2")),
        return_exceptions=True,
    )
    first, second = results
    assert isinstance(first, tuple) and first[1] is True, repr(first)
    assert isinstance(second, Conflict), repr(second)


async def test_two_stores_racing_on_one_key_settle_on_one_task(store: SqlStore) -> None:
    """Two gateways (two store objects) insert the same keyed request at the same time."""
    other = SqlStore(store.url)
    await other.open()
    try:
        keyed = new_task(idempotency_key="race", request_hash="h")
        for _ in range(5):
            (a, a_new), (b, b_new) = await asyncio.gather(
                store.tasks.insert(keyed), other.tasks.insert(keyed)
            )
            assert a.id == b.id
            assert [a_new, b_new].count(True) <= 1
        assert len(await store.tasks.find(TaskFilter(tenant=None))) == 1
    finally:
        await other.close()


# --- claim -----------------------------------------------------------------------------------


async def test_claim_takes_only_its_lane(store: SqlStore) -> None:
    mine = await add(store, 3)
    await add(store, 2, route="other-route")
    await add(store, 2, priority=Priority.CRITICAL)

    claimed = await claim(store, limit=10)

    assert sorted(ids(claimed)) == sorted(ids(mine))


async def test_claim_moves_tasks_to_processing_under_a_lease(store: SqlStore) -> None:
    await add(store, 2)
    before = time.time()
    claimed = await claim(store, worker="w7", lease=45.0)
    after = time.time()

    assert len(claimed) == 2
    for t in claimed:
        assert t.status is Status.PROCESSING
        assert t.attempts == 1
        assert t.worker == "w7"
        assert t.lease_until is not None
        assert before + 45.0 <= t.lease_until <= after + 45.0
        assert t.started_at is not None
        assert await store.tasks.get(t.id) == t


async def test_claim_respects_the_limit_and_claim_order(store: SqlStore) -> None:
    a = await add(store, 3, gap=MS, api_key_id="key_a")  # fair_seq 0, 1, 2
    b = await add_one(store, api_key_id="key_b")  # joins at the front: fair_seq 0
    assert [t.fair_seq for t in a] == [0, 1, 2]
    assert b.fair_seq == 0

    first = await claim(store, limit=2)
    second = await claim(store, limit=2)

    # fair_seq comes first (b beats a[1] although a[1] is older), then id
    assert ids(first) == [a[0].id, b.id]
    assert ids(second) == [a[1].id, a[2].id]
    assert await claim(store) == []


async def test_a_task_is_never_claimed_twice(store: SqlStore) -> None:
    made = await add(store, 20)

    async def claim_when_free(worker: str) -> list[Task]:
        while True:  # on PostgreSQL a claim gives way to another under way on the route
            try:
                return await claim(store, limit=8, worker=worker)
            except RouteBusy:
                await asyncio.sleep(0.001)

    claims = await asyncio.gather(*(claim_when_free(f"w{i}") for i in range(3)))

    seen = [t.id for c in claims for t in c]
    assert all(len(c) <= 8 for c in claims)
    assert len(seen) == len(set(seen)), "a task was claimed twice"
    assert sorted(seen) == sorted(ids(made))
    for i, c in enumerate(claims):
        assert all(t.worker == f"w{i}" and t.attempts == 1 for t in c)
    assert await claim(store) == []


async def test_claim_skips_tasks_not_yet_due(store: SqlStore) -> None:
    task = await claim_only(store, await add_one(store))
    written = await store.claims.finish(retry(task, delay=0.3))
    assert written is not None

    assert await claim(store) == []
    await wait_past(written.run_after)
    assert ids(await claim(store)) == [task.id]


async def test_claim_skips_tasks_past_their_deadline(store: SqlStore) -> None:
    await add_one(store, deadline=time.time() - 1)
    live = await add_one(store, deadline=time.time() + 600)
    assert ids(await claim(store)) == [live.id]


# --- fairness --------------------------------------------------------------------------------


async def test_a_new_key_is_not_queued_behind_another_keys_backlog(store: SqlStore) -> None:
    results = await asyncio.gather(
        *(store.tasks.insert(new_task(api_key_id="key_a")) for _ in range(50))
    )
    a = [t for t, _ in results]
    b = await add(store, 3, api_key_id="key_b")

    assert sorted(t.fair_seq for t in a) == list(range(50))
    assert [t.fair_seq for t in b] == [0, 1, 2], "b's own tasks queue behind its first"

    first = await claim(store, limit=2)
    assert b[0].id in ids(first)
    assert b[1].id not in ids(first)
    second = await claim(store, limit=2)
    assert b[1].id in ids(second)


async def test_a_key_joins_at_the_lanes_current_front(store: SqlStore) -> None:
    await add(store, 10, gap=MS, api_key_id="key_a")
    await claim(store, limit=4)  # the lane's front is now fair_seq 4
    late = await add_one(store, api_key_id="key_b")
    assert late.fair_seq == 4
    assert await store.tasks.position(late) == 2  # behind a's seq-4 task, which is older


# --- finish ----------------------------------------------------------------------------------


async def test_finish_by_the_lease_holder_sticks(store: SqlStore) -> None:
    task = await claim_only(store, await add_one(store))
    out = outcome(task, result={"text": "done"})

    written = await store.claims.finish(out)

    assert written is not None
    assert written.status is Status.SUCCESS
    assert written.result == {"text": "done"}
    assert written.instance == "inst-1"
    assert written.lease_until is None
    assert written.finished_at is not None
    assert await store.tasks.get(task.id) == written
    [attempt] = await store.tasks.history(task.id)
    assert attempt.task_id == task.id
    assert attempt.number == 1
    assert attempt.outcome == "success"
    assert attempt.route == ROUTE
    assert attempt.instance == "inst-1"
    assert attempt.started_at == out.started_at
    assert attempt.ended_at is not None and attempt.ended_at >= out.started_at


@pytest.mark.parametrize("carried", [True, False], ids=["task carried", "task read back"])
async def test_endings_of_every_kind_in_one_batch_return_the_tasks_as_stored(
    store: SqlStore, carried: bool
) -> None:
    """Whether built from the task the attempt holds or read back, an ending returns the
    task exactly as the store now has it."""
    await add(store, 5, gap=MS)
    tasks = claim_order(await claim(store))
    assert len(tasks) == 5
    spent = {"input_tokens": 7, "output_tokens": 11, "cost": 0.125}
    outcomes = [
        outcome(tasks[0], result={"text": "done", "n": [1, 2.5]}, **spent),
        outcome(tasks[1], result="text", provider_job={"id": "job-1", "instance": "inst-1"}),
        outcome(tasks[2], Status.FAILED, error={"type": "bad_request", "message": "no"}),
        retry(tasks[3], delay=5, **spent),
        retry(tasks[4], next_route="chat-fallback", label="failover"),
    ]
    if not carried:
        outcomes = [dataclasses.replace(o, task=None) for o in outcomes]

    written = await asyncio.gather(*(store.claims.finish(o) for o in outcomes))

    for task in written:
        assert task is not None
        assert await store.tasks.get(task.id) == task
    assert [t.status for t in written if t] == [Status.SUCCESS] * 2 + [Status.FAILED] + [
        Status.PENDING
    ] * 2
    assert written[0] and (written[0].input_tokens, written[0].cost) == (7, 0.125)
    assert written[4] and written[4].route == "chat-fallback" and written[4].worker is None


async def test_a_duplicate_finish_changes_nothing(store: SqlStore) -> None:
    task = await claim_only(store, await add_one(store))
    written = await store.claims.finish(outcome(task))
    assert written is not None

    late = outcome(task, Status.FAILED, error={"type": "late", "message": "late"})
    assert await store.claims.finish(late) is None
    assert await store.tasks.get(task.id) == written
    assert len(await store.tasks.history(task.id)) == 1


async def test_concurrent_finishes_of_one_attempt_write_once(store: SqlStore) -> None:
    task = await claim_only(store, await add_one(store))
    results = await asyncio.gather(
        store.claims.finish(outcome(task, result="one")),
        store.claims.finish(outcome(task, result="two")),
    )
    written = [r for r in results if r is not None]
    assert len(written) == 1
    assert await store.tasks.get(task.id) == written[0]
    assert len(await store.tasks.history(task.id)) == 1


async def test_finish_by_another_worker_is_refused(store: SqlStore) -> None:
    task = await claim_only(store, await add_one(store), worker="w1")
    assert await store.claims.finish(outcome(task, worker="w2")) is None
    assert await store.tasks.get(task.id) == task
    assert await store.tasks.history(task.id) == []


async def test_finish_of_a_stale_attempt_is_refused(store: SqlStore) -> None:
    first = await claim_only(store, await add_one(store))
    assert await store.claims.finish(retry(first)) is not None
    second = await claim_only(store, first)
    assert second.attempts == 2

    assert await store.claims.finish(outcome(first)) is None  # attempt 1 is over
    assert (await store.tasks.get(first.id)).status is Status.PROCESSING  # type: ignore[union-attr]
    written = await store.claims.finish(outcome(second))
    assert written is not None and written.status is Status.SUCCESS
    assert [a.number for a in await store.tasks.history(first.id)] == [1, 2]
    assert [a.outcome for a in await store.tasks.history(first.id)] == ["retry", "success"]


async def test_a_retry_puts_the_task_back_on_a_later_route(store: SqlStore) -> None:
    task = await claim_only(store, await add_one(store))
    written = await store.claims.finish(
        retry(task, delay=0.3, next_route="fallback", label="failover")
    )

    assert written is not None
    assert written.status is Status.PENDING
    assert written.route == "fallback"
    assert written.worker is None and written.lease_until is None
    assert written.attempts == 1
    assert written.error == {"type": "overloaded", "message": "503"}
    assert written.finished_at is None
    [attempt] = await store.tasks.history(task.id)
    assert (attempt.outcome, attempt.route) == ("failover", ROUTE)  # where it ran

    assert await claim(store, route=ROUTE) == []
    assert await claim(store, route="fallback") == []  # not before run_after
    await wait_past(written.run_after)
    again = await claim(store, route="fallback", worker="w2")
    assert ids(again) == [task.id]
    assert again[0].attempts == 2 and again[0].worker == "w2"


async def test_record_attempt_adds_history_only(store: SqlStore) -> None:
    task = await claim_only(store, await add_one(store))
    await store.claims.record_attempt(retry(task, label="cancelled"))

    assert await store.tasks.get(task.id) == task
    [attempt] = await store.tasks.history(task.id)
    assert attempt.outcome == "cancelled"
    assert attempt.number == task.attempts


# --- renew -----------------------------------------------------------------------------------


async def test_renew_extends_only_the_leases_a_worker_holds(store: SqlStore) -> None:
    await add(store, 3)
    mine = await claim(store, limit=2, worker="w1", lease=5)
    theirs = await claim(store, limit=1, worker="w2", lease=5)
    pending = await add_one(store)

    before = time.time()
    held = await store.claims.renew(
        [*ids(mine), *ids(theirs), pending.id, "no-such-task"], "w1", 100
    )

    assert held == set(ids(mine))
    for t in mine:
        lease_until = (await store.tasks.get(t.id)).lease_until  # type: ignore[union-attr]
        assert lease_until is not None and lease_until >= before + 100
    assert await store.tasks.get(theirs[0].id) == theirs[0]
    assert await store.claims.renew([], "w1", 100) == set()


async def test_a_cancelled_task_is_no_longer_held(store: SqlStore) -> None:
    await add(store, 2)
    claimed = await claim(store, worker="w1", limit=2)
    await store.tasks.cancel(claimed[0].id, tenant=None)
    assert await store.claims.renew(ids(claimed), "w1", LEASE) == {claimed[1].id}


# --- cancel ----------------------------------------------------------------------------------


async def test_cancel_a_pending_task(store: SqlStore) -> None:
    task = await add_one(store)
    cancelled = await store.tasks.cancel(task.id, tenant="t1")

    assert cancelled is not None
    assert cancelled.status is Status.CANCELLED
    assert cancelled.error is not None and cancelled.error["type"] == "cancelled"
    assert cancelled.finished_at is not None
    assert await store.tasks.get(task.id) == cancelled
    assert await claim(store) == []


async def test_cancel_a_running_task_beats_its_worker(store: SqlStore) -> None:
    task = await claim_only(store, await add_one(store))
    cancelled = await store.tasks.cancel(task.id, tenant="t1")
    assert cancelled is not None and cancelled.status is Status.CANCELLED
    assert cancelled.lease_until is None

    assert await store.claims.finish(outcome(task)) is None
    assert await store.tasks.get(task.id) == cancelled
    assert await store.tasks.history(task.id) == []


async def test_cancel_a_finished_task_returns_it_unchanged(store: SqlStore) -> None:
    task = await claim_only(store, await add_one(store))
    done = await store.claims.finish(outcome(task))
    assert done is not None
    assert await store.tasks.cancel(task.id, tenant="t1") == done
    assert await store.tasks.get(task.id) == done


async def test_cancel_is_scoped_by_tenant(store: SqlStore) -> None:
    task = await add_one(store, tenant="t1")
    assert await store.tasks.cancel(task.id, tenant="t2") is None
    assert await store.tasks.get(task.id) == task
    assert await store.tasks.cancel("no-such-task", tenant="t1") is None
    admin = await store.tasks.cancel(task.id, tenant=None)
    assert admin is not None and admin.status is Status.CANCELLED


# --- sweep -----------------------------------------------------------------------------------


async def test_sweep_requeues_a_task_whose_lease_expired(store: SqlStore) -> None:
    task = await claim_only(store, await add_one(store, max_attempts=3), lease=0.01)
    await wait_past(task.lease_until)  # type: ignore[arg-type]

    changed = await store.claims.sweep()

    assert ids(changed) == [task.id]
    requeued = changed[0]
    assert requeued.status is Status.PENDING
    assert requeued.worker is None and requeued.lease_until is None
    assert requeued.error is not None and requeued.error["type"] == "worker_lost"
    assert await store.tasks.get(task.id) == requeued
    [lost] = await store.tasks.history(task.id)
    assert lost.outcome == "lost" and lost.number == 1
    assert await store.claims.finish(outcome(task)) is None, "the lost worker's late finish counts"
    again = await claim_only(store, task)
    assert again.attempts == 2


async def test_sweep_fails_a_lost_task_out_of_attempts(store: SqlStore) -> None:
    task = await claim_only(store, await add_one(store, max_attempts=1), lease=0.01)
    await wait_past(task.lease_until)  # type: ignore[arg-type]

    [failed] = await store.claims.sweep()

    assert failed.id == task.id
    assert failed.status is Status.FAILED
    assert failed.error is not None and failed.error["type"] == "worker_lost"
    assert failed.finished_at is not None
    assert [a.outcome for a in await store.tasks.history(task.id)] == ["lost"]
    assert await claim(store) == []


async def test_sweep_times_out_pending_tasks_past_their_deadline(store: SqlStore) -> None:
    task = await add_one(store, deadline=time.time() - 0.01)

    [timed_out] = await store.claims.sweep()

    assert timed_out.id == task.id
    assert timed_out.status is Status.TIMEOUT
    assert timed_out.error is not None and timed_out.error["type"] == "deadline"
    assert timed_out.finished_at is not None
    assert await store.tasks.get(task.id) == timed_out


async def test_sweep_leaves_tasks_that_are_not_due(store: SqlStore) -> None:
    running = await claim_only(store, await add_one(store, route="r1"), lease=600)
    waiting = await add_one(store, deadline=time.time() + 600)
    plain = await add_one(store)
    done = await store.claims.finish(
        outcome(await claim_only(store, await add_one(store, route="r2")))
    )

    assert await store.claims.sweep() == []
    for t in (running, waiting, plain, done):
        assert t is not None
        assert await store.tasks.get(t.id) == t


# --- position --------------------------------------------------------------------------------


async def test_position_counts_pending_tasks_ahead_in_the_lane(store: SqlStore) -> None:
    a = await add(store, 4, gap=MS, api_key_id="key_a")
    b = await add_one(store, api_key_id="key_b")  # fair_seq 0: second in line
    await add(store, 3, route="other-route")  # other lanes do not count
    await add(store, 3, priority=Priority.CRITICAL)
    lane = claim_order([*a, b])
    assert ids(lane) == [a[0].id, b.id, a[1].id, a[2].id, a[3].id]

    assert [await store.tasks.position(t) for t in lane] == [1, 2, 3, 4, 5]

    await claim(store, limit=1)  # a[0] leaves the queue
    await store.tasks.cancel(a[1].id, tenant=None)
    assert await store.tasks.position(b) == 1
    assert await store.tasks.position(a[2]) == 2
    assert await store.tasks.position(a[3]) == 3


# --- list ------------------------------------------------------------------------------------


async def test_list_is_scoped_by_tenant(store: SqlStore) -> None:
    t1 = await add(store, 2, tenant="t1")
    t2 = await add(store, 3, tenant="t2")

    assert set(ids(await store.tasks.find(TaskFilter(tenant="t1")))) == set(ids(t1))
    assert set(ids(await store.tasks.find(TaskFilter(tenant="t2")))) == set(ids(t2))
    assert set(ids(await store.tasks.find(TaskFilter(tenant=None)))) == set(ids(t1 + t2))
    assert await store.tasks.find(TaskFilter(tenant="t3")) == []


async def test_list_filters_by_status_kind_and_model(store: SqlStore) -> None:
    chat = await add_one(store, kind="chat", model="llama3")
    image = await add_one(store, kind="image", model="flux", route="images")
    other = await add_one(store, kind="chat", model="qwen", route="qwen")
    running = await claim_only(store, other)
    await store.tasks.cancel(image.id, tenant=None)

    async def listed(**kw: Any) -> set[str]:
        return set(ids(await store.tasks.find(TaskFilter(tenant="t1", **kw))))

    assert await listed(statuses=(Status.PENDING,)) == {chat.id}
    assert await listed(statuses=(Status.PENDING, Status.PROCESSING)) == {chat.id, running.id}
    assert await listed(statuses=(Status.CANCELLED,)) == {image.id}
    assert await listed(statuses=(Status.SUCCESS,)) == set()
    assert await listed(kind="chat") == {chat.id, other.id}
    assert await listed(kind="image") == {image.id}
    assert await listed(model="qwen") == {other.id}
    assert await listed(kind="chat", model="flux") == set()


async def test_list_newest_first_within_created_bounds(store: SqlStore) -> None:
    made = await add(store, 4, gap=0.01)
    newest_first = list(reversed(ids(made)))

    assert ids(await store.tasks.find(TaskFilter(tenant="t1"))) == newest_first
    after = await store.tasks.find(TaskFilter(tenant="t1", created_after=made[1].created_at))
    assert ids(after) == newest_first[:3]  # inclusive
    before = await store.tasks.find(TaskFilter(tenant="t1", created_before=made[2].created_at))
    assert ids(before) == newest_first[2:]  # exclusive
    both = TaskFilter(
        tenant="t1", created_after=made[1].created_at, created_before=made[3].created_at
    )
    assert ids(await store.tasks.find(both)) == [made[2].id, made[1].id]


async def test_list_cursor_walks_every_task_once(store: SqlStore) -> None:
    made = await add(store, 7, gap=MS)
    await add(store, 2, tenant="t2")
    walked: list[str] = []
    pages: list[int] = []
    cursor = None
    while True:
        page = await store.tasks.find(TaskFilter(tenant="t1", limit=3, before_id=cursor))
        if not page:
            break
        pages.append(len(page))
        walked += ids(page)
        cursor = page[-1].id

    assert pages == [3, 3, 1]
    assert walked == list(reversed(ids(made)))


# --- API keys --------------------------------------------------------------------------------


async def stored_hash(store: SqlStore, key_id: str) -> str:
    q = sa.select(api_keys.c.hash).where(api_keys.c.id == key_id)
    return await on_db(store.url, lambda conn: conn.scalar(q))


async def test_create_key_stores_only_a_hash_of_the_secret(store: SqlStore) -> None:
    key, secret = await store.keys.create("t1", "ci")

    assert secret.startswith("tg_") and len(secret) > 20
    assert key.tenant == "t1" and key.name == "ci" and not key.admin and key.active
    assert secret.startswith(key.prefix)
    hashed = await stored_hash(store, key.id)
    assert hashed and hashed != secret and secret not in hashed
    assert await store.keys.for_secret(secret) == key
    assert await store.keys.for_secret(secret + "x") is None
    assert await store.keys.for_secret(hashed) is None


async def test_each_key_gets_its_own_secret(store: SqlStore) -> None:
    (a, sa_), (b, sb) = [await store.keys.create("t1", n) for n in ("a", "b")]
    assert a.id != b.id and sa_ != sb
    assert (await store.keys.for_secret(sb)) == b


async def test_revoke_key(store: SqlStore) -> None:
    key, secret = await store.keys.create("t1", "ci")
    assert await store.keys.revoke(key.id) is True

    revoked = await store.keys.for_secret(secret)
    assert revoked is not None and revoked.id == key.id
    assert not revoked.active
    assert await store.keys.revoke(key.id) is False
    assert await store.keys.revoke("key_missing") is False


async def test_list_keys_by_tenant(store: SqlStore) -> None:
    a, _ = await store.keys.create("t1", "a")
    b, _ = await store.keys.create("t2", "b")
    c, _ = await store.keys.create("t1", "c")

    assert await store.keys.find("t1") == [a, c]
    assert await store.keys.find("t2") == [b]
    assert await store.keys.find() == [a, b, c]
    assert await store.keys.find("t3") == []


async def test_has_admin_key(store: SqlStore) -> None:
    assert await store.keys.has_admin() is False
    await store.keys.create("t1", "tenant key")
    assert await store.keys.has_admin() is False
    admin, _ = await store.keys.create("default", "root", admin=True)
    assert admin.admin
    assert await store.keys.has_admin() is True
    await store.keys.revoke(admin.id)
    assert await store.keys.has_admin() is False  # a revoked admin key leaves none usable


async def test_one_sweep_requeues_more_lost_tasks_than_a_batch(store: SqlStore) -> None:
    n = SWEEP_BATCH + 20
    await asyncio.gather(*(store.tasks.insert(new_task()) for _ in range(n)))
    claimed = await claim(store, n, lease=0.01)
    assert len(claimed) == n
    await wait_past(max(t.lease_until or 0 for t in claimed))
    assert len(await store.claims.sweep()) == n


async def test_expire_leases_ends_only_the_named_workers_leases(store: SqlStore) -> None:
    mine = await claim_only(store, await add_one(store, route="a"), worker="dead:1:x")
    other = await claim_only(store, await add_one(store, route="b"), worker="alive:2:y")
    assert await store.claims.processing_workers() == {"dead:1:x", "alive:2:y"}
    await store.claims.expire_leases(["dead:1:x"])
    assert ids(await store.claims.sweep()) == [mine.id]
    still = await store.tasks.get(other.id)
    assert still is not None and still.status is Status.PROCESSING


async def test_tokens_spent_are_taken_after_the_refill_up_to_the_next_claim(
    store: SqlStore,
) -> None:
    """600 tokens a minute (10 a second): a call claimed on a full bucket that spends 601
    tokens leaves it at -1 at the next claim, however long the call took; counting the
    refill of its running time after taking the tokens would make that +4 here."""
    limits = {"i1": (None, 600)}
    seen: list[Mapping[str, int | None]] = []

    def plan(_: Mapping[str, int], allowed: Mapping[str, int | None]) -> dict[Priority, int]:
        seen.append(dict(allowed))
        return {Priority.DEFAULT: 1}

    task = await add_one(store)
    [t] = await store.claims.claim(ROUTE, plan, lambda ts: ["i1"] * len(ts), "w1", LEASE, limits)
    await asyncio.sleep(0.5)
    ending = Outcome(t.id, "w1", t.attempts, Status.SUCCESS, "success", "i1", ROUTE, 0.0)
    assert await store.claims.finish(dataclasses.replace(ending, tokens=601)) is not None
    await store.claims.claim(ROUTE, plan, no_instance, "w1", LEASE, limits)
    assert seen == [{"i1": None}, {"i1": 0}]  # tokens left, then none
    assert task.id == t.id


# --- server secrets --------------------------------------------------------------------------


async def test_a_server_secret_is_made_once_and_every_store_reads_the_same(
    store: SqlStore,
) -> None:
    """Two processes (two store objects) start at once on a new database: one secret."""
    other = SqlStore(store.url)
    await other.open()
    try:
        a, b = await asyncio.gather(
            store.server_secrets.get("file_urls"), other.server_secrets.get("file_urls")
        )
        assert a == b and len(a) >= 40
        assert await other.server_secrets.get("file_urls") == a
        assert await store.server_secrets.get("another") not in (a, "")
    finally:
        await other.close()
