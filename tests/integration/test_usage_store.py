"""Usage and limits in the store, on SQLite and PostgreSQL: each task's tokens and cost
summed over its attempts, the counters of keys' and tenants' limits taken from in the
insert's transaction and charged in the finish's (shared by every gateway on the store), and
the usage report."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import sqlalchemy as sa

from taskgate.budgets import Quota
from taskgate.config import Limits
from taskgate.errors import LimitExceeded
from taskgate.models import Batch, Task, new_id
from taskgate.store import SqlStore
from taskgate.store.schema import batches, tasks, usage_counters
from tests.integration.db import on_db
from tests.integration.test_store import claim, new_task, outcome, retry

KEY_RPM = Quota("key:key_a", "t1", "key_a", requests_per_minute=3)
TENANT_TOKENS = Quota("tenant:t1", "t1", None, tokens_per_day=100)


async def count(store: SqlStore, table: sa.Table) -> int:
    return await on_db(
        store.url, lambda c: int(c.scalar(sa.select(sa.func.count()).select_from(table)) or 0)
    )


async def submit(store: SqlStore, *quotas: Quota, **changes: Any) -> Task | LimitExceeded:
    try:
        task, _ = await store.tasks.insert(new_task(quotas=quotas, **changes))
    except LimitExceeded as exc:
        return exc
    return task


async def run(store: SqlStore, task: Task, **used: Any) -> Task:
    """Claim ``task`` and end its attempt in success, having used ``used``."""
    [claimed] = await claim(store, 1)
    assert claimed.id == task.id
    ended = await store.claims.finish(outcome(claimed, **used))
    assert ended is not None
    return ended


async def test_a_task_records_the_tokens_and_cost_of_all_its_attempts(store: SqlStore) -> None:
    task, _ = await store.tasks.insert(new_task())
    assert (task.input_tokens, task.output_tokens, task.cost) == (0, 0, 0.0)
    [first] = await claim(store)
    await store.claims.finish(retry(first, input_tokens=10, cost=0.25))
    done = await run(store, task, input_tokens=7, output_tokens=30, cost=0.5)
    assert (done.input_tokens, done.output_tokens, done.cost) == (17, 30, 0.75)
    assert await store.tasks.get(task.id) == done


async def test_requests_over_the_limit_are_refused_and_nothing_is_stored(store: SqlStore) -> None:
    results = [await submit(store, KEY_RPM) for _ in range(5)]
    assert [isinstance(r, Task) for r in results] == [True, True, True, False, False]
    refusal = results[3]
    assert isinstance(refusal, LimitExceeded) and refusal.retry_after in range(1, 21)
    assert "key key_a is over its limit of 3 requests per minute" in refusal.message
    assert await count(store, tasks) == 3
    other = await submit(store, Quota("key:key_b", "t1", "key_b", requests_per_minute=3))
    assert isinstance(other, Task)  # another key's counter


async def test_a_limit_holds_across_gateways_sharing_the_store(store: SqlStore) -> None:
    other = SqlStore(store.url)  # a second gateway's store: its own engine and batcher
    await other.open()
    try:
        quota = Quota("tenant:t1", "t1", None, requests_per_minute=25)
        results = await asyncio.gather(
            *(submit(s, quota) for _ in range(30) for s in (store, other))
        )
    finally:
        await other.close()
    assert sum(isinstance(r, Task) for r in results) == 25
    assert await count(store, tasks) == 25


async def test_an_idempotent_replay_takes_no_request(store: SqlStore) -> None:
    quota = Quota("key:key_a", "t1", "key_a", requests_per_minute=1)
    first = await submit(store, quota, idempotency_key="k1", request_hash="h")
    again = await submit(store, quota, idempotency_key="k1", request_hash="h")
    assert isinstance(first, Task) and isinstance(again, Task) and again.id == first.id
    assert isinstance(await submit(store, quota), LimitExceeded)


async def test_tokens_of_ended_attempts_count_towards_the_day(store: SqlStore) -> None:
    task = await submit(store, TENANT_TOKENS)  # makes the tenant's counter
    assert isinstance(task, Task)
    await run(store, task, input_tokens=60, output_tokens=40)
    refusal = await submit(store, TENANT_TOKENS)
    assert isinstance(refusal, LimitExceeded)
    assert refusal.as_dict()["limit"] == "tokens_per_day"
    assert "tenant t1 is over its limit of 100 tokens per day" in refusal.message
    # another tenant's tasks, and a tenant without a counter, are not charged to it
    assert isinstance(await submit(store, tenant="t2"), Task)


async def test_a_new_counter_starts_from_what_was_used_today_and_this_month(
    store: SqlStore,
) -> None:
    task = await submit(store)  # no limits yet: no counter
    assert isinstance(task, Task)
    await run(store, task, input_tokens=150, cost=2.0)
    assert await count(store, usage_counters) == 0
    assert isinstance(await submit(store, TENANT_TOKENS), LimitExceeded)
    key_cost = Quota("key:key_a", "t1", "key_a", cost_per_month=2.0)
    assert isinstance(await submit(store, key_cost), LimitExceeded)
    assert isinstance(
        await submit(store, Quota("key:key_b", "t1", "key_b", cost_per_month=2.0)), Task
    )


async def test_counters_are_read_as_they_stand_without_taking(store: SqlStore) -> None:
    assert await store.usage.counters([]) == {}
    task = await submit(store, KEY_RPM, TENANT_TOKENS)
    assert isinstance(task, Task)
    await run(store, task, input_tokens=20, output_tokens=5, cost=0.25)
    found = await store.usage.counters(["key:key_a", "tenant:t1", "tenant:t2", "key:key_a"])
    assert sorted(found) == ["key:key_a", "tenant:t1"]  # t2 has none
    now = time.time()
    assert found["key:key_a"].used(3, now) == (1, 25, 0.25)
    assert found["tenant:t1"].used(None, now) == (None, 25, 0.25)
    assert (await store.usage.counters(["key:key_a"]))["key:key_a"].requests == 2  # untaken


async def test_cost_of_ended_attempts_counts_towards_the_month(store: SqlStore) -> None:
    quota = Quota("key:key_a", "t1", "key_a", cost_per_month=1.0)
    first = await submit(store, quota)
    second = await submit(store, quota)
    assert isinstance(first, Task) and isinstance(second, Task)
    await run(store, first, cost=0.6)
    assert isinstance(await submit(store, quota), Task)
    await run(store, second, cost=0.6)
    refusal = await submit(store, quota)
    assert isinstance(refusal, LimitExceeded) and refusal.as_dict()["limit"] == "cost_per_month"


async def test_a_batch_over_a_limit_is_refused_whole(store: SqlStore) -> None:
    batch = Batch(new_id(), "t1", "key_a", "chat", False, ["a", "b", "c"], time.time())
    news = [new_task(model=m, batch_id=batch.id, quotas=(KEY_RPM,)) for m in ("a", "b")]
    await store.batches.insert(batch, news)
    again = Batch(new_id(), "t1", "key_a", "chat", False, ["a", "b"], time.time())
    news = [new_task(model=m, batch_id=again.id, quotas=(KEY_RPM,)) for m in ("a", "b")]
    with pytest.raises(LimitExceeded):
        await store.batches.insert(again, news)
    assert (await count(store, batches), await count(store, tasks)) == (1, 2)
    assert isinstance(await submit(store, KEY_RPM), Task)  # the refused batch took nothing


async def test_a_conversation_turn_over_a_limit_is_refused(store: SqlStore) -> None:
    c = await store.conversations.create("t1")
    quota = Quota("key:key_a", "t1", "key_a", requests_per_minute=1)
    await store.conversations.add_turn(
        c.id, "hi", [new_task(conversation_id=c.id, quotas=(quota,))]
    )
    with pytest.raises(LimitExceeded):
        await store.conversations.add_turn(
            c.id, "again", [new_task(conversation_id=c.id, quotas=(quota,))]
        )
    assert len(await store.conversations.messages(c.id)) == 1


# --- the report --------------------------------------------------------------------------


async def test_usage_is_summed_by_tenant_key_model_and_day(store: SqlStore) -> None:
    start = time.time() - 1
    ran = [
        ("t1", "key_a", "gpt", 10, 5, 0.5),
        ("t1", "key_a", "llama", 1, 2, 0.0),
        ("t1", "key_b", "gpt", 100, 50, 1.25),
        ("t2", "key_c", "gpt", 3, 4, 0.125),
    ]
    for tenant, key, model, given, made, cost in ran:
        task, _ = await store.tasks.insert(new_task(tenant=tenant, api_key_id=key, model=model))
        await run(store, task, input_tokens=given, output_tokens=made, cost=cost)
    await store.tasks.insert(new_task(tenant="t2", api_key_id="key_c", model="gpt"))  # waiting
    end = time.time() + 1
    by_tenant = await store.usage.report("tenant", start, end)
    assert by_tenant == [
        {"group": "t1", "tasks": 3, "input_tokens": 111, "output_tokens": 57, "cost": 1.75},
        {"group": "t2", "tasks": 2, "input_tokens": 3, "output_tokens": 4, "cost": 0.125},
    ]
    by_key = await store.usage.report("key", start, end, tenant="t1")
    assert [(r["group"], r["tasks"], r["cost"]) for r in by_key] == [
        ("key_a", 2, 0.5),
        ("key_b", 1, 1.25),
    ]
    by_model = await store.usage.report("model", start, end)
    assert [(r["group"], r["input_tokens"]) for r in by_model] == [("gpt", 113), ("llama", 1)]
    [today] = await store.usage.report("day", start, end)
    assert today["group"] == time.strftime("%Y-%m-%d", time.gmtime()) and today["tasks"] == 5
    assert await store.usage.report("tenant", start - 3600, start) == []
    assert await store.usage.report("tenant", start, end, tenant="t9") == []


async def test_days_are_utc_days_of_creation(store: SqlStore) -> None:
    task, _ = await store.tasks.insert(new_task())
    day = 86_400 * 20_000  # 2024-10-04 00:00 UTC
    rows = [
        {**row(task), "id": f"{int(created * 1000):012x}{id_ * 20}", "created_at": created}
        for created, id_ in ((day - 1, "a"), (day, "b"), (day + 86_399.5, "c"))
    ]
    await on_db(store.url, lambda c: c.execute(tasks.insert(), rows))
    got = await store.usage.report("day", day - 86_400, day + 86_400)
    assert [(r["group"], r["tasks"]) for r in got] == [("2024-10-03", 1), ("2024-10-04", 2)]


def row(task: Task) -> dict[str, Any]:
    out: dict[str, Any] = {c.name: getattr(task, c.name) for c in tasks.columns}
    out.update(status=task.status.value, priority=int(task.priority))
    return out


# --- keys' limits ------------------------------------------------------------------------


async def test_keys_keep_their_limits(store: SqlStore) -> None:
    key, _ = await store.keys.create("t1", "k", limits=Limits(requests_per_minute=5))
    assert (key.requests_per_minute, key.tokens_per_day, key.cost_per_month) == (5, None, None)
    changed = await store.keys.set_limits(
        key.id, {"tokens_per_day": 1000, "requests_per_minute": None}
    )
    assert changed is not None
    assert (changed.requests_per_minute, changed.tokens_per_day) == (None, 1000)
    unchanged = await store.keys.set_limits(key.id, {})
    assert unchanged == changed
    [found] = await store.keys.find("t1")
    assert found == changed
    await store.keys.revoke(key.id)
    assert await store.keys.set_limits(key.id, {"tokens_per_day": 5}) is None
    assert await store.keys.set_limits("key_missing", {"tokens_per_day": 5}) is None
