"""Webhook delivery: the loop that POSTs the events the outbox holds (store/outbox.py).

A task (or batch) that names a ``webhook_url`` gets a delivery row in the transaction that
ends it. Every worker process runs a :class:`Deliverer` beside its scheduler: it claims due
deliveries under a lease (so two workers never send one at the same time, and one whose
worker died is sent again), POSTs each, signed with the tenant's secret, and records the
attempt: a 2xx delivers it; anything else is tried again with exponential backoff and jitter
until ``max_attempts``, then the delivery is FAILED. Delivery is at least once: a receiver
dedupes on ``X-Taskgate-Event-Id``.

It wakes when this process ends a task that may have a webhook, and looks at least every
``poll_interval`` anyway (a task cancelled through another process, a retry falling due).

A task whose client named headers for its callback (AIFlow's ``callback.headers``,
taskgate.callbacks) has them sent with each attempt, beside taskgate's own.

Signature: ``X-Taskgate-Signature: v1=<hex HMAC-SHA256 of "{timestamp}.{body}">`` keyed with
the tenant's secret, ``X-Taskgate-Timestamp`` the Unix time of the attempt (see
:func:`taskgate.client.verify_webhook`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Sequence

import aiohttp
import orjson

from taskgate import callbacks, netguard, policy
from taskgate.config import WebhookSettings
from taskgate.events.base import nap
from taskgate.models import Task
from taskgate.store import SqlStore
from taskgate.store.outbox import DELIVERED, FAILED, PENDING, Delivery

log = logging.getLogger("taskgate.webhooks")

LEASE_MARGIN = 5.0  # seconds a claim outlasts the request timeout
SNIPPET = 200  # characters of a receiver's error reply kept in last_error


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def signed_headers(event_id: str, secret: str, body: bytes, now: float) -> dict[str, str]:
    ts = int(now)
    return {
        "Content-Type": "application/json",
        "User-Agent": "taskgate-webhooks",
        "X-Taskgate-Event-Id": event_id,
        "X-Taskgate-Timestamp": str(ts),
        "X-Taskgate-Signature": signature(secret, ts, body),
    }


def retry_after(resp: aiohttp.ClientResponse) -> float | None:
    value = resp.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


class Deliverer:
    def __init__(
        self, conf: WebhookSettings, store: SqlStore, rng: random.Random | None = None
    ) -> None:
        self.conf = conf
        self.store = store
        self.rng = rng or random.Random()
        self.guard = netguard.guard_of(conf)
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def lease(self) -> float:
        return self.conf.timeout + LEASE_MARGIN

    def wake(self) -> None:
        self._wake.set()

    def _on_ended(self, ended: Sequence[Task]) -> None:
        if any(t.webhook_url or t.batch_id for t in ended):
            self.wake()

    async def run(self) -> None:
        """Deliver until cancelled; then stop the sends under way and make them due again."""
        self.store.ended_listeners.append(self._on_ended)
        try:
            while True:
                due = None
                try:
                    due = await self.fill()
                except Exception:
                    log.exception("looking for due webhooks failed")
                await self._sleep(due)
        finally:
            self.store.ended_listeners.remove(self._on_ended)
            await self._shutdown()

    async def _sleep(self, due: float | None) -> None:
        wait = self.conf.poll_interval
        if due is not None:
            wait = min(wait, max(0.0, due - time.time()))
        await nap(self._wake, wait)

    async def fill(self) -> float | None:
        """Start sending what is due, up to ``max_concurrency`` at once. Returns when the
        next pending delivery falls due (None: none pending, or no free slot)."""
        free = self.conf.max_concurrency - len(self._inflight)
        if free <= 0:
            return None
        due = await self.store.outbox.next_due()
        if due is None or due > time.time():
            return due
        for d in await self.store.outbox.claim(free, self.lease):
            self._inflight[d.id] = asyncio.create_task(self._deliver(d), name=f"webhook:{d.id}")
        return None

    async def _deliver(self, d: Delivery) -> None:
        try:
            status, error, hint = await self._post(d)
            await self._record(d, status, error, hint)
        except Exception:
            log.exception("webhook %s: recording the attempt failed", d.event_id)
        finally:
            self._inflight.pop(d.id, None)
            self.wake()  # a slot is free

    async def _record(
        self, d: Delivery, status: int | None, error: str | None, hint: float | None
    ) -> None:
        now, attempt = time.time(), d.attempts + 1
        if status is not None and 200 <= status < 300:
            outcome, next_at = DELIVERED, now
        elif attempt >= self.conf.max_attempts:
            outcome, next_at = FAILED, now
        else:
            hint = min(hint, self.conf.backoff_max) if hint is not None else None
            outcome = PENDING
            next_at = now + policy.backoff(attempt, self.conf.retry, self.rng, hint)
        if outcome != DELIVERED:
            log.info("webhook %s attempt %d: %s (%s)", d.event_id, attempt, error, outcome)
        await self.store.outbox.record(d, outcome, next_at, status, error)

    async def _post(self, d: Delivery) -> tuple[int | None, str | None, float | None]:
        """One attempt: (HTTP status or None, error text or None, Retry-After seconds)."""
        body = orjson.dumps(d.payload)
        secret = await self.store.outbox.secret(d.tenant)
        signed = signed_headers(d.event_id, secret, body, time.time())
        headers = callbacks.sent_headers(d.headers, signed)  # a client's (AIFlow's callback)
        try:
            self.guard.check_literal(self.guard.parse(d.url))
            async with self._client().post(
                d.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                if 200 <= resp.status < 300:
                    return resp.status, None, None
                text = (await resp.content.read(SNIPPET)).decode("utf-8", "replace")
                return resp.status, f"HTTP {resp.status}: {text}".strip(), retry_after(resp)
        except netguard.Refused as exc:
            return None, f"refused: {exc}", None
        except TimeoutError:
            return None, f"no answer within {self.conf.timeout:g}s", None
        except aiohttp.ClientError as exc:
            return None, f"{type(exc).__name__}: {exc}", None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=netguard.GuardedResolver(self.guard), limit=0)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.conf.timeout),
                trust_env=False,  # no proxy from the environment: the guard sees the real host
            )
        return self._session

    async def _shutdown(self) -> None:
        claimed, pending = list(self._inflight), list(self._inflight.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        with contextlib.suppress(Exception):  # else their leases run out, and they are due
            await self.store.outbox.release(claimed)
        if self._session is not None:
            await self._session.close()
            self._session = None
