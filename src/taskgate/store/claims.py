"""What workers do with tasks: claim them under a lease, renew it, and end their attempts;
and the sweep that requeues the tasks of workers that stopped renewing.

On PostgreSQL workers never wait on each other's claims: a claim takes the route's lock only
if it is free (else :class:`RouteBusy`: another worker is claiming there, look again soon),
and its rows with ``FOR UPDATE SKIP LOCKED``.
Attempt endings go through :class:`~taskgate.batching.Batcher`: under load many share one
transaction, and they are written with one executemany.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa

from taskgate.batching import Batcher
from taskgate.models import Priority, Status, Task
from taskgate.store import direct, ops, rate_buckets, task_logs
from taskgate.store.base import Outcome
from taskgate.store.database import Conn, Database
from taskgate.store.rate_buckets import RateLimit
from taskgate.store.schema import attempts, tasks

PROCESSING = Status.PROCESSING.value
R = TypeVar("R")


class ClaimPlan(Protocol):
    """How many tasks of each priority a claim takes, given the calls in flight on each of
    the route's instances (every worker's) and the calls the rate limits allow on each
    limited instance. Runs INSIDE the claim's transaction, which holds the route's lock:
    it must be quick, and must not await or use the store."""

    def __call__(
        self, busy: Mapping[str, int], allowed: Mapping[str, int | None], /
    ) -> Mapping[Priority, int]: ...


class AssignInstances(Protocol):
    """The instance each claimed task runs on, in their order (None: keep the one it has,
    as a resumed backend job does). Runs INSIDE the claim's transaction, like
    :class:`ClaimPlan`."""

    def __call__(self, claimed: Sequence[Task], /) -> Sequence[str | None]: ...


class Pinning(Protocol):
    """Where the tasks pinned to one instance may run in a claim (taskgate.models.Task
    ``pinned_instance``). Runs INSIDE the claim's transaction, after its plan, like
    :class:`ClaimPlan`."""

    def rooms(self) -> Mapping[str, int]:
        """Every instance of the route: the calls it may start now, as the plan saw them."""
        ...

    @property
    def since(self) -> float:
        """The cut-off for tasks pinned to an instance not in :meth:`rooms`: those submitted
        before it fail (the instance has left the route); later ones wait (the gateway may
        know of an instance the worker has not heard of yet)."""
        ...


class Unclaimed:
    """The rows of new tasks about to be inserted into lanes that hold no other pending
    task, for a claim riding on their insert to take from: a row taken is written as the
    claim statement would write it (:func:`ops.claim_statement`), and so inserted already
    claimed. One INSERT then does what took an INSERT and two UPDATEs, and the task never
    enters, then leaves, the indexes of waiting tasks.

    Only rows free to run anywhere (:meth:`of`): with a task pinned to an instance the
    claim's order among pins would have to be repeated here, so those are inserted first
    and claimed in the store."""

    @classmethod
    def of(
        cls, rows: Sequence[dict[str, Any]], empty_lanes: set[tuple[str, int]]
    ) -> Unclaimed | None:
        """The new rows to claim from, if every one joins a lane of ``empty_lanes`` (route,
        priority) and none is pinned to an instance; else None."""
        if any(
            r["pinned_instance"] is not None or (r["route"], r["priority"]) not in empty_lanes
            for r in rows
        ):
            return None
        return cls(rows)

    def __init__(self, rows: Sequence[dict[str, Any]]) -> None:
        self._lanes: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for row in sorted(rows, key=lambda r: (r["fair_seq"], r["id"])):  # the claim's order
            self._lanes.setdefault((row["route"], row["priority"]), []).append(row)
        self._taken: dict[str, dict[str, Any]] = {}

    def take(
        self, lane: tuple[str, int], want: int, worker: str, now: float, lease: float
    ) -> list[Task] | None:
        """Claim up to ``want`` due rows of ``lane`` for ``worker``; None if the lane is not
        one of these (its tasks are in the store)."""
        waiting = self._lanes.get(lane)
        if waiting is None:
            return None
        due = (r for r in waiting if r["run_after"] <= now and not _past(r["deadline"], now))
        taken = list(itertools.islice(due, want))
        for row in taken:
            waiting.remove(row)
            row.update(
                status=PROCESSING,
                attempts=row["attempts"] + 1,
                worker=worker,
                lease_until=now + lease,
                claimed_at=now,
                deadline=None,
                started_at=row["started_at"] or now,
                updated_at=now,
            )
            self._taken[row["id"]] = row
        return [Task.from_row(r) for r in taken]

    def place(self, assigned: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Record on the rows taken here the instance each runs on (task id, instance);
        returns the rest, tasks claimed in the store."""
        rest = []
        for task_id, instance in assigned:
            if (row := self._taken.get(task_id)) is not None:
                row["instance"] = instance
            else:
                rest.append((task_id, instance))
        return rest


def _past(deadline: float | None, now: float) -> bool:
    return deadline is not None and deadline <= now


class RouteBusy(Exception):
    """Another worker is claiming on the route at this moment (PostgreSQL): nothing was
    taken and nothing waited. That worker takes what its share of the free capacity
    allows; the caller looks again soon for what is left."""


class Claims:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._finishes: Batcher[Outcome, Task | None] = Batcher(self._finish_batch)

    async def drain(self) -> None:
        """Wait for the endings under way (the store is closing)."""
        await self._finishes.drain()

    async def claim(
        self,
        route: str,
        plan: ClaimPlan,
        assign: AssignInstances,
        worker: str,
        lease: float,
        limits: Mapping[str, RateLimit] | None = None,
        pinning: Pinning | None = None,
    ) -> list[Task]:
        """Claim tasks of one route for ``worker``, in one transaction that holds the route's
        lock, so that no two workers' claims on a route interleave and its capacity and rate
        limits hold across all of them: count the calls in flight on each of the route's
        instances (every worker's) and the calls the rate limits of those in ``limits``
        (instance: requests and tokens per minute) allow, ask ``plan`` how many tasks of each
        priority to take given both, move them to PROCESSING under the lease, record on each
        the instance ``assign`` picks for it (None: keep the one it has, as a resumed backend
        job does), and take one request from the bucket of each instance picked. A route an
        admin paused gives nothing. The lock is tried, not waited for: if another worker's
        claim holds it, :class:`RouteBusy` is raised at once, nothing taken.

        A task pinned to one instance is taken only within that instance's room as
        ``pinning`` sees it (without ``pinning``, never), and fails if that instance has
        left the route.
        """
        done = await self._db.write(
            self.claim_in, route, plan, assign, worker, lease, limits or {}, pinning
        )
        if done is None:
            raise RouteBusy(route)
        claimed, failed = done
        self.tell(claimed, failed)
        return claimed

    async def claim_with(self, claims: Callable[[Conn], R]) -> R:
        """Run ``claims`` (calls of :meth:`claim_in`) in one transaction of their own; the
        caller tells of what they did (:meth:`tell`)."""
        return await self._db.write(claims)

    def tell(self, claimed: Sequence[Task], failed: Sequence[Task]) -> None:
        """Tell the observer and listeners of what a claim did, once it has committed."""
        self._db.observer.claimed(claimed)
        self._db.tell_ended(failed)

    def claim_in(
        self,
        conn: Conn,
        route: str,
        plan: ClaimPlan,
        assign: AssignInstances,
        worker: str,
        lease: float,
        limits: Mapping[str, RateLimit],
        pinning: Pinning | None,
        unclaimed: Unclaimed | None = None,
    ) -> tuple[list[Task], list[Task]] | None:
        """:meth:`claim` in the caller's transaction (a write accepting tasks, which the
        claim rides on): returns the tasks claimed and those failed, of which the caller
        tells (:meth:`tell`) once it has committed; None if another worker's claim holds
        the route's lock (PostgreSQL): nothing was taken. The lanes of ``unclaimed`` are
        claimed from its rows, not from the store (the caller inserts them after)."""
        now = time.time()
        if self._db.dialect == "postgresql" and not direct.scalar(
            conn, ops.TRY_ROUTE_LOCK, {"lock_route": route}
        ):
            return None  # another worker is claiming on the route
        state = ops.route_state(conn, route, now)
        if state.paused:  # an admin paused it: its tasks wait
            return [], []
        buckets = rate_buckets.load(conn, route, limits, now)
        allowed = {name: b.allowed(*limits[name]) for name, b in buckets.items()}
        wants = plan(state.busy, allowed)
        rooms, failed = self._pinned_rooms(conn, route, pinning, state.pinned, now)
        claimed: list[Task] = []
        for priority, want in wants.items():
            for pin, room in rooms.items():  # those that can run on one instance first
                if want > 0 and room > 0:
                    got = self._take(
                        conn, route, priority, min(want, room), worker, now, lease, pin
                    )
                    rooms[pin], want = room - len(got), want - len(got)
                    claimed += got
            if want > 0:
                lane = (route, int(priority))
                taken = (
                    None if unclaimed is None else unclaimed.take(lane, want, worker, now, lease)
                )
                if taken is None:
                    taken = self._take(conn, route, priority, want, worker, now, lease)
                claimed += taken
        picks = assign(claimed)
        assigned = [(t.id, i) for t, i in zip(claimed, picks, strict=True) if i]
        if unclaimed is not None:
            assigned = unclaimed.place(assigned)
        if assigned:
            rows = [{"s_id": task_id, "s_instance": i} for task_id, i in assigned]
            direct.execute(conn, ops.SET_INSTANCE, rows)
        if buckets:
            rate_buckets.take(conn, route, buckets, limits, picks)
        claimed = [t.evolve(instance=i) if i else t for t, i in zip(claimed, picks, strict=True)]
        return claimed, failed

    def _pinned_rooms(
        self, conn: Conn, route: str, pinning: Pinning | None, pins: list[str], now: float
    ) -> tuple[dict[str, int], list[Task]]:
        """The room of each instance that waiting tasks are pinned to (``pins``; none: the
        common case), and the tasks failed because the instance they are pinned to has left
        the route."""
        if pinning is None or not pins:
            return {}, []
        rooms = pinning.rooms()
        failed = [
            t
            for name in pins
            if name not in rooms
            for t in ops.fail_pinned_to_gone(conn, route, name, pinning.since, now)
        ]
        return {name: rooms[name] for name in pins if name in rooms}, failed

    def _take(
        self,
        conn: Conn,
        route: str,
        priority: Priority,
        want: int,
        worker: str,
        now: float,
        lease: float,
        pin: str | None = None,
    ) -> list[Task]:
        """Move up to ``want`` due tasks of one lane to PROCESSING under ``worker``'s lease
        (those free to run anywhere, or those pinned to instance ``pin``); return them in
        claim order."""
        values = {
            "lane_route": route,
            "lane_priority": int(priority),
            "c_limit": want,
            "c_worker": worker,
            "c_now": now,
            "c_lease_until": now + lease,
        }
        if pin is None:
            rows = ops.rows_with(conn, self._claim_stmt, values)
        else:
            rows = ops.rows_with(conn, self._claim_pinned_stmt, {**values, "c_pin": pin})
        return sorted((Task.from_row(r) for r in rows), key=lambda t: (t.fair_seq, t.id))

    @functools.cached_property
    def _claim_stmt(self) -> sa.Executable:
        """The claim, built once (with bound parameters) for this store's database: building
        a statement costs more than running it on SQLite."""
        return ops.claim_statement(skip_locked=self._db.dialect == "postgresql")

    @functools.cached_property
    def _claim_pinned_stmt(self) -> sa.Executable:
        """The claim of the tasks pinned to one instance (``:c_pin``)."""
        return ops.claim_statement(skip_locked=self._db.dialect == "postgresql", pinned=True)

    async def renew(self, ids: Iterable[str], worker: str, lease: float) -> set[str]:
        """Extend the leases ``worker`` still holds; return the ids it still holds."""
        ids = list(ids)
        if not ids:
            return set()
        stmt = (
            tasks.update()
            .where(tasks.c.id.in_(ids), tasks.c.worker == worker, ops.IS_PROCESSING)
            .values(lease_until=time.time() + lease)
            .returning(tasks.c.id)
        )
        return {row["id"] for row in await self._db.write(ops.rows, stmt)}

    async def finish(self, outcome: Outcome) -> Task | None:
        """End an attempt. Returns the task as written, or None when the attempt no longer
        holds the task (cancelled, lease lost, or already ended): then nothing changes."""
        return await self._finishes.submit(outcome)

    async def _finish_batch(self, batch: Sequence[Outcome]) -> list[Task | None]:
        out = await self._db.write(ops.finish_batch, batch)
        self._db.observer.attempts_ended(
            [(o, t) for o, t in zip(batch, out, strict=True) if t is not None]
        )
        self._db.tell_ended([t for t in out if t is not None and t.terminal])
        return out

    async def set_provider_job(self, task: Task, worker: str, job: dict[str, Any]) -> bool:
        """Keep the backend's job on the task (as claimed), fenced like a finish. False: the
        attempt no longer holds the task (cancelled meanwhile; the caller cancels the job)."""
        stmt = (
            tasks.update()
            .where(
                tasks.c.id == task.id,
                ops.IS_PROCESSING,
                tasks.c.worker == worker,
                tasks.c.attempts == task.attempts,
            )
            .values(provider_job=job, updated_at=time.time())
            .returning(tasks.c.id)
        )
        noted = task_logs.entry(
            task.id,
            "job_submitted",
            attempt=task.attempts,
            instance=job.get("instance"),
            message=f"the backend took job {job.get('id')}",
        )

        def keep(conn: Conn) -> bool:
            if not ops.rows(conn, stmt):
                return False
            task_logs.add_in(conn, [noted])
            return True

        kept = await self._db.write(keep)
        if kept:
            self._db.observer.job_kept(task, job)
        return kept

    async def record_late_result(self, task_id: str, result: Any) -> Task | None:
        """Keep the result of a backend job that finished after its task had timed out
        here. The status stays TIMEOUT (a task ends once); the paid-for output is kept."""
        stmt = (
            tasks.update()
            .where(
                tasks.c.id == task_id,
                tasks.c.status == Status.TIMEOUT.value,
                tasks.c.provider_job.is_not(None),
            )
            .values(result=result, updated_at=time.time())
            .returning(*tasks.c)
        )
        noted = task_logs.entry(
            task_id, "late_result", message="the backend job's late result was kept"
        )

        def keep(conn: Conn) -> Task | None:
            written = ops.one_task(conn, stmt)
            if written is not None:
                task_logs.add_in(conn, [noted])
            return written

        return await self._db.write(keep)

    async def record_attempt(self, o: Outcome) -> None:
        """Add an attempt to a task's history without touching the task (a cancelled call)."""
        await self._db.write(ops.execute, attempts.insert(), [ops.attempt_row(o, time.time())])
        self._db.observer.attempts_ended([(o, None)])

    async def sweep(self) -> list[Task]:
        """Requeue tasks whose worker stopped renewing its lease (failing those out of
        attempts) and time out pending tasks past their queue-wait deadline. Works in
        transactions of at most ``SWEEP_BATCH`` lost tasks, as many as there are."""
        changed: list[Task] = []
        while True:
            lost, late, more = await self._db.write(ops.sweep_once, time.time())
            self._db.observer.lost(lost)
            self._db.tell_ended([t for t in lost + late if t.terminal])
            changed += lost + late
            if not more:
                return changed

    async def processing_workers(self) -> set[str]:
        q = sa.select(tasks.c.worker).where(ops.IS_PROCESSING).distinct()
        return {row["worker"] for row in await self._db.read(ops.rows, q)}

    async def expire_leases(self, workers: Iterable[str]) -> None:
        """End the leases of workers known to be dead, so the next sweep requeues their tasks."""
        stmt = (
            tasks.update()
            .where(ops.IS_PROCESSING, tasks.c.worker.in_(list(workers)))
            .values(lease_until=0.0)
        )
        await self._db.write(ops.execute, stmt)
