"""Prometheus metrics of one taskgate process (the ``prometheus-client`` library).

Counters and histograms count what this process did (kept as plain numbers, see
:class:`Counts`; prometheus-client collects and renders them). The queue gauges describe the whole
cluster: they are read from the store (a few indexed queries, by ``QueueGauges.refresh``
every ``REFRESH`` seconds), so any one process reports them. Labels hold only bounded
values (routes, instances, kinds, models, statuses, error types, path templates), never
task ids, keys or prompts.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from taskgate import policy
from taskgate.config import Settings
from taskgate.errors import Unavailable
from taskgate.models import Priority
from taskgate.store.stats import QueueSnapshot

Instances = Callable[[], Mapping[tuple[str, str], policy.InstanceState]]

log = logging.getLogger("taskgate.metrics")

REFRESH = 5.0  # seconds between reads of the queue gauges from the store

# seconds: from a fast chat call to a long video job
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Counts:
    """A counter family, kept as plain numbers per label values and handed to
    prometheus-client at scrape time. Taking ``Counter.labels(...).inc()`` on every task
    costs several microseconds (a lock, a check of every value, a lock per child); this is a
    dictionary update. Only the event loop's thread updates and reads it."""

    def __init__(self, name: str, doc: str, labels: tuple[str, ...]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for labels, value in list(self.values.items()):
            family.add_metric(labels, value)
        return family


class Times:
    """A histogram family kept the same way: per label values, a count per bucket (found
    by bisection) and the sum."""

    def __init__(
        self, name: str, doc: str, labels: tuple[str, ...], bounds: tuple[float, ...] = BUCKETS
    ) -> None:
        self.name, self.doc, self.labels, self.bounds = name, doc, labels, bounds
        self.values: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, seconds: float, *labels: str) -> None:
        kept = self.values.get(labels)
        if kept is None:
            kept = self.values[labels] = ([0] * (len(self.bounds) + 1), [0.0])
        kept[0][bisect.bisect_left(self.bounds, seconds)] += 1
        kept[1][0] += seconds

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        edges = [*(str(float(b)) for b in self.bounds), "+Inf"]
        for labels, (counts, total) in list(self.values.items()):
            buckets = list(zip(edges, itertools.accumulate(counts), strict=True))
            family.add_metric(labels, buckets, total[0])
        return family


class Metrics(Collector):
    """The series this process exports, in a registry of its own (several apps may live in
    one process, as in tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.submitted = Counts("taskgate_tasks_submitted", "Tasks accepted", ("route", "kind"))
        self.ended = Counts(
            "taskgate_tasks_ended", "Tasks that ended", ("route", "status", "error_type")
        )
        self.attempts = Counts(
            "taskgate_attempts", "Attempts that ended, by outcome", ("route", "instance", "outcome")
        )
        self.retries = Counts(
            "taskgate_retries", "Attempts followed by a retry or failover", ("route", "instance")
        )
        self.job_polls = Counts("taskgate_job_polls", "Polls of backend jobs", ("route",))
        self.webhooks = Counts(
            "taskgate_webhook_deliveries", "Webhook delivery tries, by result", ("status",)
        )
        self.tokens = Counts(
            "taskgate_tokens", "Tokens used, in and out", ("route", "model", "direction")
        )
        self.purged = Counts("taskgate_purged", "Records deleted by retention, by kind", ("what",))
        self.queue_wait = Times("taskgate_queue_wait_seconds", "From due to claimed", ("route",))
        self.attempt_time = Times(
            "taskgate_attempt_seconds", "One attempt's run time", ("route", "instance")
        )
        self.task_time = Times("taskgate_task_seconds", "From submitted to ended", ("route",))
        self.http = Times(
            "taskgate_http_request_seconds",
            "HTTP requests by API, path template and status",
            ("api", "method", "path", "status"),
            HTTP_BUCKETS,
        )
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        for kept in vars(self).values():
            if isinstance(kept, Counts | Times):
                yield kept.family()

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
            try:
                await self.refresh()
            except Unavailable:  # the store is down: keep the last reading
                pass
            except Exception:
                log.exception("could not read the queue gauges; keeping the last reading")
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
        paused = GaugeMetricFamily(
            "taskgate_route_paused", "1 while an admin has paused the route", labels=("route",)
        )
        for route in routes:
            paused.add_metric((route,), 1.0 if route in snap.paused else 0.0)
        yield from (waiting, oldest, running, allowance, paused)
