"""Tasks pinned to one instance of their route (an AIFlow client's endpoint on a host the
administrator allows), claimed on SQLite and PostgreSQL: taken only within that instance's
room, given that instance, left waiting while it has none, and failed with a clear error
once the instance has left the route."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from taskgate import policy
from taskgate.models import Priority, Status, Task
from taskgate.store import SqlStore
from tests.integration.test_store import LEASE, ROUTE, add, add_one


@dataclass
class Rooms:
    """The claim's view of the route's instances: their room, and when it was read."""

    room: dict[str, int]
    since: float = field(default_factory=time.time)

    def rooms(self) -> Mapping[str, int]:
        return dict(self.room)


def assign_pinned(claimed: Sequence[Task]) -> list[str | None]:
    return [t.pinned_instance or "any" for t in claimed]


async def claim(store: SqlStore, want: int, pinning: Rooms | None) -> list[Task]:
    return await store.claims.claim(
        ROUTE, lambda *_: {Priority.DEFAULT: want}, assign_pinned, "w1", LEASE, None, pinning
    )


async def test_pinned_tasks_take_only_their_instances_room_and_get_that_instance(
    store: SqlStore,
) -> None:
    pinned = await add(store, 3, pinned_instance="b")
    free = await add_one(store)
    got = await claim(store, 10, Rooms({"a": 5, "b": 2}))
    assert sorted(t.id for t in got) == sorted([pinned[0].id, pinned[1].id, free.id])
    assert {t.id: t.instance for t in got} == {pinned[0].id: "b", pinned[1].id: "b", free.id: "any"}
    stored = await store.tasks.get(pinned[2].id)
    assert stored is not None and stored.status is Status.PENDING  # b had no more room


async def test_a_pinned_task_waits_while_its_instance_is_full_and_without_pinning(
    store: SqlStore,
) -> None:
    task = await add_one(store, pinned_instance="b")
    assert await claim(store, 5, Rooms({"a": 5, "b": 0})) == []
    assert await claim(store, 5, None) == []  # a claim that cannot place it never takes it
    [got] = await claim(store, 5, Rooms({"a": 0, "b": 1}))
    assert (got.id, got.instance, got.status) == (task.id, "b", Status.PROCESSING)


async def test_a_task_pinned_to_an_instance_that_left_the_route_fails_clearly(
    store: SqlStore,
) -> None:
    gone = await add_one(store, pinned_instance="old")
    read_at = time.time()
    newer = await add_one(store, pinned_instance="new")  # pinned after this worker read its list
    assert await claim(store, 5, Rooms({"a": 1}, since=read_at)) == []
    failed = await store.tasks.get(gone.id)
    assert failed is not None and failed.status is Status.FAILED
    assert failed.error is not None and failed.error["type"] == "instance_gone"
    assert "'old'" in failed.error["message"] and ROUTE in failed.error["message"]
    waiting = await store.tasks.get(newer.id)
    assert waiting is not None and waiting.status is Status.PENDING


def test_assignment_gives_pinned_tasks_their_instance_before_the_others_choose() -> None:
    states = [policy.InstanceState("a", 1), policy.InstanceState("b", 1)]
    # the unpinned task comes first, and on a tie it would choose a (the first), taking the
    # only slot of the instance the pinned task must run on
    picks = policy.assign_instances(states, 0.0, [[], []], [None, "a"])
    assert picks == ["b", "a"]
    assert policy.assign_instances(states, 0.0, [None], ["a"]) == [None]  # a resumed job
