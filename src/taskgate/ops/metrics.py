"""Prometheus metrics of one taskgate process (the ``prometheus-client`` library).

Counters and histograms count what this process did. The queue gauges describe the whole
cluster: they are read from the store (a few indexed queries, by ``QueueGauges.refresh``
every ``REFRESH`` seconds), so any one process reports them. Labels hold only bounded
values (routes, instances, kinds, models, statuses, error types, path templates), never
task ids, keys or prompts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from taskgate import policy
from taskgate.config import Settings
from taskgate.models import Priority
from taskgate.store.stats import QueueSnapshot

Instances = Callable[[], Mapping[tuple[str, str], policy.InstanceState]]

M = TypeVar("M", Counter, Histogram)

REFRESH = 5.0  # seconds between reads of the queue gauges from the store

# seconds: from a fast chat call to a long video job
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Labelled(Generic[M]):
    """A labelled metric whose children are kept here once made: prometheus-client's
    ``labels()`` takes a lock and checks every value each time, four times the cost of the
    increment itself (labels are bounded, so the cache is too)."""

    def __init__(self, metric: M) -> None:
        self.metric: M = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *labels: str) -> M:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self.metric.labels(*labels)
        return child


class Metrics:
    """The series this process exports, in a registry of its own (several apps may live in
    one process, as in tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Labelled[Counter]:
            return Labelled(Counter(name, doc, labels, registry=self.registry))

        def histogram(
            name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...] = BUCKETS
        ) -> Labelled[Histogram]:
            return Labelled(Histogram(name, doc, labels, buckets=buckets, registry=self.registry))

        self.submitted = counter("taskgate_tasks_submitted", "Tasks accepted", ("route", "kind"))
        self.ended = counter(
            "taskgate_tasks_ended", "Tasks that ended", ("route", "status", "error_type")
        )
        self.attempts = counter(
            "taskgate_attempts", "Attempts that ended, by outcome", ("route", "instance", "outcome")
        )
        self.retries = counter(
            "taskgate_retries", "Attempts followed by a retry or failover", ("route", "instance")
        )
        self.job_polls = counter("taskgate_job_polls", "Polls of backend jobs", ("route",))
        self.webhooks = counter(
            "taskgate_webhook_deliveries", "Webhook delivery tries, by result", ("status",)
        )
        self.tokens = counter(
            "taskgate_tokens", "Tokens used, in and out", ("route", "model", "direction")
        )
        self.queue_wait = histogram(
            "taskgate_queue_wait_seconds", "From due to claimed", ("route",)
        )
        self.attempt_time = histogram(
            "taskgate_attempt_seconds", "One attempt's run time", ("route", "instance")
        )
        self.task_time = histogram("taskgate_task_seconds", "From submitted to ended", ("route",))
        self.http = histogram(
            "taskgate_http_request_seconds",
            "HTTP requests by API, path template and status",
            ("api", "method", "path", "status"),
            HTTP_BUCKETS,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


# the states an instance can be in, from this process's view (policy.InstanceState)
STATES = ("healthy", "cooling_down", "probing")


class QueueGauges(Collector):
    """The cluster's queue as gauges: read from the store by :meth:`refresh`, served from
    the last reading. ``instance_states`` gives this process's view of its instances'
    health (a process that runs no scheduler has none)."""

    def __init__(
        self,
        settings: Settings,
        read: Callable[[float], Any],
        instances: Instances | None = None,
    ) -> None:
        self.settings = settings
        self.read = read  # async: now -> QueueSnapshot
        self.instances = instances
        self.snapshot: QueueSnapshot | None = None

    async def refresh(self) -> None:
        self.snapshot = await self.read(time.time())

    async def keep_refreshing(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # the store is down: keep the last reading
                await self.refresh()
            await asyncio.sleep(REFRESH)

    def collect(self) -> Iterator[Metric]:
        yield from self._capacity()
        if self.instances is not None:
            now = time.time()
            states = {k: policy.state_of(i, now) for k, i in self.instances().items()}
            yield self._states(states)
        if self.snapshot is not None:
            yield from self._queue(self.snapshot)

    def _capacity(self) -> Iterator[Metric]:
        g = GaugeMetricFamily(
            "taskgate_instance_capacity",
            "Calls an instance may run at once",
            labels=("route", "instance"),
        )
        for r in self.settings.routes:
            for i in r.instances:
                g.add_metric((r.name, i.name), i.max_concurrency)
        yield g

    @staticmethod
    def _states(states: dict[tuple[str, str], str]) -> Metric:
        g = GaugeMetricFamily(
            "taskgate_instance_state",
            "1 for an instance's health state as this process sees it",
            labels=("route", "instance", "state"),
        )
        for (route, inst), state in states.items():
            for s in STATES:
                g.add_metric((route, inst, s), 1.0 if s == state else 0.0)
        return g

    def _queue(self, snap: QueueSnapshot) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "taskgate_queue_waiting", "Tasks waiting", labels=("route", "priority")
        )
        oldest = GaugeMetricFamily(
            "taskgate_queue_oldest_wait_seconds",
            "How long the longest-waiting due task has waited",
            labels=("route",),
        )
        routes = [r.name for r in self.settings.routes]
        for route in routes:
            for p in Priority:
                waiting.add_metric((route, p.label), snap.waiting.get((route, int(p)), 0))
            waits = [snap.oldest_wait.get((route, int(p)), 0.0) for p in Priority]
            oldest.add_metric((route,), max(waits))
        running = GaugeMetricFamily(
            "taskgate_running", "Calls in flight", labels=("route", "instance")
        )
        configured = {(r.name, i.name): 0 for r in self.settings.routes for i in r.instances}
        for (route, inst), n in {**configured, **snap.running}.items():
            running.add_metric((route, inst), n)
        allowance = GaugeMetricFamily(
            "taskgate_rate_allowance",
            "Calls (requests) or tokens an instance's rate limit allows now",
            labels=("route", "instance", "limit"),
        )
        for (route, inst, limit), left in snap.allowance.items():
            allowance.add_metric((route, inst, limit), left)
        yield from (waiting, oldest, running, allowance)
