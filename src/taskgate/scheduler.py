"""The scheduler: per-route lanes, capacity, priorities; claim → run → decide → finish.

One loop dispatches. For every route with free backend slots it claims due tasks from the
store, splitting the free slots between priorities by weight (or strictly), and starts each
claimed task on the least-loaded healthy instance. A route without free slots is simply
skipped, so a saturated backend never holds up another route.

Each running task is an asyncio task that calls the provider under the run timeout, then
writes one conditional outcome: success, a retry later (backoff, maybe on a fallback route),
or a final failure. Beside the dispatcher run a lease renewer (and the detector of tasks
cancelled or lost elsewhere), a sweeper (expired leases, passed deadlines) and a listener for
cancellations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from taskgate import errors, policy
from taskgate.config import Instance, Route, Settings
from taskgate.events import Events
from taskgate.files import Files, file_json
from taskgate.models import Priority, Status, Task
from taskgate.providers import Call, Provider, Result, build
from taskgate.store import Outcome, SqlStore

log = logging.getLogger("taskgate.scheduler")


@dataclass
class Lane:
    """Runtime state of one route: its provider, instances and priority bookkeeping."""

    route: Route
    provider: Provider
    instances: list[policy.InstanceState]
    wrr: policy.SmoothWeightedRoundRobin
    dry: set[Priority] = field(default_factory=set)  # lanes last seen empty

    def free(self, now: float) -> int:
        return policy.free_slots(self.instances, now)

    def instance_config(self, name: str) -> Instance:
        return next(i for i in self.route.instances if i.name == name)


@dataclass
class Running:
    task: Task
    lane: Lane
    instance: policy.InstanceState
    started_at: float
    job: asyncio.Task[None] | None = None
    calling: bool = False  # the provider call is under way: a cancel may stop it
    cancelled: bool = False

    def outcome(self, worker: str, status: Status, label: str, **kw: Any) -> Outcome:
        """The end of this attempt, fenced on the worker and attempt number."""
        return Outcome(
            task_id=self.task.id,
            worker=worker,
            attempt=self.task.attempts,
            status=status,
            label=label,
            instance=self.instance.name,
            route=self.lane.route.name,
            started_at=self.started_at,
            **kw,
        )


def task_event(task: Task, type_: str, **extra: Any) -> dict[str, Any]:
    return {"type": type_, "task_id": task.id, "status": task.status.value, **extra}


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        store: SqlStore,
        events: Events,
        files: Files,
        *,
        routes: list[str] | None = None,
        worker_id: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.events = events
        self.files = files
        host = socket.gethostname()[:40]
        self.worker_id = worker_id or f"{host}:{os.getpid()}:{os.urandom(3).hex()}"
        self.rng = rng or random.Random()
        conf = settings.scheduler
        weights = {p: conf.weight(p) for p in Priority}
        self.lanes: dict[str, Lane] = {}
        for r in settings.routes:
            if routes is None or r.name in routes:
                states = [
                    policy.InstanceState(i.name, i.max_concurrency, i.weight) for i in r.instances
                ]
                self.lanes[r.name] = Lane(
                    r, build(r), states, policy.SmoothWeightedRoundRobin(weights)
                )
        self.running: dict[str, Running] = {}
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await self._reclaim_from_dead_local_workers()
        self._loops = [
            asyncio.create_task(self._dispatch_loop(), name="dispatch"),
            asyncio.create_task(self._lease_loop(), name="leases"),
            asyncio.create_task(self._sweep_loop(), name="sweep"),
            asyncio.create_task(self._listen("queue", self._on_queue), name="queue-listener"),
            asyncio.create_task(self._listen("cancel", self._on_cancel), name="cancel-listener"),
        ]

    async def _reclaim_from_dead_local_workers(self) -> None:
        """Tasks held by a worker process of this host that no longer runs (this server
        before a crash) go back to the queue now, not when their leases run out."""
        host = self.worker_id.split(":", 1)[0]
        dead = [w for w in await self.store.processing_workers() if self._dead_here(w, host)]
        if dead:
            log.warning("requeueing the tasks of dead local workers %s", ", ".join(dead))
            await self.store.expire_leases(dead)

    def _dead_here(self, worker: str, host: str) -> bool:
        worker_host, _, rest = worker.partition(":")
        pid = rest.partition(":")[0]
        if worker_host != host or not pid.isdigit() or worker == self.worker_id:
            return False
        if int(pid) == os.getpid():  # an earlier life of this very process id (a container)
            return True
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, under another user
            return False
        return False

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, let running calls finish for ``grace`` seconds, hand back the rest."""
        self._stopping = True
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        jobs = [r.job for r in self.running.values() if r.job]
        if jobs:
            await asyncio.wait(jobs, timeout=grace)
        for r in list(self.running.values()):
            if r.job and not r.job.done():
                r.job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        for lane in self.lanes.values():
            await lane.provider.aclose()

    def wake(self) -> None:
        self._wake.set()

    # --- dispatching ---------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        interval = self.settings.scheduler.poll_interval
        next_reread = time.monotonic()
        while not self._stopping:
            if time.monotonic() >= next_reread:  # retries fall due; other gateways add work
                next_reread = time.monotonic() + interval
                for lane in self.lanes.values():
                    lane.dry.clear()
            try:
                started = await self.dispatch_once()
            except Exception:
                log.exception("dispatch failed; retrying after the poll interval")
                started = 0
            if started:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()

    async def dispatch_once(self) -> int:
        """Claim and start what free capacity allows, on every route. Returns tasks started."""
        started = 0
        for lane in self.lanes.values():
            free = lane.free(time.time())
            if free <= 0:
                continue
            for task in await self._claim(lane, free):
                self._start(lane, task)
                started += 1
        return started

    async def _claim(self, lane: Lane, slots: int) -> list[Task]:
        conf = self.settings.scheduler
        claimed: list[Task] = []
        while slots > 0:
            live = [p for p in Priority if p not in lane.dry]
            if not live:
                break
            plan = (
                policy.strict_plan(slots, live)
                if conf.strict_priority
                else lane.wrr.plan(slots, live)
            )
            for prio, want in plan.items():
                want = min(want, conf.claim_batch)
                got = await self.store.claim(
                    lane.route.name, prio, want, self.worker_id, conf.lease_seconds
                )
                claimed.extend(got)
                slots -= len(got)
                if len(got) < want:
                    lane.dry.add(prio)
            if len(claimed) >= conf.claim_batch:
                break
        return claimed

    def _start(self, lane: Lane, task: Task) -> None:
        now = time.time()
        avoid = [task.instance] if task.instance else []
        inst = policy.choose_instance(lane.instances, now, avoid)
        if inst is None:  # cannot happen: we claimed no more than the free slots
            inst = lane.instances[0]
        policy.start_call(inst, now)
        run = Running(task, lane, inst, now)
        self.running[task.id] = run
        run.job = asyncio.create_task(self._run(run), name=f"task:{task.id}")

    async def _on_queue(self, message: dict[str, Any]) -> None:
        self._due(message)

    def _due(self, message: dict[str, Any]) -> None:
        """A task became claimable on a lane: look there again."""
        lane = self.lanes.get(message.get("route", ""))
        if lane is not None:
            lane.dry.discard(Priority(message.get("priority", Priority.DEFAULT)))
            self.wake()

    # --- running one task ----------------------------------------------------------------

    async def _run(self, run: Running) -> None:
        task = run.task
        run.calling = True
        await self._publish(task, "started", attempt=task.attempts, instance=run.instance.name)
        result: Result | None = None
        error: errors.ProviderError | None = None
        try:
            result = await self._call(run)
        except errors.ProviderError as exc:
            error = exc
        except asyncio.CancelledError:
            self._release(run, None, cancelled=True)
            await self._interrupted(run)
            return
        finally:
            run.calling = False  # from here on, a cancel request has nothing to stop
        self._release(run, error)
        written = None
        try:
            written = await self.store.finish(await self._settle(run, result, error))
        except Exception:
            log.exception("could not record the outcome of task %s; its lease will expire", task.id)
        finally:
            self._forget(run)
        if written is not None:
            await self._announce(written)

    async def _settle(
        self, run: Running, result: Result | None, error: errors.ProviderError | None
    ) -> Outcome:
        """The attempt's outcome. If its result cannot be kept (a file that fails to save),
        the attempt counts as failed and is retried like any other."""
        try:
            return await self._outcome(run, result, error)
        except OSError as exc:
            if error is not None:
                raise
            log.exception("could not keep the result of task %s", run.task.id)
            lost = errors.BadResponse(f"the result could not be kept: {exc}")
            return await self._outcome(run, None, lost)

    async def _call(self, run: Running) -> Result:
        task, lane = run.task, run.lane
        timeout = task.run_timeout or lane.route.timeout
        call = Call(
            task_id=task.id,
            kind=task.kind,
            model=task.model,
            input=task.input,
            params=task.params,
            attempt=task.attempts,
            instance=lane.instance_config(run.instance.name),
            route=lane.route,
            emit=lambda data: self._publish(task, "progress", data=data),
        )
        try:
            async with asyncio.timeout(timeout):
                result = await lane.provider.run(call)
            orjson.dumps([result.output, result.usage])  # what the store must be able to keep
            return result
        except TimeoutError as exc:
            raise errors.ProviderTimeout(
                f"no answer within the run timeout of {timeout:g}s"
            ) from exc
        except errors.ProviderError:
            raise
        except Exception as exc:  # a plugin's bug (or output that is not JSON): fail, don't retry
            log.exception("provider %s raised on task %s", lane.route.provider, task.id)
            raise errors.PermanentError(f"provider error: {type(exc).__name__}: {exc}") from exc

    def _forget(self, run: Running) -> None:
        """Drop a finished run (not a newer attempt of the same task) and look for work."""
        if self.running.get(run.task.id) is run:
            del self.running[run.task.id]
        self.wake()

    @staticmethod
    def _release(run: Running, error: errors.ProviderError | None, cancelled: bool = False) -> None:
        """Free the slot. Only retryable errors count against the instance's health: an
        instance that rejected bad input answered; a cancelled call says nothing."""
        if cancelled:
            policy.abort_call(run.instance)
            return
        run.instance.in_flight -= 1
        if error is not None and error.retryable:
            policy.record_failure(run.instance, run.lane.route.health, time.time())
        else:
            policy.record_success(run.instance)

    async def _outcome(
        self, run: Running, result: Result | None, error: errors.ProviderError | None
    ) -> Outcome:
        task, route = run.task, run.lane.route
        if error is None:
            assert result is not None
            kept = await self._keep_outputs(task, result)
            return run.outcome(self.worker_id, Status.SUCCESS, "success", result=kept)
        history = await self.store.history(task.id) if error.retryable else []
        decision = policy.decide(
            error,
            attempts=1 + sum(1 for a in history if a.route == route.name),
            max_attempts=route.retry.max_attempts,
            route=route.name,
            fallbacks=route.fallbacks,
            tried_routes=[a.route for a in history],
            policy=route.retry,
            rng=self.rng,
        )
        err = error.as_dict()
        if decision.action is policy.Action.RETRY:
            due = {"route": decision.route or route.name, "priority": int(task.priority)}
            asyncio.get_running_loop().call_later(decision.delay, self._due, due)
            return run.outcome(
                self.worker_id,
                Status.PENDING,
                "failover" if decision.route else "retry",
                error=err,
                run_after=time.time() + decision.delay,
                next_route=decision.route,
            )
        assert decision.status is not None
        label = decision.status.value.lower()
        return run.outcome(self.worker_id, decision.status, label, error=err)

    async def _keep_outputs(self, task: Task, result: Result) -> dict[str, Any]:
        """The result as stored: files the provider returned are saved and listed by id."""
        out = result.as_dict()
        if result.files:
            saved = [
                await self.files.save(task.tenant, f.data, f.content_type, f.name, task.id)
                for f in result.files
            ]
            out["files"] = [file_json(f) for f in saved]
        return out

    async def _interrupted(self, run: Running) -> None:
        """The call was cancelled: by the client (the task is already CANCELLED in the store),
        because the lease was lost, or because this worker is stopping (hand the task back)."""
        self._forget(run)
        label = "cancelled" if run.cancelled else "interrupted"
        base = run.outcome(self.worker_id, Status.PENDING, label, run_after=time.time())
        with contextlib.suppress(Exception):
            if run.cancelled:
                await self.store.record_attempt(base)
            elif (written := await self.store.finish(base)) is not None:
                await self._announce(written)

    # --- events --------------------------------------------------------------------------

    async def _publish(self, task: Task, type_: str, **extra: Any) -> None:
        await self.events.publish(f"task:{task.id}", task_event(task, type_, **extra))

    async def _announce(self, task: Task) -> None:
        """Tell waiters about a task's new state; put retried tasks back on the queue."""
        if task.status is Status.PENDING:
            await self._publish(task, "retrying", run_after=task.run_after, route=task.route)
            await self.events.publish(
                "queue", {"route": task.route, "priority": int(task.priority)}
            )
        else:
            await self._publish(task, "finished")

    async def _listen(self, topic: str, handler: Any) -> None:
        async with self.events.subscribe(topic) as sub:
            while True:
                message = await sub.get()
                if message is None:
                    continue
                try:
                    await handler(message)
                except Exception:
                    log.exception("handling %s message %r failed", topic, message)

    async def _on_cancel(self, message: dict[str, Any]) -> None:
        run = self.running.get(message.get("task_id", ""))
        if run is not None and run.job is not None and run.calling:
            run.cancelled = True
            run.job.cancel()

    # --- leases and sweeping -------------------------------------------------------------

    async def _lease_loop(self) -> None:
        lease = self.settings.scheduler.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            try:
                await self.renew_leases()
            except Exception:
                log.exception("lease renewal failed")

    async def renew_leases(self) -> None:
        """Renew what we hold; stop calls for tasks that were cancelled or taken elsewhere."""
        ids = list(self.running)
        held: set[str] = set()
        for i in range(0, len(ids), 1000):
            held |= await self.store.renew(
                ids[i : i + 1000], self.worker_id, self.settings.scheduler.lease_seconds
            )
        for task_id in set(ids) - held:
            await self._on_cancel({"task_id": task_id})

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep failed")
            await asyncio.sleep(self.settings.scheduler.poll_interval)

    async def sweep(self) -> list[Task]:
        changed = await self.store.sweep()
        for task in changed:
            await self._announce(task)
        if changed:
            self.wake()
        return changed
