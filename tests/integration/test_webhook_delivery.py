"""The webhook deliverer against a real receiver on loopback and the real store: signed
POSTs, backoff and Retry-After, the FAILED end, the address re-check when sending, timeouts,
exclusive sending by several deliverers, and a clean stop."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from taskgate.client import verify_webhook
from taskgate.config import WebhookSettings
from taskgate.ops.metrics import Metrics
from taskgate.ops.transitions import Transitions
from taskgate.store import SqlStore
from taskgate.store.outbox import DELIVERED, FAILED, PENDING, Delivery
from taskgate.webhooks import Deliverer
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.integration.entered import Entered
from tests.integration.test_store import add_one

FAST = {"allow_private": True, "backoff_base": 0.05, "backoff_max": 0.2, "poll_interval": 0.05}


@pytest.fixture
async def hooks() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver(hang_seconds=5) as receiver:
        yield receiver


@pytest.fixture
async def deliverers(store: SqlStore) -> AsyncIterator[Callable[..., Deliverer]]:
    running: list[asyncio.Task[None]] = []

    def start(**conf: Any) -> Deliverer:
        d = Deliverer(WebhookSettings.model_validate({**FAST, **conf}), store)
        running.append(asyncio.create_task(d.run()))
        return d

    yield start
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


async def ended_task(store: SqlStore, url: str, tenant: str = "t1") -> str:
    """A task with a webhook, ended (cancelled): its delivery is due."""
    task = await add_one(store, webhook_url=url, tenant=tenant)
    await store.tasks.cancel(task.id, None)
    return task.id


async def settled(store: SqlStore, task_id: str, check: Callable[[Delivery], bool]) -> Delivery:
    end = time.monotonic() + 10
    while True:
        [d] = await store.outbox.of(task_id=task_id)
        if check(d):
            return d
        assert time.monotonic() < end, d
        await asyncio.sleep(0.02)


def done(d: Delivery) -> bool:
    return d.status != PENDING


async def test_a_delivery_is_posted_signed_and_recorded(
    store: SqlStore, hooks: WebhookReceiver, deliverers: Any
) -> None:
    deliverers(poll_interval=30)  # only the wake on the task's end can make it quick
    await asyncio.sleep(0.1)
    task_id = await ended_task(store, hooks.url("orders"), tenant="acme")
    [req] = await hooks.arrived(1, timeout=3)
    d = await settled(store, task_id, done)
    assert (d.status, d.attempts, d.last_status, d.last_error) == (DELIVERED, 1, 200, None)
    assert req.path == "/hooks/orders"
    assert req.headers["Content-Type"] == "application/json"
    assert req.event_id == d.event_id == f"evt_{task_id}_finished"
    assert req.json() == d.payload
    secret = await store.outbox.secret("acme")
    ts, sig = req.headers["X-Taskgate-Timestamp"], req.headers["X-Taskgate-Signature"]
    assert verify_webhook(secret, req.body, ts, sig)
    assert not verify_webhook(await store.outbox.secret("other"), req.body, ts, sig)


async def test_failures_back_off_then_end_failed(
    store: SqlStore, hooks: WebhookReceiver, deliverers: Any
) -> None:
    hooks.default = "fail"
    deliverers(max_attempts=3, backoff_base=0.2, backoff_max=0.4, jitter=0)
    task_id = await ended_task(store, hooks.url())
    d = await settled(store, task_id, done)
    assert (d.status, d.attempts, d.last_status) == (FAILED, 3, 500)
    assert d.last_error is not None and "receiver is down" in d.last_error
    reqs = hooks.requests
    assert len(reqs) == 3 and len({r.event_id for r in reqs}) == 1
    gaps = [b.at - a.at for a, b in itertools.pairwise(reqs)]
    assert gaps[0] >= 0.18 and gaps[1] >= 0.38  # 0.2 s, then doubled


async def test_each_try_joins_the_task_s_log_and_the_metrics(
    store: SqlStore, hooks: WebhookReceiver, deliverers: Any
) -> None:
    metrics = Metrics()
    store.db.observer = Transitions(metrics)
    hooks.default = "fail"
    deliverers(max_attempts=2, backoff_base=0.05, backoff_max=0.1, jitter=0)
    task_id = await ended_task(store, hooks.url())
    d = await settled(store, task_id, done)
    tries = [e for e in await store.task_logs.of(task_id, 200) if e.event == "webhook"]
    assert [(e.message, e.data) for e in tries] == [
        ("HTTP 500", {"delivery": d.id, "try": 1, "outcome": PENDING}),
        ("HTTP 500", {"delivery": d.id, "try": 2, "outcome": FAILED}),
    ]
    assert metrics.webhooks.values == {("pending",): 1, ("failed",): 1}


async def test_retry_after_is_honoured_and_a_2xx_ends_it(
    store: SqlStore, hooks: WebhookReceiver, deliverers: Any
) -> None:
    hooks.script("slow")
    deliverers(backoff_max=5)
    task_id = await ended_task(store, hooks.url())
    d = await settled(store, task_id, done)
    assert (d.status, d.attempts, d.last_status) == (DELIVERED, 2, 200)
    first, second = hooks.requests
    assert second.at - first.at >= 0.95  # Retry-After: 1, not the 0.05 s backoff


async def test_the_address_is_checked_again_when_sending(
    store: SqlStore, hooks: WebhookReceiver, deliverers: Any
) -> None:
    """A URL accepted earlier (or whose name now resolves inside) is refused at send time."""
    by_name = await ended_task(store, f"http://localhost:{hooks.port}/hooks/x")
    by_ip = await ended_task(store, f"http://127.0.0.1:{hooks.port}/hooks/x")
    deliverers(allow_private=False, max_attempts=1)
    for task_id in (by_name, by_ip):
        d = await settled(store, task_id, done)
        assert d.status == FAILED and d.last_status is None
        assert d.last_error is not None and "refused" in d.last_error
        assert "loopback" in d.last_error
    assert hooks.requests == []


async def test_an_unanswered_request_times_out(
    store: SqlStore, hooks: WebhookReceiver, deliverers: Any
) -> None:
    hooks.script("hang")
    deliverers(timeout=0.3, backoff_base=1, backoff_max=1, jitter=0)
    task_id = await ended_task(store, hooks.url())
    first = await settled(store, task_id, lambda d: d.attempts == 1)
    assert (first.status, first.last_status) == (PENDING, None)
    assert first.last_error == "no answer within 0.3s"
    d = await settled(store, task_id, done)
    assert (d.status, d.attempts, d.last_error) == (DELIVERED, 2, None)


async def test_several_deliverers_send_each_event_once(
    store: SqlStore, hooks: WebhookReceiver, deliverers: Any
) -> None:
    ids = [await ended_task(store, hooks.url()) for _ in range(20)]
    for _ in range(3):
        deliverers(max_concurrency=3)
    for task_id in ids:
        await settled(store, task_id, done)
    await asyncio.sleep(0.2)
    events = [r.event_id for r in hooks.requests]
    assert len(events) == len(set(events)) == 20


async def test_a_cancel_that_meets_a_wake_up_stops_the_deliverer(store: SqlStore) -> None:
    """Cancelled in the same turn of the loop as it is woken, the deliverer stops (Python
    3.11's ``asyncio.wait_for`` returned the wake-up and dropped the cancel: it ran on)."""
    d = Deliverer(WebhookSettings.model_validate(FAST), store)
    d._wake = woken = Entered()
    running: asyncio.Task[None] = asyncio.create_task(d.run())
    await woken.entered.wait()
    d.wake()
    running.cancel()
    done, _ = await asyncio.wait([running], timeout=10)
    assert done and running.cancelled()
    assert store.ended_listeners == []


async def test_stopping_makes_the_unsent_due_again(store: SqlStore, hooks: WebhookReceiver) -> None:
    hooks.script("hang")
    d = Deliverer(WebhookSettings.model_validate(FAST), store)
    running: asyncio.Task[None] = asyncio.create_task(d.run())
    task_id = await ended_task(store, hooks.url())
    await hooks.arrived(1)
    leased = await store.outbox.next_due()
    assert leased is not None and leased > time.time() + 5  # claimed: out of others' reach
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    [row] = await store.outbox.of(task_id=task_id)
    assert row.status == PENDING and row.attempts == 0 and row.next_attempt_at <= time.time()
    assert store.ended_listeners == []
