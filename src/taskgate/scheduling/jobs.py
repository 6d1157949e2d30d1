"""Backend jobs: work a backend runs on its side (a video) that the scheduler keeps on the
task, polls until it ends, cancels when its task is cancelled or moved elsewhere, and whose
late result (one that comes after the run timeout) it still collects."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Coroutine
from typing import Any

from taskgate import errors, polling
from taskgate.files import Files
from taskgate.models import Status, Task
from taskgate.providers import Call, Job, Result, redact
from taskgate.scheduling.announce import Announcer
from taskgate.scheduling.outputs import ended, keep_outputs
from taskgate.scheduling.state import Lane, Running
from taskgate.store import Outcome, SqlStore

log = logging.getLogger("taskgate.scheduler")


class BackendJobs:
    def __init__(
        self,
        store: SqlStore,
        files: Files,
        announcer: Announcer,
        lanes: dict[str, Lane],
        worker_id: str,
        rng: random.Random,
    ) -> None:
        self.store = store
        self.files = files
        self.announcer = announcer
        self.lanes = lanes
        self.worker_id = worker_id
        self.rng = rng
        self._late: set[asyncio.Task[None]] = set()  # collecting results, cancelling jobs

    async def keep(self, run: Running, job: Job) -> bool:
        """Keep the job the backend took on the task. False: the attempt no longer holds
        the task (cancelled or taken over meanwhile), so the job is not wanted."""
        run.provider_job = polling.job_record(
            job, run.lane.route.name, run.instance.name, time.time()
        )
        try:
            return await self.store.claims.set_provider_job(
                run.task, self.worker_id, run.provider_job
            )
        except Exception:  # the job runs anyway: poll it; the ending records it on the task
            log.exception("could not keep job %s on task %s", job.id, run.task.id)
            return True

    async def poll(self, run: Running, call: Call, timeout: float) -> Result:
        """Poll the run's job until it ends, within ``timeout`` counted from its submission
        (asyncio's TimeoutError when that passes)."""
        assert run.provider_job is not None
        if run.provider_job.get("instance") != run.instance.name:
            name = run.provider_job.get("instance")
            gone = f"instance {name!r} that runs this job is no longer configured"
            raise errors.job_ended(errors.PermanentError(gone))
        lane = run.lane
        left = run.provider_job["submitted_at"] + timeout - time.time()
        try:
            async with asyncio.timeout(max(0.0, left)):
                result = await polling.poll_until_done(
                    run.provider,
                    call,
                    polling.job_of(run.provider_job),
                    lane.route.poll,
                    self.rng,
                    polled=run.count_poll,
                )
        except errors.ProviderError as exc:
            await self._noted(run, redact.scrub(str(exc), call))
            raise
        except TimeoutError:
            await self._noted(run, "the run timeout passed")
            raise
        # (a cancel notes nothing: the task was cancelled, or is handed back to be resumed)
        await self._noted(run, None)
        return await ended(call, result)

    async def _noted(self, run: Running, error: str | None) -> None:
        """The job's entry in its task's timeline (a store that is down loses only that)."""
        try:
            await self.store.task_logs.job_finished(run.task, run.instance.name, run.polls, error)
        except Exception:
            log.warning("could not note the end of task %s's backend job", run.task.id)

    def after_retry(
        self, run: Running, error: errors.ProviderError, failover: str | None
    ) -> dict[str, Any] | None:
        """The backend job the retry resumes: the same one if it may still finish (only
        polling failed), none if it ended; a job left behind by a failover is cancelled."""
        job = run.provider_job
        if job is None or error.job_ended:
            return None
        if failover is None:
            return job
        self._in_background(self.cancel(run, job))
        return None

    async def cancel(self, run: Running, job: dict[str, Any]) -> None:
        """Cancel the run's job at the backend (quietly: it may have ended already)."""
        if run.call is not None:
            await polling.cancel_quietly(run.provider, run.call, polling.job_of(job))

    def timed_out(self, run: Running, error: errors.ProviderError) -> Outcome:
        """The backend's job outlived the run timeout: the task ends as TIMEOUT (a new job
        would cost again), and the job's result is still collected if it comes."""
        assert run.provider_job is not None and run.call is not None
        job = polling.job_of(run.provider_job)
        conf = run.lane.route.poll
        err = {**error.as_dict(), "provider_job": job.id}
        if conf.late_results_for > 0:
            err["message"] += f"; a result that comes within {conf.late_results_for:g}s is kept"
            self._in_background(self._collect_late(run.task, run, run.call, job))
        else:  # nobody will collect it: stop paying for it
            self._in_background(self.cancel(run, run.provider_job))
        return run.outcome(self.worker_id, Status.TIMEOUT, "timeout", error=err)

    async def _collect_late(self, task: Task, run: Running, call: Call, job: Job) -> None:
        conf = run.lane.route.poll
        result = await polling.collect_late(run.provider, call, job, conf, self.rng)
        if result is None:
            return
        try:
            kept = await keep_outputs(self.files, task, redact.scrub_result(result, call))
            written = await self.store.claims.record_late_result(task.id, kept)
        except Exception:
            log.exception("could not keep the late result of task %s", task.id)
            return
        if written is not None:
            log.info("kept the late result of job %s of task %s", job.id, task.id)
            await self.announcer.publish(written, "late_result")

    async def cancel_waiting(self, message: dict[str, Any]) -> None:
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

    def background(self) -> list[asyncio.Task[None]]:
        """What runs past its attempt now (late results collected, jobs cancelled)."""
        return list(self._late)

    def _in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a coroutine past this attempt; :meth:`stop` cancels what is left of it."""
        task = asyncio.create_task(coro)
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    async def stop(self) -> None:
        for task in self._late:
            task.cancel()
        await asyncio.gather(*self._late, return_exceptions=True)
