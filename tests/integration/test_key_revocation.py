"""A revoked key is refused by every gateway at once, not when its cache of verified keys
expires: two KeyRings, each with its own store connection and events, stand for two gateways
on one PostgreSQL database and one events channel (LISTEN/NOTIFY or Redis pub/sub)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from taskgate.api.auth import KeyRing
from taskgate.errors import Unauthorized
from taskgate.events import Events, MemoryEvents
from taskgate.events.postgres import PostgresEvents
from taskgate.events.redis import RedisEvents
from taskgate.models import ApiKey
from taskgate.store import SqlStore
from tests.conftest import PG_URL, REDIS_URL, reset_postgres, store_url

CACHE = 60.0  # seconds a verified key is cached: far longer than any test waits


async def gateway(stack: AsyncExitStack, store: SqlStore, events: Events) -> KeyRing:
    await store.open()
    stack.push_async_callback(store.close)
    await events.open()
    stack.push_async_callback(events.close)
    ring = KeyRing(store, events, CACHE)
    await ring.start()
    stack.push_async_callback(ring.stop)
    return ring


@pytest.fixture(
    params=[
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("redis", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ]
)
async def two_gateways(request: pytest.FixtureRequest) -> AsyncIterator[tuple[KeyRing, KeyRing]]:
    await reset_postgres()
    async with AsyncExitStack() as stack:
        rings = []
        for _ in range(2):
            bus = (
                PostgresEvents(PG_URL) if request.param == "postgresql" else RedisEvents(REDIS_URL)
            )
            rings.append(await gateway(stack, SqlStore(PG_URL), bus))
            await asyncio.wait_for(bus.connected.wait(), 10)
        yield rings[0], rings[1]


async def refused_within(ring: KeyRing, secret: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            await ring.verify(secret)
        except Unauthorized:
            return
        assert time.monotonic() < deadline, f"the key was still accepted after {seconds}s"
        await asyncio.sleep(0.02)


async def test_a_key_revoked_on_one_gateway_is_refused_by_the_other_at_once(
    two_gateways: tuple[KeyRing, KeyRing],
) -> None:
    a, b = two_gateways
    key, secret = await a.store.keys.create("acme", "k")
    other, other_secret = await a.store.keys.create("acme", "other")
    for ring in (a, b):  # each caches both keys for a minute
        assert (await ring.verify(secret)).id == key.id
        assert (await ring.verify(other_secret)).id == other.id
    assert await a.revoke(key.id)
    with pytest.raises(Unauthorized):
        await a.verify(secret)
    await refused_within(b, secret, 10)  # heard of it, long before its cache would expire
    assert (await b.verify(other_secret)).id == other.id  # other keys stay cached


async def test_a_key_read_as_its_revocation_is_heard_is_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that read the key just before it was revoked is let through, but the key
    it read must not be cached for a minute after the revocation was heard."""
    async with AsyncExitStack() as stack:
        store = SqlStore(store_url("sqlite", tmp_path))
        ring = await gateway(stack, store, MemoryEvents())
        key, secret = await store.keys.create("acme", "k")
        read = store.keys.for_secret
        have_read, go_on = asyncio.Event(), asyncio.Event()

        async def slow_read(s: str) -> ApiKey | None:
            found = await read(s)
            have_read.set()
            await go_on.wait()
            return found

        monkeypatch.setattr(store.keys, "for_secret", slow_read)
        verifying = asyncio.create_task(ring.verify(secret))
        await have_read.wait()
        monkeypatch.setattr(store.keys, "for_secret", read)
        assert await ring.revoke(key.id)
        go_on.set()
        assert (await verifying).id == key.id  # it began before the revocation
        with pytest.raises(Unauthorized):
            await ring.verify(secret)
