"""Live configuration in one process on the real store (SQLite): a reload that changes an
instance's options rebuilds the route's provider for new calls while the call under way
finishes on the old one, which is closed once it ends; and a registered instance that
expires has its call stopped and its task requeued."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from taskgate import Call, Provider, Result, register_provider
from taskgate.config import Route, Settings, load
from taskgate.events import MemoryEvents
from taskgate.files import Files, LocalBlobs
from taskgate.gateway import Gateway
from taskgate.models import ApiKey, Priority, Status, Task
from taskgate.ops.live import LiveConfig
from taskgate.scheduling import Scheduler
from taskgate.store import SqlStore
from taskgate.store.instances import Registered
from taskgate.submission import Submission
from tests.integration.entered import Entered


@dataclass
class Seen:
    """What the ``gated`` providers saw: each call's input, option and provider."""

    calls: list[tuple[str, str, int]] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    called: asyncio.Event = field(default_factory=asyncio.Event)
    closing: asyncio.Event = field(default_factory=asyncio.Event)


SEEN = Seen()
SERIALS = itertools.count()


@register_provider("gated")
class GatedProvider(Provider):
    """Each one numbered (``id()`` of a closed, collected provider may come back)."""

    def __init__(self, route: Route) -> None:
        super().__init__(route)
        self.serial = next(SERIALS)

    async def run(self, call: Call) -> Result:
        SEEN.calls.append((str(call.input), str(call.option("tag")), self.serial))
        SEEN.called.set()
        if call.option("hold"):
            await SEEN.gate.wait()
        return Result({"tag": call.option("tag")})

    async def aclose(self) -> None:
        SEEN.closed.append(self.serial)
        SEEN.closing.set()


def config(tmp_path: Path, options: dict[str, Any]) -> Path:
    route = {
        "name": "g",
        "models": ["g"],
        "provider": "gated",
        "instances": [{"name": "x", "max_concurrency": 4, "options": options}],
        "retry": {"max_attempts": 1},
    }
    path = tmp_path / "taskgate.yaml"
    conf = {
        "store_url": f"sqlite:///{tmp_path}/taskgate.db",
        "scheduler": {"poll_interval": 0.05},
        "registration": {"reread_seconds": 0.2},
        "routes": [route],
    }
    path.write_text(yaml.safe_dump(conf))
    return path


@dataclass
class Rig:
    store: SqlStore
    gateway: Gateway
    scheduler: Scheduler
    live: LiveConfig

    async def submit(self, text: str) -> str:
        sub = Submission("chat", "g", text, {}, Priority.DEFAULT)
        task, _ = await self.gateway.submit(KEY, sub)
        return task.id

    async def until(self, task_id: str, check: Any, timeout: float = 20) -> Task:
        end = time.monotonic() + timeout
        while not check(task := await self.store.tasks.get(task_id)):
            assert time.monotonic() < end, f"task {task_id}: {task}"
            await asyncio.sleep(0.02)
        assert task is not None
        return task


KEY = ApiKey(id="k", tenant="t", name="k", admin=False, created_at=0)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    global SEEN
    SEEN = Seen()
    path = config(tmp_path, {"tag": "a", "hold": True})
    settings: Settings = load(path)
    store = SqlStore(settings.store_url)
    await store.open()
    events = MemoryEvents()
    gateway = Gateway(settings, store, events)
    files = Files(store, LocalBlobs(tmp_path / "files"))
    scheduler = Scheduler(settings, store, events, files)
    live = LiveConfig(settings, path, store, events)
    live.on_change(gateway.use)
    live.on_change(scheduler.apply)
    await live.start()
    await scheduler.start()
    try:
        yield Rig(store, gateway, scheduler, live)
    finally:
        SEEN.gate.set()
        await live.stop()
        await scheduler.stop(grace=1)
        await store.close()


async def test_a_changed_instance_gets_a_new_provider_and_the_old_one_finishes(
    rig: Rig, tmp_path: Path
) -> None:
    first = await rig.submit("first")
    await rig.until(first, lambda t: t is not None and t.status is Status.PROCESSING)
    await asyncio.wait_for(SEEN.called.wait(), 10)
    old = SEEN.calls[0][2]
    config(tmp_path, {"tag": "b"})
    changes = await rig.live.reload()
    assert changes.instances_changed == ("g/x",)
    SEEN.closing.clear()  # (the reload's check built a provider of its own, and closed it)
    assert rig.gateway.settings.route("g").instances[0].options == {"tag": "b"}
    assert rig.scheduler.settings is rig.gateway.settings  # one Settings, swapped in both
    second = await rig.submit("second")
    done = await rig.until(second, lambda t: t is not None and t.terminal)
    assert done.status is Status.SUCCESS and done.result["output"] == {"tag": "b"}
    assert SEEN.calls[1][2] != old  # a new provider for the new call
    assert old not in SEEN.closed  # while the old one still serves the first call
    SEEN.gate.set()
    done = await rig.until(first, lambda t: t is not None and t.terminal)
    assert done.status is Status.SUCCESS and done.result["output"] == {"tag": "a"}
    await asyncio.wait_for(SEEN.closing.wait(), 10)
    assert SEEN.closed[-1] == old
    assert SEEN.calls[1][2] not in SEEN.closed


async def test_an_expired_instance_has_its_call_stopped_and_its_task_requeued(rig: Rig) -> None:
    held = {"tag": "r", "hold": True}
    joined = Registered(route="g", name="r1", weight=100, options=held, ttl=0.5)
    await rig.store.instances.register(joined)
    await rig.live.instances_changed()
    assert [i.name for i in rig.scheduler.lanes["g"].instances] == ["x", "r1"]
    task_id = await rig.submit("on r1")
    await rig.until(task_id, lambda t: t is not None and t.status is Status.PROCESSING)
    x = rig.scheduler.lanes["g"].instances[0]  # its state stays the same object throughout
    # no heartbeat: within the ttl (and the reread), r1 leaves and its call is stopped
    requeued = await rig.until(task_id, lambda t: t is not None and t.attempts == 2)
    assert [i.name for i in rig.scheduler.lanes["g"].instances] == ["x"]
    assert rig.scheduler.lanes["g"].instances[0] is x
    history = await rig.store.tasks.history(task_id)
    assert (history[0].instance, history[0].outcome) == ("r1", "interrupted")
    assert history[0].error is not None and history[0].error["type"] == "instance_expired"
    assert requeued.status in (Status.PROCESSING, Status.SUCCESS)
    # x holds too (same options as the route's instance "x": {"tag": "a", "hold": True})
    SEEN.gate.set()
    done = await rig.until(task_id, lambda t: t is not None and t.terminal)
    assert done.status is Status.SUCCESS and done.instance == "x"
    assert [c[0] for c in SEEN.calls] == ["on r1", "on r1"]


async def test_a_stop_that_meets_a_hint_stops_the_reread_loop(tmp_path: Path) -> None:
    """Stopped in the same turn of the loop as a hint wakes its reread loop, the live
    config stops (Python 3.11's ``asyncio.wait_for`` returned the hint and dropped the
    cancel: ``stop`` waited for ever)."""
    path = config(tmp_path, {"tag": "a"})
    settings: Settings = load(path)
    store = SqlStore(settings.store_url)
    await store.open()
    live = LiveConfig(settings, path, store, MemoryEvents())
    live._hint = hinted = Entered()
    await live.start()
    try:
        await hinted.entered.wait()
        hinted.set()
        stopping = asyncio.create_task(live.stop())
        done, _ = await asyncio.wait([stopping], timeout=10)
        assert done, "the reread loop ran on after its cancel"
    finally:
        await store.close()
