"""One attempt of a task, from its start on an instance to its ending: the provider call
under the run timeout (a backend job is handed to :mod:`~taskgate.scheduling.jobs`), the
instance's slot and health, a cancel that stops the call, and the hand-back of a call this
worker cannot finish. :class:`Attempts` owns the attempts this worker holds (``running``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from taskgate import errors, policy
from taskgate.files import Files
from taskgate.models import Status, Task
from taskgate.ops.tracing import Tracing
from taskgate.providers import Call, Job, OutputFile, Result, redact
from taskgate.providers.base import no_fetch
from taskgate.scheduling.announce import Announcer
from taskgate.scheduling.jobs import BackendJobs
from taskgate.scheduling.outcome import Endings
from taskgate.scheduling.outputs import ended
from taskgate.scheduling.state import Lane, Running
from taskgate.store import SqlStore, task_logs

log = logging.getLogger("taskgate.scheduler")

Fetch = Callable[[str, str], Awaitable[OutputFile]]  # a client's media URL, what it is


class Attempts:
    def __init__(
        self,
        store: SqlStore,
        files: Files,
        announcer: Announcer,
        jobs: BackendJobs,
        endings: Endings,
        worker_id: str,
        freed: Callable[[str], None],
        keep_traces: bool = False,
        tracing: Tracing | None = None,
        fetch_url: Fetch = no_fetch,
    ) -> None:
        self.store = store
        self.files = files
        self.announcer = announcer
        self.jobs = jobs
        self.endings = endings
        self.worker_id = worker_id
        self.freed = freed  # a slot of a route came free: look for work there
        self.keep_traces = keep_traces  # an unexpected error's traceback joins the task's log
        self.tracing = tracing  # None: tracing is off
        self.fetch_url = fetch_url  # clients' media URLs (providers/fetch.py)
        self.running: dict[str, Running] = {}

    def start(self, lane: Lane, task: Task) -> None:
        """Start a claimed task on the instance the claim picked (or, for a backend job
        it resumes, the instance that runs that job)."""
        now = time.time()
        job = task.provider_job
        if job is not None:  # resume polling the backend's job, on the instance that has it
            inst = next((i for i in lane.instances if i.name == job.get("instance")), None)
            run = Running(task, lane, inst or lane.instances[0], now, holds_slot=False)
            run.provider_job = job  # jobs.poll refuses it if that instance is gone
        else:
            inst = next((i for i in lane.instances if i.name == task.instance), lane.instances[0])
            policy.start_call(inst, now)
            run = Running(task, lane, inst, now)
        self.running[task.id] = run
        run.handle = asyncio.create_task(self._run(run), name=f"task:{task.id}")

    async def _run(self, run: Running) -> None:
        if self.tracing is None:
            return await self._attempt(run)
        # a span, in the trace of the request that submitted the task
        with self.tracing.attempt(run.task, run.lane.route.name, run.instance.name) as ended:
            try:
                await self._attempt(run)
            finally:
                ended(run.ended)

    async def _attempt(self, run: Running) -> None:
        task = run.task
        run.calling = True
        result: Result | None = None
        error: errors.ProviderError | None = None
        try:  # (a cancel while "started" is published is a cancel of the call, too)
            await self.announcer.publish(
                task, "started", attempt=task.attempts, instance=run.instance.name
            )
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
            written = await self.endings.write(run, result, error)
        except Exception as exc:
            log.exception("could not record the outcome of task %s; its lease will expire", task.id)
            await self._keep_trace(run, traceback.format_exception(exc))
        finally:
            self._forget(run)
        if written is not None:
            await self.announcer.announce(written)

    async def _call(self, run: Running) -> Result:
        """Run the provider under the run timeout. A backend that answers with a job is
        polled until the job ends, under the same timeout counted from its submission."""
        task, lane = run.task, run.lane
        timeout = task.run_timeout or lane.route.timeout
        run.call = call = self._make_call(run)
        try:
            if run.provider_job is None:
                async with asyncio.timeout(timeout):
                    out = await run.provider.run(call)
                if isinstance(out, Result):
                    return await ended(call, out)
                await self._submitted(run, redact.scrub_job(out, call))
            return await self.jobs.poll(run, call, timeout)
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
            await self._keep_trace(run, [trace])
            text = redact.scrub(f"provider error: {type(exc).__name__}: {exc}", call)
            raise errors.PermanentError(text) from exc

    async def _keep_trace(self, run: Running, lines: list[str]) -> None:
        """With ``log_errors_to_store``, keep an unexpected error's traceback (scrubbed of
        the instance's secret) in the task's log."""
        if not self.keep_traces:
            return
        trace = "".join(lines)
        if run.call is not None:
            trace = redact.scrub(trace, run.call)
        noted = task_logs.entry(
            run.task.id,
            "error",
            attempt=run.task.attempts,
            instance=run.instance.name,
            message=trace,
        )
        with contextlib.suppress(Exception):
            await self.store.task_logs.add(noted)

    def _make_call(self, run: Running) -> Call:
        task, instance = run.task, run.config
        return Call(
            task_id=task.id,
            kind=task.kind,
            model=task.model,
            input=task.input,
            params=task.params,
            attempt=task.attempts,
            instance=instance,
            route=run.route,
            # progress without the secret, however a stream splits it
            emit=redact.Progress(
                instance, lambda data: self.announcer.publish(task, "progress", data=data)
            ),
            read_file=lambda file_id: self.read_file(task.tenant, file_id),
            fetch_url=self.fetch_url,
        )

    async def read_file(self, tenant: str, file_id: str) -> OutputFile:
        """An input file of the task's tenant. One that is not there fails the task; one that
        cannot be read now (the store or the file storage down) fails only the attempt."""
        try:
            f, data = await self.files.open(file_id, tenant)
        except errors.NotFound as exc:
            raise errors.InvalidInput(f"input file {file_id!r} not found") from exc
        except (errors.Unavailable, OSError) as exc:
            raise errors.ConnectionFailed(f"input file {file_id!r} cannot be read now") from exc
        return OutputFile(data, f.content_type, f.name)

    async def _submitted(self, run: Running, job: Job) -> None:
        """The backend took a job: keep it on the task, then free the slot while it runs."""
        kept = await self.jobs.keep(run, job)
        run.holds_slot = False
        self._release(run, None)
        self.freed(run.lane.route.name)  # the slot is free for another task
        if not kept:  # cancelled (or taken over) meanwhile: the job is not wanted
            run.cancelled = True
            raise asyncio.CancelledError
        await self.announcer.publish(run.task, "progress", data={"provider_job": job.id})

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

    def _forget(self, run: Running) -> None:
        """Drop a finished run (not a newer attempt of the same task) and look for work."""
        if self.running.get(run.task.id) is run:
            del self.running[run.task.id]
        self.freed(run.lane.route.name)

    async def _interrupted(self, run: Running) -> None:
        """The call was cancelled: by the client (the task is already CANCELLED in the store),
        because the lease was lost, because its instance left (``stopped``: hand the task
        back to run elsewhere, without the backend job that instance held) or because this
        worker is stopping (hand the task back, keeping a backend job to resume). The run
        stays in ``running`` until this is written, so that a stopping worker waits for it
        before the store closes."""
        try:
            if run.cancelled and run.provider_job is not None:
                await self.jobs.cancel(run, run.provider_job)
            label = "cancelled" if run.cancelled else "interrupted"
            left = {"error": run.stopped, "provider_job": None} if run.stopped else {}
            base = run.outcome(self.worker_id, Status.PENDING, label, run_after=time.time(), **left)
            with contextlib.suppress(Exception):
                if run.cancelled:
                    await self.store.claims.record_attempt(base)
                elif (written := await self.store.claims.finish(base)) is not None:
                    await self.announcer.announce(written)
        finally:
            self._forget(run)

    async def cancel(self, message: dict[str, Any]) -> None:
        """A task was cancelled: stop its call here, or the backend job it waits to resume."""
        run = self.running.get(message.get("task_id", ""))
        if run is not None and run.handle is not None and run.calling:
            run.cancelled = True
            run.handle.cancel()
        elif run is None and message.get("provider_job") and not message.get("worker"):
            await self.jobs.cancel_waiting(message)

    def instance_left(self, route: str, instance: str, why: dict[str, Any]) -> int:
        """Stop the calls on an instance that left (its heartbeats stopped): each task goes
        back to the queue, its attempt ending with ``why``. Returns the calls stopped."""
        stopped = 0
        for run in self.running.values():
            here = run.lane.route.name == route and run.instance.name == instance
            if here and run.calling and run.handle is not None and not run.cancelled:
                run.stopped = why
                run.handle.cancel()
                stopped += 1
        return stopped

    def stop_calling(self, task_id: str) -> None:
        """Stop the call of a task this worker no longer holds (its lease was taken over)."""
        if (run := self.running.get(task_id)) is not None and run.handle and run.calling:
            run.handle.cancel()

    async def stop(self, grace: float) -> None:
        """Let running calls finish for ``grace`` seconds, then hand back the rest."""
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
