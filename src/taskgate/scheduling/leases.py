"""Leases and lost work: renewing the leases of the attempts this worker holds (and
stopping those cancelled or taken over elsewhere), requeueing the tasks of dead workers,
and the sweep that requeues expired leases and times out tasks past their deadline."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable

from taskgate.config import SchedulerSettings
from taskgate.models import Status, Task
from taskgate.scheduling.announce import Announcer
from taskgate.scheduling.call import Attempts
from taskgate.store import SqlStore

log = logging.getLogger("taskgate.scheduler")

RENEW_BATCH = 1000  # leases renewed per statement


class Leases:
    def __init__(
        self,
        conf: SchedulerSettings,
        store: SqlStore,
        attempts: Attempts,
        announcer: Announcer,
        worker_id: str,
        wake: Callable[[], None],
    ) -> None:
        self.conf = conf
        self.store = store
        self.attempts = attempts
        self.announcer = announcer
        self.worker_id = worker_id
        self.wake = wake  # tasks came back to the queue

    async def reclaim_from_dead_local_workers(self) -> None:
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

    async def keep_renewing(self) -> None:
        while True:
            await asyncio.sleep(self.conf.lease_seconds / 3)
            try:
                await self.renew()
            except Exception:
                log.exception("lease renewal failed")

    async def renew(self) -> None:
        """Renew what we hold; stop calls for tasks that were cancelled or taken elsewhere.
        A renewal that fails (the store is down) changes nothing here: the runs go on, and
        one that only waits to write its ending knows its lease from ``held_until``."""
        lease = self.conf.lease_seconds
        running = self.attempts.running
        ids = list(running)
        held: set[str] = set()
        for i in range(0, len(ids), RENEW_BATCH):
            asked_at = time.time()
            renewed = await self.store.claims.renew(ids[i : i + RENEW_BATCH], self.worker_id, lease)
            for task_id in renewed:
                if (run := running.get(task_id)) is not None:
                    run.held_until = asked_at + lease
            held |= renewed
        for task_id in set(ids) - held:
            await self._let_go(task_id)

    async def _let_go(self, task_id: str) -> None:
        """A task we no longer hold: cancelled (stop the call and the backend's job), or
        taken over after our lease lapsed (stop the call; the new holder owns the job)."""
        task = await self.store.tasks.get(task_id)
        if task is not None and task.status is Status.CANCELLED:
            await self.attempts.cancel({"task_id": task_id})
        else:
            self.attempts.stop_calling(task_id)

    async def keep_sweeping(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep failed")
            await asyncio.sleep(self.conf.poll_interval)

    async def sweep(self) -> list[Task]:
        """Requeue the tasks of lapsed leases, time out those past their queue deadline."""
        changed = await self.store.claims.sweep()
        await self.announcer.announce_all(changed)
        if changed:
            self.wake()
        return changed
