"""An attempt's outcome and its one conditional write: success (with the outputs kept),
a retry later (backoff, maybe on a fallback route) or a final failure, decided by
``policy.decide``, and written again while the store cannot be reached."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from taskgate import errors, policy, pricing
from taskgate.config import Price, RetryPolicy, SchedulerSettings
from taskgate.files import Files
from taskgate.models import Status, Task
from taskgate.providers import Result
from taskgate.scheduling.jobs import BackendJobs
from taskgate.scheduling.outputs import keep_outputs
from taskgate.scheduling.state import Running
from taskgate.store import Outcome, SqlStore

log = logging.getLogger("taskgate.scheduler")

# writing an attempt's ending again while the store fails: after 0.1 s, doubling up to 2 s
ENDING_RETRY = RetryPolicy(backoff_base=0.1, backoff_max=2.0, jitter=0.5)


class Endings:
    def __init__(
        self,
        conf: SchedulerSettings,
        store: SqlStore,
        files: Files,
        jobs: BackendJobs,
        worker_id: str,
        rng: random.Random,
        due: Callable[[dict[str, Any]], None],
        prices: Callable[[], Sequence[Price]] = tuple,
    ) -> None:
        self.conf = conf
        self.store = store
        self.files = files
        self.jobs = jobs
        self.worker_id = worker_id
        self.rng = rng
        self.due = due  # told of a lane where a retried task falls due
        self.prices = prices  # the prices in force (read at each ending: they may be reloaded)

    async def write(
        self, run: Running, result: Result | None, error: errors.ProviderError | None
    ) -> Task | None:
        """Settle the attempt's ending (which may read the store, and store output files)
        and write it. While the store cannot be reached (``Unavailable``: a database
        restarting), settle or write the same ending again, with backoff, so that a result
        already paid for is kept. The run stays in ``running`` meanwhile, so the lease loop
        keeps renewing its lease. Once that lease may have lapsed (the renewals failed too),
        another worker may take the task over (and would fence this write out): then the
        last error is raised. A write that keeps failing while the lease is renewed will not
        succeed either: it is given up after a lease's length."""
        give_up_at = time.time() + self.conf.lease_seconds
        tries = 0
        outcome: Outcome | None = None
        while True:
            try:
                outcome = outcome or await self._settle(run, result, error)
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

    async def _outcome(
        self, run: Running, result: Result | None, error: errors.ProviderError | None
    ) -> Outcome:
        task, route = run.task, run.lane.route
        if error is None:
            assert result is not None
            kept = await keep_outputs(self.files, task, result)
            limit = run.lane.limits.get(run.instance.name)
            tokens = policy.tokens_used(result.usage) if limit and limit[1] else 0
            used = pricing.usage_of(result.usage)
            return run.outcome(
                self.worker_id,
                Status.SUCCESS,
                "success",
                result=kept,
                tokens=tokens,
                usage=result.usage or None,
                input_tokens=used.input_tokens,
                output_tokens=used.output_tokens,
                cost=pricing.cost(self.prices(), task.model, used),
            )
        if run.provider_job is not None and run.timed_out:
            return self.jobs.timed_out(run, error)
        history = await self.store.tasks.history(task.id) if error.retryable else []
        decision = policy.decide(
            error,
            attempts=1 + sum(1 for a in history if a.route == route.name and not a.handoff),
            max_attempts=route.retry.max_attempts,
            route=route.name,
            fallbacks=() if task.pinned_instance else route.fallbacks,  # pinned: here only
            tried_routes=[a.route for a in history],
            policy=route.retry,
            rng=self.rng,
        )
        err = error.as_dict()
        if decision.action is policy.Action.RETRY:
            due = {"route": decision.route or route.name, "priority": int(task.priority)}
            asyncio.get_running_loop().call_later(decision.delay, self.due, due)
            return run.outcome(
                self.worker_id,
                Status.PENDING,
                "failover" if decision.route else "retry",
                error=err,
                run_after=time.time() + decision.delay,
                next_route=decision.route,
                provider_job=self.jobs.after_retry(run, error, decision.route),
            )
        assert decision.status is not None
        label = decision.status.value.lower()
        return run.outcome(self.worker_id, decision.status, label, error=err)
