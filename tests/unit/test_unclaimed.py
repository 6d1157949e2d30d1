"""The claim of new tasks' rows before their insert (``store.claims.Unclaimed``): it takes
what the store's claim statement would (due, in claim order, at most what is wanted) and
writes each row as that statement would."""

from __future__ import annotations

from typing import Any

from taskgate.models import Priority, Status
from taskgate.store.base import NewTask
from taskgate.store.claims import Unclaimed
from taskgate.store.tasks import _new_row

NOW = 1_000.0
LANE = ("r", int(Priority.DEFAULT))


def row(seq: int, priority: Priority = Priority.DEFAULT, **over: Any) -> dict[str, Any]:
    new = NewTask("t", "k", "chat", "m", "r", priority, "hi", {}, max_attempts=3)
    return {**_new_row(new, seq, NOW - 10), **over}


def test_takes_due_rows_in_claim_order_up_to_what_is_wanted() -> None:
    rows = [row(2), row(0, deadline=NOW - 1), row(1), row(0, run_after=NOW + 5), row(3)]
    unclaimed = Unclaimed(rows)
    taken = unclaimed.take(LANE, 2, "w1", NOW, 30)
    assert taken is not None
    assert [t.fair_seq for t in taken] == [1, 2]  # the late and the not yet due are left
    assert [r["status"] for r in rows] == [
        "PROCESSING",
        "PENDING",
        "PROCESSING",
        "PENDING",
        "PENDING",
    ]
    again = unclaimed.take(LANE, 5, "w1", NOW, 30)
    assert again is not None and [t.fair_seq for t in again] == [3]  # each row once


def test_a_taken_row_is_written_as_the_claim_statement_writes_it() -> None:
    rows = [row(0, deadline=NOW + 60)]
    [task] = Unclaimed(rows).take(LANE, 1, "w1", NOW, 30) or []
    assert task.status is Status.PROCESSING
    assert (task.worker, task.attempts, task.lease_until) == ("w1", 1, NOW + 30)
    assert task.claimed_at == task.started_at == task.updated_at == NOW
    assert task.deadline is None  # a queue-wait deadline ends once the task has started
    assert rows[0]["status"] == "PROCESSING"  # the row inserted is the task returned


def test_other_lanes_are_the_stores_and_places_are_kept_on_taken_rows() -> None:
    rows = [row(0), row(0, Priority.LOW)]
    unclaimed = Unclaimed(rows)
    assert unclaimed.take(("other", 1), 1, "w1", NOW, 30) is None
    [task] = unclaimed.take(LANE, 1, "w1", NOW, 30) or []
    in_store = ("a claimed task", "i2")
    assert unclaimed.place([(task.id, "i1"), in_store]) == [in_store]
    assert rows[0]["instance"] == "i1"
    assert rows[1]["instance"] is None  # not taken: nothing to place


def test_only_new_tasks_free_to_run_anywhere_in_lanes_without_waiting_ones() -> None:
    assert Unclaimed.of([row(0), row(1)], {LANE}) is not None
    assert Unclaimed.of([row(0), row(0, Priority.LOW)], {LANE}) is None  # LOW holds tasks
    assert Unclaimed.of([row(0), row(1, pinned_instance="i1")], {LANE}) is None
