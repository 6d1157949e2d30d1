"""Polling a job that runs on the backend's side (a video), until it ends.

The scheduler submits the job (``Provider.run`` returns a :class:`Job`), keeps it on the task,
frees the backend slot, then awaits :func:`poll_until_done`. Polls back off from the route's
``poll.interval`` up to ``poll.max_interval`` with jitter, never sooner than the backend asked.
A poll that fails with a retryable error (the backend throttled or hiccupped) is tried again;
``poll.max_errors`` such failures in a row end the wait with that error. An error marked with
:func:`taskgate.errors.job_ended` (the job itself failed, or the backend lost it) ends the
wait at once. Nothing here touches the store.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from taskgate import errors, policy
from taskgate.config import PollPolicy
from taskgate.providers import Call, Job, Pending, Provider, Result
from taskgate.providers.redact import scrub

log = logging.getLogger("taskgate.polling")


def job_record(job: Job, route: str, instance: str, now: float) -> dict[str, Any]:
    """What the task keeps of a submitted job: enough to resume polling after a restart."""
    return {
        **job.as_dict(),
        "route": route,
        "instance": instance,
        "submitted_at": now,
        "poll_after": job.poll_after,
    }


def job_of(record: dict[str, Any]) -> Job:
    return Job(str(record["id"]), dict(record.get("data") or {}), record.get("poll_after"))


async def poll_until_done(
    provider: Provider,
    call: Call,
    job: Job,
    conf: PollPolicy,
    rng: random.Random,
    polled: Callable[[], None] | None = None,
) -> Result:
    """Poll until the job ends: its Result, or the error it (or repeated polling) ended with.
    ``polled`` is told of each poll."""
    polls, failures, hint = 0, 0, job.poll_after
    while True:
        await asyncio.sleep(policy.poll_delay(polls, conf, rng, hint))
        polls += 1
        if polled is not None:
            polled()
        try:
            state = await provider.poll(call, job)
        except errors.RetryableError as exc:
            failures += 1
            if exc.job_ended or failures >= conf.max_errors:
                raise
            log.warning(
                "poll %d of job %s failed (%s); polling again", polls, job.id, scrub(str(exc), call)
            )
            hint = exc.retry_after
            continue
        failures = 0
        if isinstance(state, Result):
            return state
        if not isinstance(state, Pending):
            raise errors.BadResponse(f"poll returned {type(state).__name__}, not Result|Pending")
        hint = state.retry_after
        if state.progress:
            await call.emit(state.progress)


async def collect_late(
    provider: Provider, call: Call, job: Job, conf: PollPolicy, rng: random.Random
) -> Result | None:
    """After the task timed out here, keep polling for up to ``late_results_for`` seconds:
    a job that still succeeds was paid for, and its result is worth keeping."""
    try:
        async with asyncio.timeout(conf.late_results_for):
            return await poll_until_done(provider, call, job, conf, rng)
    except TimeoutError:
        log.info("job %s of task %s never finished", job.id, call.task_id)
    except errors.ProviderError as exc:
        log.info(
            "job %s of task %s ended late without a result: %s",
            job.id,
            call.task_id,
            scrub(str(exc), call),
        )
    return None


async def cancel_quietly(provider: Provider, call: Call, job: Job) -> None:
    """Ask the backend to cancel a job; a backend that will not is logged, not raised."""
    try:
        await provider.cancel_job(call, job)
    except Exception as exc:
        log.warning(
            "could not cancel job %s of task %s: %s", job.id, call.task_id, scrub(str(exc), call)
        )
