"""The webhook outbox on the real store (SQLite and PostgreSQL): a delivery row is written in
the transaction that ends a task (finish, cancel, sweep), a batch gets exactly one when its
last task ends however its tasks race, claims are exclusive, attempts are fenced, and each
tenant has one signing secret."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from taskgate.callbacks import AIFLOW, Callback
from taskgate.models import Batch, Status, Task, new_id
from taskgate.store import SqlStore
from taskgate.store.outbox import DELIVERED, FAILED, PENDING, Delivery, add_deliveries
from taskgate.store.schema import webhook_deliveries
from taskgate.views import task_json
from tests.conftest import PG_URL, reset_postgres
from tests.integration.db import on_db
from tests.integration.test_store import add_one, claim, claim_only, new_task, outcome, retry

URL = "https://hooks.example.test/taskgate"


async def deliveries(store: SqlStore) -> list[Delivery]:
    rows = await on_db(
        store.url, lambda c: c.execute(sa.select(webhook_deliveries)).mappings().all()
    )
    return [Delivery.from_row(r) for r in rows]


async def add_batch(store: SqlStore, models: list[str], url: str | None = URL) -> list[Task]:
    batch = Batch(new_id(), "t1", "key_a", "chat", False, models, time.time(), webhook_url=url)
    return await store.batches.insert(batch, [new_task(model=m, batch_id=batch.id) for m in models])


# --- the outbox row comes with the ending ------------------------------------------------------


async def test_finishing_a_task_queues_its_event_in_the_same_write(store: SqlStore) -> None:
    task = await claim_only(store, await add_one(store, webhook_url=URL))
    written = await store.claims.finish(outcome(task))
    assert written is not None
    [d] = await store.outbox.of(task_id=task.id)
    assert (d.url, d.tenant, d.status, d.attempts) == (URL, "t1", PENDING, 0)
    assert d.event_id == f"evt_{task.id}_finished" == d.payload["id"]
    assert d.payload["type"] == "task.finished"
    assert d.payload["data"] == task_json(written)
    assert d.payload["data"]["status"] == "SUCCESS"
    assert d.next_attempt_at <= time.time()


async def test_retries_fenced_out_endings_and_tasks_without_a_url_queue_nothing(
    store: SqlStore,
) -> None:
    plain = await claim_only(store, await add_one(store))
    assert await store.claims.finish(outcome(plain)) is not None
    hooked = await claim_only(store, await add_one(store, webhook_url=URL))
    assert await store.claims.finish(retry(hooked)) is not None  # back to the queue: not an ending
    assert await deliveries(store) == []
    again = await claim_only(store, hooked)
    assert await store.claims.finish(outcome(again, Status.FAILED)) is not None
    assert await store.claims.finish(outcome(again)) is None  # a duplicate ending changes nothing
    [d] = await deliveries(store)
    assert d.payload["data"]["status"] == "FAILED"


async def test_cancelling_queues_the_event_once(store: SqlStore) -> None:
    task = await add_one(store, webhook_url=URL)
    cancelled = await store.tasks.cancel(task.id, "t1")
    assert cancelled is not None and cancelled.status is Status.CANCELLED
    await store.tasks.cancel(task.id, "t1")  # already ended: nothing new
    [d] = await deliveries(store)
    assert d.payload["data"]["status"] == "CANCELLED" and d.task_id == task.id


async def test_a_callbacks_headers_and_aiflow_fields_go_on_its_deliveries_only(
    store: SqlStore,
) -> None:
    secret = "Bearer cb-7d1e5a"
    cb = Callback(AIFLOW, {"Authorization": secret, "X-Trace": "t-1"})
    done = await claim_only(store, await add_one(store, webhook_url=URL, callback=cb))
    written = await store.claims.finish(outcome(done))
    assert written is not None and secret not in orjson.dumps(task_json(written)).decode()
    cancelled = await add_one(store, webhook_url=URL, callback=Callback(AIFLOW))
    await store.tasks.cancel(cancelled.id, "t1")
    plain = await claim_only(store, await add_one(store, webhook_url=URL))
    await store.claims.finish(outcome(plain))

    [d] = await store.outbox.of(task_id=done.id)
    assert d.headers == cb.headers and secret not in repr(d)
    assert secret not in orjson.dumps(d.payload).decode()
    assert d.payload["data"] == task_json(written) and d.payload["type"] == "task.finished"
    assert (d.payload["task_id"], d.payload["status"], d.payload["error"]) == (
        done.id,
        "SUCCESS",
        None,
    )
    assert d.payload["result"]["model"] == done.model and d.payload["result"]["timestamp"]
    [c] = await store.outbox.of(task_id=cancelled.id)
    assert (c.headers, c.payload["status"], c.payload["error_type"]) == (
        None,
        "FAILED",
        "cancelled",
    )
    [p] = await store.outbox.of(task_id=plain.id)
    assert p.headers is None and "task_id" not in p.payload  # taskgate's event alone
    claimed = {x.task_id: x for x in await store.outbox.claim(10, 30)}
    assert {k: x.headers for k, x in claimed.items()} == {
        done.id: cb.headers,
        cancelled.id: None,
        plain.id: None,
    }
    # a retried try keeps them; once delivered, the secrets are forgotten
    assert await store.outbox.record(claimed[done.id], "PENDING", time.time(), 503, None)
    [again] = await store.outbox.of(task_id=done.id)
    assert again.headers == cb.headers
    [retried] = [x for x in await store.outbox.claim(10, 30) if x.task_id == done.id]
    assert await store.outbox.record(retried, "DELIVERED", time.time(), 200, None)
    [delivered] = await store.outbox.of(task_id=done.id)
    assert delivered.headers is None


async def test_sweep_timeouts_and_lost_tasks_out_of_attempts_queue_events(
    store: SqlStore,
) -> None:
    late = await add_one(store, webhook_url=URL, deadline=time.time() - 1)
    lost = await add_one(store, webhook_url=URL, max_attempts=1, route="other")
    [held] = await claim(store, route="other", worker="gone:1:x")
    await store.claims.expire_leases([held.worker or ""])
    ended = {t.id: t.status for t in await store.claims.sweep()}
    assert ended == {late.id: Status.TIMEOUT, lost.id: Status.FAILED}
    statuses = {d.task_id: d.payload["data"]["status"] for d in await deliveries(store)}
    assert statuses == {late.id: "TIMEOUT", lost.id: "FAILED"}


async def test_ending_listeners_hear_of_every_ending(store: SqlStore) -> None:
    heard: list[str] = []
    store.ended_listeners.append(lambda ended: heard.extend(t.id for t in ended))
    a = await claim_only(store, await add_one(store))
    await store.claims.finish(outcome(a))
    b = await add_one(store)
    await store.tasks.cancel(b.id, None)
    c = await add_one(store, deadline=time.time() - 1)
    await store.claims.sweep()
    assert heard == [a.id, b.id, c.id]


# --- batches ----------------------------------------------------------------------------------


async def test_a_batch_event_comes_when_its_last_task_ends(store: SqlStore) -> None:
    first, second = await add_batch(store, ["m1", "m2"])
    assert first.webhook_url is None  # the batch has the URL; its tasks send nothing
    [a, b] = await claim(store)
    await store.claims.finish(outcome(a))
    assert await deliveries(store) == []
    await store.claims.finish(outcome(b, Status.FAILED))
    [d] = await deliveries(store)
    assert (d.batch_id, d.task_id) == (first.batch_id, None)
    assert d.payload["type"] == "batch.finished"
    data = d.payload["data"]
    assert data["status"] == "PARTIAL"
    assert [r["model_name"] for r in data["results"]] == ["m1", "m2"]
    assert [t["task_id"] for t in data["results"]] == [first.id, second.id]
    assert await store.outbox.of(batch_id=first.batch_id or "") == [d]


async def test_a_batch_without_a_url_and_a_cancelled_batch(store: SqlStore) -> None:
    await add_batch(store, ["m1"], url=None)
    for t in await claim(store):
        await store.claims.finish(outcome(t))
    assert await deliveries(store) == []
    hooked = await add_batch(store, ["m1", "m2"])
    await store.batches.cancel(hooked[0].batch_id or "")
    [d] = await deliveries(store)
    assert d.payload["data"]["status"] == "FAILED"


async def test_concurrent_endings_of_a_batch_queue_exactly_one_event(store: SqlStore) -> None:
    """The last two tasks of each batch end at once through two stores (two gateways' or
    workers' connections): every batch gets one event, never none and never two."""
    other = SqlStore(store.url)
    await other.open()
    try:
        batches = [await add_batch(store, ["m1", "m2"]) for _ in range(12)]
        held = {t.id: t for t in await claim(store, limit=100)}
        for a, b in batches:
            await asyncio.gather(
                store.claims.finish(outcome(held[a.id])), other.claims.finish(outcome(held[b.id]))
            )
    finally:
        await other.close()
    per_batch = [d.batch_id for d in await deliveries(store)]
    assert sorted(per_batch) == sorted(b[0].batch_id for b in batches)


@pytest.mark.postgres
async def test_postgresql_batch_lock_makes_a_racing_ending_wait_and_see() -> None:
    """Deterministic on PostgreSQL: transaction A ends one task of a batch and holds its
    transaction open; B ends the other. B must wait for A (the batch row's lock), then see
    A's ending and queue the event. Without the lock neither would see the batch done."""
    await reset_postgres()
    store = SqlStore(PG_URL)
    await store.open()
    try:
        t1, t2 = await add_batch(store, ["m1", "m2"])
        held = {t.id: t for t in await claim(store, limit=2)}
        a, b = held[t1.id], held[t2.id]
        engine = store.db._async
        assert engine is not None
        async with engine.connect() as first, engine.connect() as second:
            await first.begin()
            await first.run_sync(_finish_one, a)
            racing = asyncio.create_task(_finish_in(second, b))
            await asyncio.sleep(0.5)
            assert not racing.done()  # waiting on the batch row
            await first.commit()
            await asyncio.wait_for(racing, 10)
        [d] = await deliveries(store)
        assert d.payload["data"]["status"] == "SUCCESS"
    finally:
        await store.close()


def _finish_one(conn: sa.Connection, task: Task) -> None:
    from taskgate.store.ops import finish_batch

    finish_batch(conn, [outcome(task)])


async def _finish_in(conn: Any, task: Task) -> None:
    await conn.begin()
    await conn.run_sync(_finish_one, task)
    await conn.commit()


async def test_a_repeated_event_id_is_ignored_not_an_error(store: SqlStore) -> None:
    task = await claim_only(store, await add_one(store, webhook_url=URL))
    written = await store.claims.finish(outcome(task))
    assert written is not None
    again = await on_db(store.url, lambda c: add_deliveries(c, [written], time.time()))
    assert again == 1  # offered, and dropped by the unique event id
    assert len(await deliveries(store)) == 1


# --- claiming and recording ------------------------------------------------------------------


async def ended_with_hooks(store: SqlStore, n: int) -> list[Task]:
    made = [await add_one(store, webhook_url=URL, route=f"r{i}") for i in range(n)]
    for t in made:
        await store.tasks.cancel(t.id, None)
    return made


async def test_claims_are_exclusive_under_concurrency(store: SqlStore) -> None:
    await ended_with_hooks(store, 30)
    others = [SqlStore(store.url) for _ in range(2)]
    for o in others:
        await o.open()
    try:
        stores = [store, *others]
        rounds = await asyncio.gather(*(s.outbox.claim(8, 30) for s in stores * 3))
    finally:
        for o in others:
            await o.close()
    claimed = [d.id for batch in rounds for d in batch]
    assert len(claimed) == len(set(claimed)) == 30
    assert await store.outbox.claim(10, 30) == []  # all leased
    assert (await store.outbox.next_due() or 0) > time.time() + 20


async def test_a_claim_whose_lease_runs_out_is_due_again(store: SqlStore) -> None:
    await ended_with_hooks(store, 1)
    [d] = await store.outbox.claim(5, 0.2)
    assert await store.outbox.claim(5, 0.2) == []
    await asyncio.sleep(0.3)
    [again] = await store.outbox.claim(5, 30)
    assert again.id == d.id and again.attempts == 0


async def test_recording_an_attempt_is_fenced_on_the_claim(store: SqlStore) -> None:
    await ended_with_hooks(store, 1)
    [d] = await store.outbox.claim(1, 30)
    later = time.time() + 60
    assert await store.outbox.record(d, PENDING, later, 500, "HTTP 500: down")
    assert not await store.outbox.record(d, DELIVERED, time.time(), 200, None)  # stale claim
    [now] = await store.outbox.of(task_id=d.task_id)
    assert (now.status, now.attempts, now.last_status, now.last_error) == (
        PENDING,
        1,
        500,
        "HTTP 500: down",
    )
    assert now.next_attempt_at == pytest.approx(later)
    fresh = dataclasses.replace(d, attempts=1)
    assert await store.outbox.record(fresh, FAILED, time.time(), None, "x" * 900)
    [end] = await store.outbox.of(task_id=d.task_id)
    assert end.status == FAILED and end.attempts == 2 and len(end.last_error or "") == 500
    assert await store.outbox.next_due() is None


async def test_release_makes_claimed_deliveries_due_now(store: SqlStore) -> None:
    await ended_with_hooks(store, 2)
    claimed = await store.outbox.claim(2, 300)
    await store.outbox.release([d.id for d in claimed])
    assert len(await store.outbox.claim(5, 30)) == 2


# --- tenants' secrets --------------------------------------------------------------------------


async def test_a_tenant_secret_is_made_once_and_rotated(store: SqlStore) -> None:
    other = SqlStore(store.url)
    await other.open()
    try:
        first = await asyncio.gather(store.outbox.secret("acme"), other.outbox.secret("acme"))
    finally:
        await other.close()
    assert first[0] == first[1] and first[0].startswith("whsec_")
    assert await store.outbox.secret("acme") == first[0]
    assert await store.outbox.secret("globex") != first[0]
    rotated = await store.outbox.rotate_secret("acme")
    assert rotated != first[0] and await store.outbox.secret("acme") == rotated
    assert (await store.outbox.rotate_secret("new-tenant")).startswith("whsec_")
