"""One structured log line and the metrics for each transition of a task that this
process writes: submitted, started (claimed on an instance), retry scheduled, backend job
submitted and finished, lease lost, ended; and for each purge run (retention). The store
tells :class:`Transitions` of its writes once they commit (it is the store's ``Observer``),
so every path that changes a task, in any API or worker, is seen exactly once, by the
process that made the change.

Levels: ``task submitted`` and ``task started`` are DEBUG, as every task has them and its
INFO line ``task ended`` repeats what they said (its queue wait, instance and attempts);
what an operator acts on (retries, backend jobs, lost leases, endings) is INFO or above.
A line costs about as much as a tenth of a task's whole handling here (bench/README.md).

Fields name the task, its tenant, route, model, instance and attempt; never its input,
its output, a key or a secret.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from taskgate import policy
from taskgate.models import Status, Task
from taskgate.ops.metrics import Metrics
from taskgate.pricing import tokens_in_out
from taskgate.store.base import Observer, Outcome, Purged

log = logging.getLogger("taskgate.tasks")

RETRIED = ("retry", "failover")


def task_fields(task: Task, **extra: Any) -> dict[str, Any]:
    return {
        "task_id": task.id,
        "tenant": task.tenant,
        "route": task.route,
        "model": task.model,
        **extra,
    }


class Transitions(Observer):
    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics

    def created(self, tasks: Sequence[Task]) -> None:
        m, say = self.metrics, log.isEnabledFor(logging.DEBUG)
        for t in tasks:
            if m:
                m.submitted.inc(t.route, t.kind)
            if say:
                fields = task_fields(t, kind=t.kind, priority=t.priority.label)
                log.debug("task submitted", extra={"fields": fields})

    def claimed(self, tasks: Sequence[Task]) -> None:
        m, say = self.metrics, log.isEnabledFor(logging.DEBUG)
        now = time.time()
        for t in tasks:
            wait = max(0.0, (t.claimed_at or now) - max(t.created_at, t.run_after))
            if m:
                m.queue_wait.observe(wait, t.route)
            if say:
                fields = task_fields(
                    t, instance=t.instance, attempt=t.attempts, queue_wait=round(wait, 4)
                )
                log.debug("task started", extra={"fields": fields})

    def attempts_ended(self, ended: Sequence[tuple[Outcome, Task | None]]) -> None:
        m = self.metrics
        now = time.time()
        for o, t in ended:
            if m:
                m.attempts.inc(o.route, o.instance, o.label)
                m.attempt_time.observe(max(0.0, now - o.started_at), o.route, o.instance)
                if o.label in RETRIED:
                    m.retries.inc(o.route, o.instance)
                if o.usage and t is not None:
                    given, made = tokens_in_out(o.usage)
                    m.tokens.inc(o.route, t.model, "in", amount=given)
                    m.tokens.inc(o.route, t.model, "out", amount=made)
            if o.label in RETRIED and t is not None:
                error = o.error or {}
                fields = task_fields(
                    t,
                    route=o.route,
                    instance=o.instance,
                    attempt=o.attempt,
                    next_route=t.route,
                    delay=round(max(0.0, o.run_after - now), 3),
                    error_type=error.get("type"),
                    reason=error.get("message"),
                )
                log.info("retry scheduled", extra={"fields": fields})

    def requeued(self, tasks: Sequence[Task], by: str) -> None:
        for t in tasks:
            fields = task_fields(t, attempts=t.attempts, max_attempts=t.max_attempts, by=by)
            log.info("task run again by an admin", extra={"fields": fields})

    def lost(self, tasks: Sequence[Task]) -> None:
        for t in tasks:
            if self.metrics:
                self.metrics.attempts.inc(t.route, t.instance or "", "lost")
            then = "requeued" if t.status is Status.PENDING else t.status.value
            fields = task_fields(t, instance=t.instance, attempt=t.attempts, then=then)
            log.warning("lease lost: the worker stopped renewing it", extra={"fields": fields})

    def ended(self, tasks: Sequence[Task]) -> None:
        m, say = self.metrics, log.isEnabledFor(logging.INFO)
        for t in tasks:
            error_type = (t.error or {}).get("type", "") if t.status is not Status.SUCCESS else ""
            took = max(0.0, (t.finished_at or time.time()) - t.created_at)
            if m:
                m.ended.inc(t.route, t.status.value, error_type)
                m.task_time.observe(took, t.route)
            if say:
                usage = t.result.get("usage") if isinstance(t.result, dict) else None
                begun = t.started_at
                fields = task_fields(
                    t,
                    instance=t.instance,
                    attempt=t.attempts,
                    status=t.status.value,
                    duration=round(took, 4),  # submitted to ended
                    queue_wait=round(begun - t.created_at, 4) if begun else None,  # to a start
                    error_type=error_type or None,
                    tokens=policy.tokens_used(usage) if isinstance(usage, dict) else None,
                )
                log.info("task ended", extra={"fields": fields})

    def job_kept(self, task: Task, job: dict[str, Any]) -> None:
        fields = task_fields(
            task, instance=job.get("instance"), attempt=task.attempts, job=str(job.get("id"))
        )
        log.info("backend job submitted", extra={"fields": fields})

    def job_finished(self, task: Task, instance: str, polls: int, error: str | None) -> None:
        if self.metrics:
            self.metrics.job_polls.inc(task.route, amount=polls)
        fields = task_fields(
            task, instance=instance, attempt=task.attempts, polls=polls, error=error
        )
        log.info("backend job finished", extra={"fields": fields})

    def webhook_tried(self, outcome: str, status: int | None) -> None:
        if self.metrics:
            self.metrics.webhooks.inc(outcome.lower())

    def purged(self, purged: Purged, seconds: float) -> None:
        counts = purged.as_dict()
        if self.metrics:
            for what, n in counts.items():
                if n and what != "bytes":
                    self.metrics.purged.inc(what, amount=n)
        fields = {**counts, "duration": round(seconds, 4)}
        logging.getLogger("taskgate.retention").info("purge ran", extra={"fields": fields})
