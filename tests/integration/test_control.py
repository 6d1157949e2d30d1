"""Admins' actions in the store (``store/control.py``), on SQLite and PostgreSQL: running
ended tasks again, cancelling in bulk and in chunks, paused routes in claims, and the
registry of worker processes."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from taskgate.models import Status, Task
from taskgate.store import SqlStore, TaskFilter, control
from taskgate.store.control import Rerun, Selection, WorkerRecord
from taskgate.store.schema import webhook_deliveries
from tests.integration.test_store import ROUTE, add, add_one, claim, claim_only, outcome


def everything(**kw: object) -> Selection:
    return Selection(TaskFilter(tenant=None), **kw)  # type: ignore[arg-type]


def rerun_on(route: str = ROUTE, budget: int = 2) -> Rerun:
    return Rerun(route, budget)


async def failed(store: SqlStore, **changes: object) -> Task:
    task = await claim_only(store, await add_one(store, **changes))
    ended = await store.claims.finish(outcome(task, Status.FAILED, error={"type": "x"}))
    assert ended is not None and ended.status is Status.FAILED
    return ended


async def test_retry_runs_an_ended_task_again_with_its_history_and_a_fresh_budget(
    store: SqlStore,
) -> None:
    first = await failed(store)
    [again] = await store.control.retry(everything(ids=(first.id,)), lambda t: rerun_on(), "k1")
    assert again.id == first.id and again.status is Status.PENDING
    assert (again.attempts, again.max_attempts, again.retries) == (1, 3, 1)
    assert again.error is None and again.finished_at is None and again.worker is None
    assert len(await store.tasks.history(first.id)) == 1  # the first attempt is kept
    [log] = await store.task_logs.of(first.id, 10)
    assert log.event == "admin_retry" and "k1" in (log.message or "")
    claimed = await claim_only(store, again)
    assert claimed.attempts == 2


async def test_retry_leaves_running_and_successful_tasks_and_those_plan_refuses(
    store: SqlStore,
) -> None:
    done = await claim_only(store, await add_one(store, model="other"))
    await store.claims.finish(outcome(done))
    refused = await failed(store, model="gone")
    waiting = await add_one(store)
    retried = await store.control.retry(
        everything(), lambda t: None if t.model == "gone" else rerun_on(), "k1"
    )
    assert retried == []
    assert (await store.tasks.get(waiting.id)).status is Status.PENDING  # type: ignore[union-attr]
    assert (await store.tasks.get(refused.id)).status is Status.FAILED  # type: ignore[union-attr]


async def test_a_retried_task_goes_behind_its_lane(store: SqlStore) -> None:
    first = await failed(store)
    later = await add(store, 2)
    await store.control.retry(everything(ids=(first.id,)), lambda t: rerun_on(), "k1")
    claimed = await claim(store, limit=3)
    assert [t.id for t in claimed] == [later[0].id, later[1].id, first.id]


async def test_each_ending_of_a_retried_task_queues_its_own_webhook_event(
    store: SqlStore,
) -> None:
    first = await failed(store, webhook_url="http://example.com/hook")
    [again] = await store.control.retry(everything(ids=(first.id,)), lambda t: rerun_on(), "k")
    await store.claims.finish(outcome(await claim_only(store, again)))
    q = sa.select(webhook_deliveries.c.event_id).order_by(webhook_deliveries.c.event_id)
    found = await store.db.read(lambda c: [r[0] for r in c.execute(q)])
    assert found == [f"evt_{first.id}_finished", f"evt_{first.id}_r1_finished"]


async def test_bulk_cancel_takes_only_what_the_filter_names_in_chunks(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "CHUNK", 2)
    mine = await add(store, 5, model="a")
    others = await add(store, 2, model="b", tenant="t2")
    running = await claim(store, limit=1)
    cancelled = await store.control.cancel(Selection(TaskFilter(tenant=None, model="a")), "k1")
    assert sorted(t.id for t in cancelled) == sorted(t.id for t in mine)
    assert all(t.status is Status.CANCELLED for t in cancelled)
    assert "k1" in cancelled[0].error["message"]  # type: ignore[index]
    for t in others:
        assert (await store.tasks.get(t.id)).status is Status.PENDING  # type: ignore[union-attr]
    assert running[0].id in {t.id for t in cancelled}
    entries = await store.task_logs.of(mine[0].id, 10)
    assert [e.event for e in entries] == ["admin_cancel"]


async def test_bulk_actions_keep_to_the_tenant_and_time_range(store: SqlStore) -> None:
    old = await add_one(store, tenant="t1")
    cut = time.time()
    await add_one(store, tenant="t1")
    await add_one(store, tenant="t2")
    sel = Selection(TaskFilter(tenant="t1", created_before=cut + 1e-6))
    assert [t.id for t in await store.control.cancel(sel, "k")] == [old.id]


async def test_a_paused_route_gives_no_claims_until_resumed(store: SqlStore) -> None:
    task = await add_one(store)
    await store.control.set_paused(ROUTE, True, "k1")
    assert await claim(store) == []
    snap = await store.stats.snapshot(time.time(), {})
    assert ROUTE in snap.paused
    await store.control.set_paused(ROUTE, True, "k1")  # twice is the same
    await store.control.set_paused(ROUTE, False, "k1")
    assert [t.id for t in await claim(store)] == [task.id]
    assert ROUTE not in (await store.stats.snapshot(time.time(), {})).paused


async def test_workers_register_by_heartbeat_and_hear_a_drain_request(store: SqlStore) -> None:
    now = time.time()
    record = WorkerRecord("w1", "host", 42, [ROUTE], 3, now, now, False)
    assert await store.control.heartbeat(record) is False
    assert await store.control.heartbeat(record) is False  # the second beat updates
    [w] = await store.control.workers(now - 1)
    assert (w.id, w.in_flight, w.routes, w.drain) == ("w1", 3, [ROUTE], False)
    assert await store.control.request_drain("w1")
    assert not await store.control.request_drain("nobody")
    assert await store.control.heartbeat(record) is True
    await store.control.worker_stopped("w1")
    assert not await store.control.request_drain("w1")  # a stopped worker cannot drain
    [w] = await store.control.workers(now - 1)
    assert w.stopped_at is not None and w.in_flight == 0
    await store.control.forget_workers(time.time() + 1)
    assert await store.control.workers(0) == []
