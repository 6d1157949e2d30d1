"""Task status state machine, priorities and ids."""

from __future__ import annotations

import time

import pytest

from taskgate.models import TERMINAL, Priority, Status, Task, can_transition, new_id

P, R = Status.PENDING, Status.PROCESSING
S, F, T, X = Status.SUCCESS, Status.FAILED, Status.TIMEOUT, Status.CANCELLED

ALLOWED = {(P, R), (P, T), (P, X), (R, P), (R, S), (R, F), (R, T), (R, X)}


def test_terminal_set() -> None:
    assert {S, F, T, X} == TERMINAL
    assert [s for s in Status if s.terminal] == [S, F, T, X]
    assert not P.terminal and not R.terminal


@pytest.mark.parametrize("src", list(Status))
@pytest.mark.parametrize("dst", list(Status))
def test_transition_graph(src: Status, dst: Status) -> None:
    assert can_transition(src, dst) == ((src, dst) in ALLOWED)


def test_terminal_statuses_are_final() -> None:
    for src in TERMINAL:
        assert not any(can_transition(src, dst) for dst in Status)


def test_pending_cannot_succeed_or_fail_without_running() -> None:
    assert not can_transition(P, S)
    assert not can_transition(P, F)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("critical", Priority.CRITICAL), ("DEFAULT", Priority.DEFAULT), ("Low", Priority.LOW)],
)
def test_priority_parse(name: str, expected: Priority) -> None:
    assert Priority.parse(name) is expected
    assert Priority.parse(expected.label) is expected


@pytest.mark.parametrize("name", ["urgent", "", "0", "crit"])
def test_priority_parse_rejects_unknown_names(name: str) -> None:
    with pytest.raises(ValueError, match=f"unknown priority '{name}'.*critical, default or low"):
        Priority.parse(name)


def test_priorities_order_most_urgent_first() -> None:
    assert sorted([Priority.LOW, Priority.CRITICAL, Priority.DEFAULT]) == list(Priority)
    assert Priority.CRITICAL < Priority.DEFAULT < Priority.LOW


def test_new_id_shape_and_prefix() -> None:
    plain, prefixed = new_id(), new_id("task_")
    assert len(plain) == 32 and int(plain, 16) >= 0
    assert prefixed.startswith("task_") and len(prefixed) == 37


def test_new_id_carries_the_creation_time() -> None:
    before = time.time_ns() // 1_000_000
    ms = int(new_id()[:12], 16)
    after = time.time_ns() // 1_000_000
    assert before <= ms <= after


def test_new_ids_sort_by_creation_time() -> None:
    ids = []
    for _ in range(5):
        ids.append(new_id())
        time.sleep(0.002)
    assert sorted(ids) == ids


def test_new_ids_are_unique() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)


def test_a_stored_time_no_calendar_renders_does_not_break_a_read() -> None:
    from taskgate.views import iso, task_json

    task = Task(
        id="t1",
        tenant="acme",
        api_key_id="k",
        kind="chat",
        model="mock",
        route="mock",
        priority=Priority.DEFAULT,
        status=Status.CANCELLED,
        input="hi",
        params={},
        created_at=0.0,
        updated_at=0.0,
        deadline=1e20,  # written before durations were bounded
    )
    assert task_json(task)["deadline"] is None
    assert [iso(v) for v in (float("inf"), float("nan"), -1e20)] == [None, None, None]
    assert iso(1.5) == "1970-01-01T00:00:01.500Z"


def test_ids_made_in_one_process_only_increase(monkeypatch: pytest.MonkeyPatch) -> None:
    made = [new_id() for _ in range(2000)]  # many share a millisecond
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(len(i) == 32 for i in made)
    now = time.time_ns()
    monkeypatch.setattr(time, "time_ns", lambda: now - 5_000_000_000)  # the clock steps back
    assert new_id() > made[-1]
