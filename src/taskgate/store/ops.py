"""The queue's statements on the tasks table (accepting, claiming, ending, sweeping), each a
synchronous function of a ``Connection`` or a statement built once; and the small runners
(``rows``, ``scalar``, ...) every repository hands to the database.

The repositories (``tasks.py``, ``claims.py``, ...) run them in a transaction of
:class:`~taskgate.store.database.Database`: inline on SQLite, through
``AsyncConnection.run_sync`` on PostgreSQL. Nothing here awaits, reads the clock of its own
accord or holds state.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa

from taskgate.errors import Conflict
from taskgate.history import answer_content
from taskgate.models import Priority, Status, Task
from taskgate.policy import fair_seq
from taskgate.store import direct, rate_buckets, usage
from taskgate.store.base import NewTask, Outcome
from taskgate.store.database import rows
from taskgate.store.outbox import add_deliveries
from taskgate.store.schema import attempts, messages, route_states, status_is, tasks

Conn = sa.Connection
PENDING, PROCESSING = Status.PENDING.value, Status.PROCESSING.value

# The statuses the queue's partial indexes are for, written into the SQL (``status_is``).
# With it bound ($1), PostgreSQL's generic plan of a claim's count of the calls in flight
# walked every task of its route (1 ms against 0.1 ms with 5,000 pending).
IS_PENDING = status_is(tasks.c.status, PENDING)
IS_PROCESSING = status_is(tasks.c.status, PROCESSING)


def one_task(conn: Conn, stmt: sa.Executable) -> Task | None:
    row = conn.execute(stmt).mappings().first()
    return Task.from_row(row) if row else None


def one_task_with(conn: Conn, stmt: sa.Executable, params: dict[str, Any]) -> Task | None:
    found = direct.rows(conn, stmt, params)
    return Task.from_row(found[0]) if found else None


# The hottest statements, built once with bound parameters (building one costs more than
# running it on SQLite) and run on the driver directly (``direct.py``).
ADD_TASKS = tasks.insert()
TASK_BY_ID = sa.select(tasks).where(tasks.c.id == sa.bindparam("g_id"))
TENANT_TASK_BY_ID = TASK_BY_ID.where(tasks.c.tenant == sa.bindparam("g_tenant"))


def tuples(conn: Conn, stmt: sa.Executable) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(stmt).all()]


def tuples_with(conn: Conn, stmt: sa.Executable, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of a statement built once (``direct.py``), as tuples."""
    return [tuple(r.values()) for r in direct.rows(conn, stmt, params)]


def rows_with(conn: Conn, stmt: sa.Executable, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a statement built once (``direct.py``)."""
    return direct.rows(conn, stmt, params)


def execute(conn: Conn, stmt: sa.Executable, params: list[dict[str, Any]] | None = None) -> None:
    conn.execute(stmt, params)


def in_lane(route: str, priority: int) -> tuple[sa.ColumnElement[bool], ...]:
    return (IS_PENDING, tasks.c.route == route, tasks.c.priority == priority)


def replay(existing: Task, new: NewTask) -> tuple[Task, bool] | Conflict:
    """A repeated idempotency key: the stored task if the request is the same, else 409."""
    if existing.request_hash == new.request_hash:
        return existing, False
    return Conflict(
        "idempotency key reused with a different request",
        idempotency_key=new.idempotency_key,
        task_id=existing.id,
    )


def by_idempotency_key(conn: Conn, tenant: str, key: str) -> Task | None:
    q = sa.select(tasks).where(tasks.c.tenant == tenant, tasks.c.idempotency_key == key)
    return one_task(conn, q)


_LANE = (
    IS_PENDING,
    tasks.c.route == sa.bindparam("lane_route"),
    tasks.c.priority == sa.bindparam("lane_priority"),
)
# A lane's front and a key's last place in it: the first row of the lane's index
# (ix_tasks_claim) and the last of the key's (ix_tasks_key_lane). Written with min() and
# max(), PostgreSQL's planner, on statistics that lag behind a burst of tasks (a busy queue's
# usual state), may walk another index of every pending task instead (ix_tasks_deadline):
# 2 ms against 0.03 ms for 5,000 pending. SQLite reads the same indexes either way.
_FRONT = sa.select(tasks.c.fair_seq).where(*_LANE).order_by(tasks.c.fair_seq).limit(1)
_LAST = (
    sa.select(tasks.c.fair_seq)
    .where(*_LANE, tasks.c.api_key_id == sa.bindparam("lane_key"))
    .order_by(tasks.c.fair_seq.desc())
    .limit(1)
)


class InLane(Protocol):
    """A task about to join a lane: a new one, or an ended one run again."""

    @property
    def route(self) -> str: ...
    @property
    def priority(self) -> Priority: ...
    @property
    def api_key_id(self) -> str: ...


def fair_seqs(conn: Conn, batch: Sequence[InLane]) -> tuple[list[int], set[tuple[str, int]]]:
    """Number each task joining its lane so that keys share the lane fairly. Also returns
    the lanes (route, priority) that held no pending task before these joined."""
    fronts: dict[tuple[str, int], int | None] = {}
    lasts: dict[tuple[str, int, str], int | None] = {}
    out = []
    for new in batch:
        lane = (new.route, int(new.priority))
        where = {"lane_route": new.route, "lane_priority": int(new.priority)}
        if lane not in fronts:
            fronts[lane] = direct.scalar(conn, _FRONT, where)
        key = (*lane, new.api_key_id)
        if key not in lasts:  # (an empty lane holds no task of the key either)
            where_key = {**where, "lane_key": new.api_key_id}
            lasts[key] = None if fronts[lane] is None else direct.scalar(conn, _LAST, where_key)
        seq = fair_seq(fronts[lane], lasts[key])
        lasts[key] = seq
        out.append(seq)
    return out, {lane for lane, front in fronts.items() if front is None}


def claim_statement(skip_locked: bool, pinned: bool = False) -> sa.Executable:
    """Move up to ``:c_limit`` due tasks of one lane (``:lane_route``, ``:lane_priority``) to
    PROCESSING under ``:c_worker``'s lease (until ``:c_lease_until``), as of ``:c_now``:
    tasks free to run on any instance or, with ``pinned``, those pinned to ``:c_pin``."""
    now = sa.bindparam("c_now", type_=sa.Float)
    pin = tasks.c.pinned_instance
    pick = (
        sa.select(tasks.c.id)
        .where(
            *_LANE,
            pin == sa.bindparam("c_pin") if pinned else pin.is_(None),
            tasks.c.run_after <= now,
            sa.or_(tasks.c.deadline.is_(None), tasks.c.deadline > now),
        )
        .order_by(tasks.c.fair_seq, tasks.c.id)
        .limit(sa.bindparam("c_limit", type_=sa.Integer))
    )
    if skip_locked:
        pick = pick.with_for_update(skip_locked=True)
    # A CTE, not a subquery: PostgreSQL may re-run a SKIP LOCKED subquery for every row it
    # scans, each run skipping the rows the previous one locked, and so claim far more than
    # the limit. A locking CTE runs exactly once.
    picked = pick.cte("picked")
    # Locked by the CTE, the rows it picked are PENDING still (on SQLite, writers take
    # turns): the status is checked again only there. On PostgreSQL the check would let its
    # planner, on statistics that lag behind a burst of tasks, join through the index of
    # every pending task (ix_tasks_status_id) rather than the primary key: 49 ms against
    # 1.2 ms for a claim of 32 among 5,000 pending.
    still_pending = () if skip_locked else (IS_PENDING,)
    return (
        tasks.update()
        .where(tasks.c.id.in_(sa.select(picked.c.id)), *still_pending)
        .values(
            status=PROCESSING,
            attempts=tasks.c.attempts + 1,
            worker=sa.bindparam("c_worker"),
            lease_until=sa.bindparam("c_lease_until", type_=sa.Float),
            claimed_at=now,
            deadline=None,  # a queue-wait deadline ends once the task has started
            started_at=sa.func.coalesce(tasks.c.started_at, now),
            updated_at=now,
        )
        .returning(*tasks.c)
    )


def fail_pinned_to_gone(
    conn: Conn, route: str, instance: str, before: float, now: float
) -> list[Task]:
    """Fail the tasks waiting for ``instance``, which is no longer on ``route``: those
    submitted ``before`` the worker last read the route's instances (a later one was pinned
    by a gateway that knows an instance this worker does not yet)."""
    message = (
        f"the backend instance {instance!r} this task must run on (the host of its "
        f"model_spec.endpoint) is no longer on route {route!r}"
    )
    stmt = (
        tasks.update()
        .where(
            IS_PENDING,
            tasks.c.route == route,
            tasks.c.pinned_instance == instance,
            tasks.c.created_at < before,
        )
        .values(
            status=Status.FAILED.value,
            error={"type": "instance_gone", "message": message},
            finished_at=now,
            updated_at=now,
        )
        .returning(*tasks.c)
    )
    failed = [Task.from_row(r) for r in rows(conn, stmt)]
    add_deliveries(conn, failed, now)
    return failed


# A claim on one route holds this lock for its transaction (PostgreSQL; on SQLite writers
# take turns anyway), so that its count of the calls in flight is every worker's. Tried,
# not waited for: a worker that finds it taken moves on, the holder being already at
# claiming what there is (store/claims.RouteBusy).
TRY_ROUTE_LOCK = sa.select(
    sa.func.pg_try_advisory_xact_lock(
        sa.literal_column("7364022"), sa.func.hashtext(sa.bindparam("lock_route", type_=sa.String))
    )
)


@dataclass(frozen=True, slots=True)
class RouteState:
    """What a claim reads of its route: whether an admin paused it, the calls in flight on
    each of its instances (every worker's), and the instances waiting tasks are pinned to."""

    paused: bool
    busy: dict[str, int]
    pinned: list[str]


_ROUTE = sa.bindparam("r_route", type_=sa.String)
# The three in one statement (one round trip on PostgreSQL), each row tagged by its kind:
# - "paused": the route's row in route_states, if an admin paused it;
# - "busy": per instance, tasks holding a backend slot (a task whose backend job runs on
#   its own holds none) under a lease that has not lapsed;
# - "pinned": the instances waiting tasks are pinned to (ix_tasks_pinned: empty but for
#   such tasks, so this part costs next to nothing when there are none).
ROUTE_STATE = sa.union_all(
    sa.select(
        sa.literal_column("'paused'").label("kind"),
        route_states.c.route.label("name"),
        sa.literal_column("0").label("n"),
    ).where(route_states.c.route == _ROUTE, route_states.c.paused.is_(True)),
    sa.select(sa.literal_column("'busy'"), tasks.c.instance, sa.func.count())
    .where(
        tasks.c.route == _ROUTE,
        IS_PROCESSING,
        tasks.c.provider_job.is_(None),
        tasks.c.lease_until > sa.bindparam("r_now", type_=sa.Float),
    )
    .group_by(tasks.c.instance),
    sa.select(sa.literal_column("'pinned'"), tasks.c.pinned_instance, sa.literal_column("0"))
    .where(
        IS_PENDING,
        tasks.c.route == _ROUTE,
        tasks.c.pinned_instance.is_not(None),
    )
    .distinct(),
)


def route_state(conn: Conn, route: str, now: float) -> RouteState:
    """The route as a claim sees it, in the claim's transaction."""
    paused, busy, pinned = False, {}, []
    for kind, name, n in tuples_with(conn, ROUTE_STATE, {"r_route": route, "r_now": now}):
        if kind == "paused":
            paused = True
        elif kind == "busy":
            busy[name] = int(n)  # (no task holds a slot without an instance past its claim)
        else:
            pinned.append(name)
    return RouteState(paused, busy, pinned)


SET_INSTANCE = (
    tasks.update()
    .where(tasks.c.id == sa.bindparam("s_id"))
    .values(instance=sa.bindparam("s_instance"))
)


def _fence(o: Outcome) -> dict[str, Any]:
    return {"b_id": o.task_id, "b_worker": o.worker, "b_attempt": o.attempt}


_FENCED = tasks.update().where(
    tasks.c.id == sa.bindparam("b_id"),
    IS_PROCESSING,
    tasks.c.worker == sa.bindparam("b_worker"),
    tasks.c.attempts == sa.bindparam("b_attempt"),
)
# what the attempt used and cost joins what the task's earlier attempts did
_USAGE = {
    "input_tokens": tasks.c.input_tokens + sa.bindparam("b_input_tokens"),
    "output_tokens": tasks.c.output_tokens + sa.bindparam("b_output_tokens"),
    "cost": tasks.c.cost + sa.bindparam("b_cost", type_=sa.Float),
}
_END = _FENCED.values(
    **_USAGE,
    status=sa.bindparam("b_status"),
    instance=sa.bindparam("b_instance"),
    result=sa.bindparam("b_result", type_=tasks.c.result.type),
    error=sa.bindparam("b_error", type_=tasks.c.error.type),
    provider_job=sa.bindparam("b_job", type_=tasks.c.provider_job.type),
    updated_at=sa.bindparam("b_now"),
    finished_at=sa.bindparam("b_now"),
    lease_until=None,
)
_RETRY = _FENCED.values(
    **_USAGE,
    status=PENDING,
    instance=sa.bindparam("b_instance"),
    error=sa.bindparam("b_error", type_=tasks.c.error.type),
    provider_job=sa.bindparam("b_job", type_=tasks.c.provider_job.type),
    route=sa.bindparam("b_route"),
    run_after=sa.bindparam("b_run_after"),
    updated_at=sa.bindparam("b_now"),
    worker=None,
    lease_until=None,
)


# The endings a batch wrote, read back by their ids: one statement whatever the batch's size
# (so built once, and run on the driver), the ids a JSON array on SQLite, an array on
# PostgreSQL
_WRITTEN_AT = tasks.c.updated_at == sa.bindparam("w_now", type_=sa.Float)
_IDS = sa.bindparam("w_ids", type_=sa.JSON)
_WRITTEN = {
    "sqlite": sa.select(tasks).where(
        tasks.c.id.in_(
            sa.select(sa.column("value", sa.String)).select_from(sa.func.json_each(_IDS))
        ),
        _WRITTEN_AT,
    ),
    "postgresql": sa.select(tasks).where(
        tasks.c.id == sa.any_(sa.bindparam("w_ids", type_=sa.ARRAY(sa.String))), _WRITTEN_AT
    ),
}
_ADD_ATTEMPTS = attempts.insert()


def finish_batch(conn: Conn, batch: Sequence[Outcome]) -> list[Task | None]:
    """Write a batch of attempt endings with one executemany per kind, and return each
    ending's task as written, or None where it did not apply: a fenced-out ending
    (cancelled, lease lost, duplicate) changes no row.

    When every ending applied (the driver counts a row changed for each) and each carries
    its task as claimed, the tasks are those with the ending's changes; else they are read
    back. Rows written here carry this batch's ``updated_at`` (a float timestamp of this
    call); another writer would have to end the same task in the same microsecond, inside
    our transaction, to be mistaken for ours.
    """
    now = time.time()
    ends, retries = [], []
    for o in batch:
        common = {
            **_fence(o),
            "b_instance": o.instance,
            "b_error": o.error,
            "b_job": o.provider_job,
            "b_now": now,
            "b_input_tokens": o.input_tokens,
            "b_output_tokens": o.output_tokens,
            "b_cost": o.cost,
        }
        if o.status is Status.PENDING:
            retries.append(
                {**common, "b_route": o.next_route or o.route, "b_run_after": o.run_after}
            )
        else:
            ends.append({**common, "b_status": o.status.value, "b_result": o.result})
    done, retried = direct.execute(conn, _END, ends), direct.execute(conn, _RETRY, retries)
    all_applied = done is not None and retried is not None and done + retried == len(batch)
    if all_applied and all(o.task is not None for o in batch):
        applied = {o.task_id: _as_ended(o, now) for o in batch}
    else:
        ids = {"w_ids": [o.task_id for o in batch], "w_now": now}
        written = direct.rows(conn, _WRITTEN[conn.dialect.name], ids)
        applied = {r["id"]: Task.from_row(r) for r in written}
    out: list[Task | None] = []
    history, charges = [], []
    for o in batch:
        task = applied.pop(o.task_id, None)  # pop: a duplicate in the batch gets None
        out.append(task)
        if task is not None:
            history.append(attempt_row(o, now))
            if o.input_tokens or o.output_tokens or o.cost:
                tokens = o.input_tokens + o.output_tokens
                charges.append(usage.Charge(task.api_key_id, task.tenant, tokens, o.cost))
    direct.execute(conn, _ADD_ATTEMPTS, history)
    rate_buckets.spend_tokens(conn, batch)  # the calls happened whatever became of them
    usage.charge(conn, charges, now)
    ended = [t for t in out if t is not None]
    add_answers(conn, ended, now)
    add_deliveries(conn, ended, now)
    return out


def _as_ended(o: Outcome, now: float) -> Task:
    """The task of an ending that applied, as ``_END`` or ``_RETRY`` wrote it."""
    t = o.task
    assert t is not None
    common = {
        "instance": o.instance,
        "error": o.error,
        "provider_job": o.provider_job,
        "updated_at": now,
        "lease_until": None,
        "input_tokens": t.input_tokens + o.input_tokens,
        "output_tokens": t.output_tokens + o.output_tokens,
        "cost": t.cost + o.cost,
    }
    if o.status is Status.PENDING:
        route = o.next_route or o.route
        return t.evolve(**common, status=o.status, route=route, run_after=o.run_after, worker=None)
    return t.evolve(**common, status=o.status, result=o.result, finished_at=now)


def add_answers(conn: Conn, ended: Sequence[Task], now: float) -> None:
    """Each successful turn of a conversation joins its history, with the answering model,
    in the transaction that ends the task: an answer is never lost or kept twice."""
    rows = [
        {
            "conversation_id": t.conversation_id,
            "role": "assistant",
            "content": answer_content(t.result),
            "model": t.model,
            "task_id": t.id,
            "turn_id": t.turn_id,
            "created_at": now,
        }
        for t in ended
        if t.conversation_id is not None and t.status is Status.SUCCESS
    ]
    if rows:
        conn.execute(messages.insert(), rows)


def attempt_row(o: Outcome, now: float) -> dict[str, Any]:
    return {
        "task_id": o.task_id,
        "number": o.attempt,
        "route": o.route,
        "instance": o.instance,
        "started_at": o.started_at,
        "ended_at": now,
        "outcome": o.label,
        "error": o.error,
        "retry_at": o.run_after if o.label in ("retry", "failover") else None,
    }


SWEEP_BATCH = 500


def sweep_once(conn: Conn, now: float) -> tuple[list[Task], list[Task], bool]:
    """One bounded sweep: the lost tasks it requeued or failed, the tasks it timed out, and
    whether more lost tasks may remain."""
    expired = sa.select(tasks).where(IS_PROCESSING, tasks.c.lease_until < now)
    found = rows(conn, expired.limit(SWEEP_BATCH))
    lost = [t for row in found if (t := _requeue_lost(conn, Task.from_row(row), now))]
    error = {"type": "deadline", "message": "the queue-wait deadline passed before it started"}
    timed_out = (
        tasks.update()
        .where(IS_PENDING, tasks.c.deadline < now)
        .values(status=Status.TIMEOUT.value, error=error, finished_at=now, updated_at=now)
        .returning(*tasks.c)
    )
    late = [Task.from_row(r) for r in rows(conn, timed_out)]
    add_deliveries(conn, lost + late, now)
    return lost, late, len(found) == SWEEP_BATCH


def cancel_statement(conds: list[Any], reason: str) -> sa.Executable:
    """Cancel the tasks that match ``conds`` and have not ended, returning them."""
    now = time.time()
    return (
        tasks.update()
        .where(*conds, status_is(tasks.c.status, PENDING, PROCESSING))
        .values(
            status=Status.CANCELLED.value,
            error={"type": "cancelled", "message": reason},
            finished_at=now,
            updated_at=now,
            lease_until=None,
        )
        .returning(*tasks.c)
    )


def end_where(conn: Conn, stmt: sa.Executable) -> list[Task]:
    """Run an UPDATE ... RETURNING that ends tasks (a cancel), queueing their webhooks in
    the same transaction."""
    ended = [Task.from_row(r) for r in rows(conn, stmt)]
    add_deliveries(conn, ended, time.time())
    return ended


def _requeue_lost(conn: Conn, t: Task, now: float) -> Task | None:
    error = {"type": "worker_lost", "message": f"worker {t.worker} stopped renewing its lease"}
    values: dict[str, Any] = {"error": error, "updated_at": now, "lease_until": None}
    # A task with a job on the backend's side is resumed whatever its attempts: polling
    # again costs nothing, and failing it would throw away a job already paid for.
    if t.attempts >= t.max_attempts and t.provider_job is None:
        values.update(status=Status.FAILED.value, finished_at=now)
    else:
        values.update(status=PENDING, worker=None, run_after=now)
    stmt = (
        tasks.update()
        .where(
            tasks.c.id == t.id,
            IS_PROCESSING,
            tasks.c.worker == t.worker,
            tasks.c.attempts == t.attempts,
            tasks.c.lease_until < now,
        )
        .values(**values)
        .returning(*tasks.c)
    )
    task = one_task(conn, stmt)
    if task is not None:
        lost = Outcome(
            task_id=t.id,
            worker=t.worker or "",
            attempt=t.attempts,
            status=task.status,
            label="lost",
            instance=t.instance or "",
            route=t.route,
            started_at=t.claimed_at or now,
            error=error,
        )
        conn.execute(attempts.insert(), [attempt_row(lost, now)])
    return task
