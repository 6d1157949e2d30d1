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
import base64
import contextlib
import dataclasses
import functools
import logging
import os
import random
import socket
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskgate import errors, policy, polling
from taskgate.config import Instance, RetryPolicy, Route, Settings
from taskgate.events import Events
from taskgate.events.topics import announce_cancelled, task_event
from taskgate.files import Files, file_json
from taskgate.models import Priority, Status, Task
from taskgate.providers import Call, Job, OutputFile, Provider, Result, build, redact
from taskgate.store import Outcome, SqlStore
from taskgate.webhooks import Deliverer

log = logging.getLogger("taskgate.scheduler")

INLINE_MAX = 8 << 20  # return_base64 inlines files up to this size; larger ones: by url
# writing an attempt's ending again while the store fails: after 0.1 s, doubling up to 2 s
ENDING_RETRY = RetryPolicy(backoff_base=0.1, backoff_max=2.0, jitter=0.5)


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

    @functools.cached_property
    def limits(self) -> dict[str, tuple[int | None, int | None]]:
        """Requests and tokens per minute of the instances that have rate limits."""
        return {
            i.name: (i.requests_per_minute, i.tokens_per_minute)
            for i in self.route.instances
            if i.rate_limited
        }

    def instance_config(self, name: str) -> Instance:
        return next(i for i in self.route.instances if i.name == name)


@dataclass
class Running:
    task: Task
    lane: Lane
    instance: policy.InstanceState
    started_at: float
    handle: asyncio.Task[None] | None = None
    call: Call | None = None
    calling: bool = False  # the provider call is under way: a cancel may stop it
    cancelled: bool = False
    holds_slot: bool = True  # False once a backend job is submitted (or when resuming one)
    provider_job: dict[str, Any] | None = None  # the backend's job, kept on the task
    timed_out: bool = False  # the run timeout (not a backend's own timeout) ended the call
    held_until: float = field(init=False)  # the lease, as claimed or last renewed

    def __post_init__(self) -> None:
        self.held_until = self.task.lease_until or 0.0

    @property
    def polling(self) -> bool:
        return self.provider_job is not None and not self.holds_slot

    def outcome(self, worker: str, status: Status, label: str, **kw: Any) -> Outcome:
        """The end of this attempt, fenced on the worker and attempt number."""
        kw.setdefault("provider_job", self.provider_job)
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


async def ended(call: Call, result: Result) -> Result:
    """The result of a call that has ended, as the store keeps it: JSON (else TypeError),
    without the call's secret (a backend may echo the key it was sent); and the progress
    text that the call's emit held back (a possible start of the secret) sent."""
    if isinstance(call.emit, redact.Progress):
        await call.emit.flush()
    return redact.scrub_result(result, call)


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
        self._late: set[asyncio.Task[None]] = set()  # collecting results after a timeout
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._keepers: list[asyncio.Task[None]] = []
        self._stopping = False

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await self._reclaim_from_dead_local_workers()
        self._webhooks = Deliverer(self.settings.webhooks, self.store, self.rng)
        self._loops = [
            asyncio.create_task(self._dispatch_loop(), name="dispatch"),
            asyncio.create_task(self._sweep_loop(), name="sweep"),
            asyncio.create_task(self._listen("queue", self._on_queue), name="queue-listener"),
            # webhooks of ended tasks, sent from the worker process (stops with the loops)
            asyncio.create_task(self._webhooks.run(), name="webhooks"),
        ]
        # what keeps running tasks ours and cancellable: runs on through stop()'s grace
        self._keepers = [
            asyncio.create_task(self._lease_loop(), name="leases"),
            asyncio.create_task(self._listen("cancel", self._on_cancel), name="cancel-listener"),
        ]

    async def _reclaim_from_dead_local_workers(self) -> None:
        """Tasks held by a worker process of this host that no longer runs (this server
        before a crash) go back to the queue now, not when their leases run out."""
        host = self.worker_id.split(":", 1)[0]
        dead = [w for w in await self.store.claims.processing_workers() if self._dead_here(w, host)]
        if dead:
            log.warning("requeueing the tasks of dead local workers %s", ", ".join(dead))
            await self.store.claims.expire_leases(dead)

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
        for loop in [*self._loops, *self._late]:
            loop.cancel()
        await asyncio.gather(*self._loops, *self._late, return_exceptions=True)
        for r in self.running.values():  # a job that only waits on the backend: hand back now
            if r.polling and r.calling and r.handle:
                r.handle.cancel()
        handles = [r.handle for r in self.running.values() if r.handle]
        if handles:
            await asyncio.wait(handles, timeout=grace)
        for r in list(self.running.values()):
            if r.handle and not r.handle.done():
                r.handle.cancel()
        await asyncio.gather(*handles, return_exceptions=True)
        for keeper in self._keepers:
            keeper.cancel()
        await asyncio.gather(*self._keepers, return_exceptions=True)
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
            for task in await self._claim(lane):
                self._start(lane, task)
                started += 1
        return started

    async def _claim(self, lane: Lane) -> list[Task]:
        """Claim what the route's free slots allow; when a priority runs dry, share what it
        left among the others at once."""
        claimed: list[Task] = []
        while len(claimed) < self.settings.scheduler.claim_batch:
            live = [p for p in Priority if p not in lane.dry]
            if not live:
                break
            try:
                got, short = await self._claim_once(lane, live, len(claimed))
            except Exception:
                if not claimed:
                    raise
                log.exception("a further claim on route %s failed", lane.route.name)
                break  # start what the earlier claims took
            claimed += got
            if not short:
                break
        return claimed

    async def _claim_once(
        self, lane: Lane, live: list[Priority], taken: int
    ) -> tuple[list[Task], bool]:
        """One claim: the store counts every worker's calls on the route inside it (so
        capacity holds across workers) and each task's instance is picked there too.
        Returns the tasks and whether a priority came up short (and is now dry)."""
        conf = self.settings.scheduler
        wants: dict[Priority, int] = {}
        # the lane's states as the plan saw them, with the other workers' calls and the rate
        # limits counted in (the lane's own states only ever hold this worker's calls)
        planned: list[policy.InstanceState] = []

        def plan(busy: Mapping[str, int], allowed: Mapping[str, int | None]) -> dict[Priority, int]:
            planned.extend(
                dataclasses.replace(
                    i,
                    elsewhere=max(0, busy.get(i.name, 0) - i.in_flight),
                    allowed=allowed.get(i.name),
                )
                for i in lane.instances
            )
            slots = min(policy.free_slots(planned, time.time()), conf.claim_batch - taken)
            split = policy.strict_plan if conf.strict_priority else lane.wrr.plan
            wants.update(split(slots, live) if slots > 0 else {})
            return wants

        def assign(claimed: Sequence[Task]) -> list[str | None]:
            # from the planned states: one that changed meanwhile (a call failing, on another
            # coroutine, while the database answered) must not leave a claimed task without
            avoids = [None if t.provider_job else [t.instance or ""] for t in claimed]
            return policy.assign_instances(planned, time.time(), avoids)

        got = await self.store.claims.claim(
            lane.route.name, plan, assign, self.worker_id, conf.lease_seconds, lane.limits
        )
        short = False
        for prio, want in wants.items():
            if sum(1 for t in got if t.priority == prio) < want:
                lane.dry.add(prio)
                short = True
        return got, short

    def _start(self, lane: Lane, task: Task) -> None:
        now = time.time()
        job = task.provider_job
        if job is not None:  # resume polling the backend's job, on the instance that has it
            inst = next((i for i in lane.instances if i.name == job.get("instance")), None)
            run = Running(task, lane, inst or lane.instances[0], now, holds_slot=False)
            run.provider_job = job  # _call refuses it if that instance is gone
        else:  # the claim picked the instance
            inst = next((i for i in lane.instances if i.name == task.instance), lane.instances[0])
            policy.start_call(inst, now)
            run = Running(task, lane, inst, now)
        self.running[task.id] = run
        run.handle = asyncio.create_task(self._run(run), name=f"task:{task.id}")

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
            if run.holds_slot:
                self._release(run, None, cancelled=True)
            await self._interrupted(run)
            return
        finally:
            run.calling = False  # from here on, a cancel request has nothing to stop
        if run.holds_slot:
            self._release(run, error)
        written = None
        try:
            written = await self._write_ending(run, lambda: self._settle(run, result, error))
        except Exception:
            log.exception("could not record the outcome of task %s; its lease will expire", task.id)
        finally:
            self._forget(run)
        if written is not None:
            await self._announce(written)

    async def _write_ending(
        self, run: Running, settle: Callable[[], Awaitable[Outcome]]
    ) -> Task | None:
        """Settle the attempt's ending (which may read the store, and store output files)
        and write it. While the store cannot be reached (``Unavailable``: a database
        restarting), settle or write the same ending again, with backoff, so that a result
        already paid for is kept. The run stays in ``running`` meanwhile, so the lease loop
        keeps renewing its lease. Once that lease may have lapsed (the renewals failed too),
        another worker may take the task over (and would fence this write out): then the
        last error is raised. A write that keeps failing while the lease is renewed will not
        succeed either: it is given up after a lease's length."""
        give_up_at = time.time() + self.settings.scheduler.lease_seconds
        tries = 0
        outcome: Outcome | None = None
        while True:
            try:
                outcome = outcome or await settle()
                return await self.store.claims.finish(outcome)
            except errors.Unavailable as exc:
                left = min(give_up_at, run.held_until) - time.time()
                if left <= 0:
                    raise
                tries += 1
                delay = min(policy.backoff(tries, ENDING_RETRY, self.rng), left)
                log.warning(
                    "could not record the outcome of task %s (%s); trying again in %.1fs",
                    run.task.id,
                    exc,
                    delay,
                )
            await asyncio.sleep(delay)

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

    def _make_call(self, run: Running) -> Call:
        task = run.task
        instance = run.lane.instance_config(run.instance.name)
        return Call(
            task_id=task.id,
            kind=task.kind,
            model=task.model,
            input=task.input,
            params=task.params,
            attempt=task.attempts,
            instance=instance,
            route=run.lane.route,
            # progress without the secret, however a stream splits it
            emit=redact.Progress(instance, lambda data: self._publish(task, "progress", data=data)),
            read_file=lambda file_id: self._read_file(task.tenant, file_id),
        )

    async def _read_file(self, tenant: str, file_id: str) -> OutputFile:
        """An input file of the task's tenant. One that is not there fails the task; one that
        cannot be read now (the store or the file storage down) fails only the attempt."""
        try:
            f, data = await self.files.open(file_id, tenant)
        except errors.NotFound as exc:
            raise errors.InvalidInput(f"input file {file_id!r} not found") from exc
        except (errors.Unavailable, OSError) as exc:
            raise errors.ConnectionFailed(f"input file {file_id!r} cannot be read now") from exc
        return OutputFile(data, f.content_type, f.name)

    async def _call(self, run: Running) -> Result:
        """Run the provider under the run timeout. A backend that answers with a job is
        polled until the job ends, under the same timeout counted from its submission."""
        task, lane = run.task, run.lane
        timeout = task.run_timeout or lane.route.timeout
        run.call = call = self._make_call(run)
        try:
            if run.provider_job is None:
                async with asyncio.timeout(timeout):
                    out = await lane.provider.run(call)
                if isinstance(out, Result):
                    return await ended(call, out)
                await self._submitted(run, redact.scrub_job(out, call))
            assert run.provider_job is not None
            if run.provider_job.get("instance") != run.instance.name:
                name = run.provider_job.get("instance")
                gone = f"instance {name!r} that runs this job is no longer configured"
                raise errors.job_ended(errors.PermanentError(gone))
            left = run.provider_job["submitted_at"] + timeout - time.time()
            async with asyncio.timeout(max(0.0, left)):
                result = await polling.poll_until_done(
                    lane.provider, call, polling.job_of(run.provider_job), lane.route.poll, self.rng
                )
            return await ended(call, result)
        except TimeoutError as exc:
            run.timed_out = True
            raise errors.ProviderTimeout(
                f"no answer within the run timeout of {timeout:g}s"
            ) from exc
        except errors.ProviderError as exc:  # a plugin's error may quote the secret, too
            redact.scrub_error(exc, call)
            raise
        except Exception as exc:  # a plugin's bug (or output that is not JSON): fail, don't retry
            trace = redact.scrub("".join(traceback.format_exception(exc)), call)
            log.error("provider %s raised on task %s:\n%s", lane.route.provider, task.id, trace)
            text = redact.scrub(f"provider error: {type(exc).__name__}: {exc}", call)
            raise errors.PermanentError(text) from exc

    async def _submitted(self, run: Running, job: Job) -> None:
        """The backend took a job: keep it on the task, then free the slot while it runs."""
        run.provider_job = polling.job_record(
            job, run.lane.route.name, run.instance.name, time.time()
        )
        try:
            kept = await self.store.claims.set_provider_job(
                run.task.id, self.worker_id, run.task.attempts, run.provider_job
            )
        except Exception:  # the job runs anyway: poll it; the ending records it on the task
            log.exception("could not keep job %s on task %s", job.id, run.task.id)
            kept = True
        run.holds_slot = False
        self._release(run, None)
        self.wake()  # the slot is free for another task
        if not kept:  # cancelled (or taken over) meanwhile: the job is not wanted
            run.cancelled = True
            raise asyncio.CancelledError
        await self._publish(run.task, "progress", data={"provider_job": job.id})

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
            limit = run.lane.limits.get(run.instance.name)
            tokens = policy.tokens_used(result.usage) if limit and limit[1] else 0
            return run.outcome(
                self.worker_id, Status.SUCCESS, "success", result=kept, tokens=tokens
            )
        if run.provider_job is not None and run.timed_out:
            return self._job_timed_out(run, error)
        history = await self.store.tasks.history(task.id) if error.retryable else []
        decision = policy.decide(
            error,
            attempts=1 + sum(1 for a in history if a.route == route.name and not a.handoff),
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
                provider_job=self._job_after_retry(run, error, decision.route),
            )
        assert decision.status is not None
        label = decision.status.value.lower()
        return run.outcome(self.worker_id, decision.status, label, error=err)

    def _job_after_retry(
        self, run: Running, error: errors.ProviderError, failover: str | None
    ) -> dict[str, Any] | None:
        """The backend job the retry resumes: the same one if it may still finish (only
        polling failed), none if it ended; a job left behind by a failover is cancelled."""
        job = run.provider_job
        if job is None or error.job_ended:
            return None
        if failover is None:
            return job
        self._in_background(self._cancel_job(run, job))
        return None

    async def _cancel_job(self, run: Running, job: dict[str, Any]) -> None:
        if run.call is not None:
            await polling.cancel_quietly(run.lane.provider, run.call, polling.job_of(job))

    def _in_background(self, coro: Any) -> None:
        """Run a coroutine past this attempt; stop() cancels what is left of it."""
        task = asyncio.create_task(coro)
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    async def _keep_outputs(self, task: Task, result: Result) -> dict[str, Any]:
        """The result as stored: files the provider returned are saved and listed by id
        (with their bytes inline as base64 too when the task's ``return_base64`` asks)."""
        out = result.as_dict()
        if result.files:
            inline = bool(task.params.get("return_base64"))
            out["files"] = []
            try:
                for f in result.files:
                    saved = await self.files.save(
                        task.tenant, f.data, f.content_type, f.name, task.id
                    )
                    entry = file_json(saved)
                    if inline and len(f.data) <= INLINE_MAX:
                        entry["b64_json"] = base64.b64encode(f.data).decode()
                    out["files"].append(entry)
            except BaseException:  # all or none: a try again saves them all again
                with contextlib.suppress(Exception):
                    await self.files.discard([entry["id"] for entry in out["files"]])
                raise
        return out

    def _job_timed_out(self, run: Running, error: errors.ProviderError) -> Outcome:
        """The backend's job outlived the run timeout: the task ends as TIMEOUT (a new job
        would cost again), and the job's result is still collected if it comes."""
        assert run.provider_job is not None and run.call is not None
        job = polling.job_of(run.provider_job)
        conf = run.lane.route.poll
        err = {**error.as_dict(), "provider_job": job.id}
        if conf.late_results_for > 0:
            err["message"] += f"; a result that comes within {conf.late_results_for:g}s is kept"
            self._in_background(self._collect_late(run.task, run.lane, run.call, job))
        else:  # nobody will collect it: stop paying for it
            self._in_background(self._cancel_job(run, run.provider_job))
        return run.outcome(self.worker_id, Status.TIMEOUT, "timeout", error=err)

    async def _collect_late(self, task: Task, lane: Lane, call: Call, job: Job) -> None:
        result = await polling.collect_late(lane.provider, call, job, lane.route.poll, self.rng)
        if result is None:
            return
        try:
            written = await self.store.claims.record_late_result(
                task.id, await self._keep_outputs(task, redact.scrub_result(result, call))
            )
        except Exception:
            log.exception("could not keep the late result of task %s", task.id)
            return
        if written is not None:
            log.info("kept the late result of job %s of task %s", job.id, task.id)
            await self._publish(written, "late_result")

    async def _interrupted(self, run: Running) -> None:
        """The call was cancelled: by the client (the task is already CANCELLED in the store),
        because the lease was lost, or because this worker is stopping (hand the task back,
        keeping a backend job to resume)."""
        self._forget(run)
        if run.cancelled and run.provider_job is not None and run.call is not None:
            await polling.cancel_quietly(
                run.lane.provider, run.call, polling.job_of(run.provider_job)
            )
        label = "cancelled" if run.cancelled else "interrupted"
        base = run.outcome(self.worker_id, Status.PENDING, label, run_after=time.time())
        with contextlib.suppress(Exception):
            if run.cancelled:
                await self.store.claims.record_attempt(base)
            elif (written := await self.store.claims.finish(base)) is not None:
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
        else:  # in-process waiters take the ended task from the event: no read of the store
            await self._publish(task, "finished", ended=task)
            if task.status is Status.SUCCESS and task.batch_id is not None:
                await self._first_wins(task)

    async def _first_wins(self, task: Task) -> None:
        """The first success of a first-wins batch cancels the rest of it."""
        if task.batch_id is not None:
            cancelled = await self.store.batches.cancel(task.batch_id, winner=task.id)
            await announce_cancelled(self.events, cancelled)

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
        if run is not None and run.handle is not None and run.calling:
            run.cancelled = True
            run.handle.cancel()
        elif run is None and message.get("provider_job") and not message.get("worker"):
            await self._cancel_waiting_job(message)

    async def _cancel_waiting_job(self, message: dict[str, Any]) -> None:
        """A task cancelled while queued to resume its backend job: cancel that job too."""
        record = message["provider_job"]
        lane = self.lanes.get(record.get("route", ""))
        name = record.get("instance")
        if lane is None or not any(i.name == name for i in lane.route.instances):
            return
        call = Call(
            task_id=message["task_id"],
            kind=message.get("kind", ""),
            model=message.get("model", ""),
            input=None,
            params={},
            attempt=0,
            instance=lane.instance_config(name),
            route=lane.route,
        )
        await polling.cancel_quietly(lane.provider, call, polling.job_of(record))

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
        """Renew what we hold; stop calls for tasks that were cancelled or taken elsewhere.
        A renewal that fails (the store is down) changes nothing here: the runs go on, and
        one that only waits to write its ending knows its lease from ``held_until``."""
        lease = self.settings.scheduler.lease_seconds
        ids = list(self.running)
        held: set[str] = set()
        for i in range(0, len(ids), 1000):
            asked_at = time.time()
            renewed = await self.store.claims.renew(ids[i : i + 1000], self.worker_id, lease)
            for task_id in renewed:
                if (run := self.running.get(task_id)) is not None:
                    run.held_until = asked_at + lease
            held |= renewed
        for task_id in set(ids) - held:
            await self._let_go(task_id)

    async def _let_go(self, task_id: str) -> None:
        """A task we no longer hold: cancelled (stop the call and the backend's job), or
        taken over after our lease lapsed (stop the call; the new holder owns the job)."""
        task = await self.store.tasks.get(task_id)
        if task is not None and task.status is Status.CANCELLED:
            await self._on_cancel({"task_id": task_id})
        elif (run := self.running.get(task_id)) is not None and run.handle and run.calling:
            run.handle.cancel()

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep failed")
            await asyncio.sleep(self.settings.scheduler.poll_interval)

    async def sweep(self) -> list[Task]:
        changed = await self.store.claims.sweep()
        for task in changed:
            await self._announce(task)
        if changed:
            self.wake()
        return changed
