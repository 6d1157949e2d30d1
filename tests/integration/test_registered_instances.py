"""Registered instances in the store (``store.instances``), on SQLite and PostgreSQL: a
registration refreshed by registering again, heartbeats that keep it, removal, purging."""

from __future__ import annotations

import time

from taskgate.store import SqlStore
from taskgate.store.instances import Registered


def reg(name: str = "r1", route: str = "llm", **over: object) -> Registered:
    fields: dict[str, object] = {
        "endpoint": "http://10.0.0.9:8000/v1",
        "max_concurrency": 4,
        "weight": 2.0,
        "secret_env": "LLM_KEY",
        "options": {"latency_ms": 5},
        "ttl": 30.0,
        **over,
    }
    return Registered(route=route, name=name, **fields)  # type: ignore[arg-type]


async def test_register_then_register_again_refreshes(store: SqlStore) -> None:
    before = time.time()
    first, created = await store.instances.register(reg())
    assert created
    assert first.expires_at is not None and first.expires_at >= before + 30
    assert first.options == {"latency_ms": 5} and first.secret_env == "LLM_KEY"
    again, created = await store.instances.register(reg(max_concurrency=9, ttl=60.0))
    assert not created
    assert again.max_concurrency == 9 and again.ttl == 60.0
    assert again.registered_at == first.registered_at  # the same registration, refreshed
    assert again.expires_at is not None and again.expires_at >= first.expires_at + 29
    assert [r.name for r in await store.instances.find()] == ["r1"]


async def test_a_heartbeat_keeps_it_and_an_unknown_one_is_none(store: SqlStore) -> None:
    await store.instances.register(reg(ttl=0.5))
    kept = await store.instances.heartbeat("llm", "r1")
    assert kept is not None and kept.expires_at is not None
    assert kept.expires_at >= kept.heartbeat_at + 0.5 - 1e-6
    assert kept.live(time.time())
    assert not kept.live(kept.expires_at + 0.01)
    assert await store.instances.heartbeat("llm", "nope") is None
    assert await store.instances.heartbeat("other", "r1") is None


async def test_without_a_ttl_it_is_kept_until_removed(store: SqlStore) -> None:
    kept, _ = await store.instances.register(reg(ttl=None))
    assert kept.expires_at is None and kept.live(time.time() + 10**9)
    beat = await store.instances.heartbeat("llm", "r1")
    assert beat is not None and beat.expires_at is None
    assert await store.instances.remove("llm", "r1")
    assert not await store.instances.remove("llm", "r1")
    assert await store.instances.find() == []


async def test_find_by_route_and_purge_of_long_expired(store: SqlStore) -> None:
    await store.instances.register(reg("a", ttl=0.01))
    await store.instances.register(reg("b", route="other"))
    await store.instances.register(reg("c", ttl=None))
    assert [r.name for r in await store.instances.find("llm")] == ["a", "c"]
    now = time.time()
    assert await store.instances.purge(now - 3600) == 0  # not expired that long ago
    assert await store.instances.purge(now + 1) == 1  # "a" (b and c expire later, or never)
    assert sorted(r.name for r in await store.instances.find()) == ["b", "c"]
