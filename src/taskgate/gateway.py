"""What every API dialect does with tasks and batches: accept, read, wait, cancel, list,
always within the caller's tenant. Routers (native, OpenAI, and the compatible APIs) translate
their shapes to these calls; none of them reads or writes tasks, or talks to the scheduler,
any other way. What these calls build on are the gateway's attributes, which routers also
use directly: ``routing``, ``conversations``, ``webhooks``, ``request_files`` and
``control`` (admins' actions).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from taskgate import budgets, params
from taskgate.budgets import Quota
from taskgate.config import Settings
from taskgate.control import Control
from taskgate.conversations import Conversations
from taskgate.errors import BadRequest, NotFound
from taskgate.events import Events
from taskgate.events.topics import announce_cancelled, announce_queued, task_event
from taskgate.files import FileLinks, Files
from taskgate.models import ApiKey, Attempt, Batch, Status, Task, new_id
from taskgate.ops.timeline import LIMIT as TIMELINE_LIMIT
from taskgate.ops.timeline import timeline
from taskgate.request_files import RequestFiles
from taskgate.routing import Routing
from taskgate.store import SqlStore, TaskFilter
from taskgate.submission import (
    MAX_QUEUE_TIMEOUT,
    MAX_RUN_TIMEOUT,
    Submission,
    check_duration,
    check_storable,
    new_task,
)
from taskgate.tenant_webhooks import TenantWebhooks
from taskgate.views import batch_json, iso, task_json

# How often a waiter re-reads the store even without an event (events are hints).
WAIT_REREAD_SECONDS = 5.0
# the task events a wait wakes for (to read the task again); its start and progress are not
WAITED_FOR = frozenset({"finished", "retrying"})


class Gateway:
    def __init__(
        self,
        settings: Settings,
        store: SqlStore,
        events: Events,
        files: Files | None = None,
        file_links: FileLinks | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.events = events
        # every API's links to stored files (None: signed with a secret of this process only)
        self.file_links = file_links or FileLinks.ephemeral(settings.files.url_lifetime)
        self.routing = Routing(settings)
        self.request_files = RequestFiles(files)
        self.webhooks = TenantWebhooks(settings.webhooks, store)
        self.conversations = Conversations(
            settings.conversations, store, events, self.routing, self.request_files
        )
        self.control = Control(store, events, self.routing)  # admins' actions

    async def use(self, settings: Settings, *_: object) -> None:
        """Serve by new settings from now on (a reload; an instance joined or left a
        route): routes, kinds and what is read from ``settings`` when used. Webhook and
        conversation settings were given to their parts at start-up: they need a restart."""
        await self.routing.update(settings)
        self.settings = settings

    # --- accepting -----------------------------------------------------------------------

    async def submit(self, key: ApiKey, sub: Submission) -> tuple[Task, bool]:
        """Accept a task durably. Returns (task, created); created is False on an idempotent
        replay of an earlier submission with the same key and body. Everything is checked
        before anything is stored: a refused request leaves no task and no file."""
        await self._check(sub)
        quotas = self.quotas(key)
        if sub.conversation_id is not None:
            if sub.idempotency_key is not None:
                raise BadRequest(
                    "an idempotency key cannot be used with a conversation turn",
                    field="idempotency_key",
                )
            [task] = await self.conversations.submit_turn(key, sub, [sub.model], None, quotas)
            return task, True
        new = new_task(self.routing, key, sub, quotas=quotas)
        async with self.request_files.extracted(key, sub.input) as (input_, saved):
            if saved:
                new = dataclasses.replace(new, input=input_)
            task, created = await self.store.tasks.insert(new)
        if created:
            await announce_queued(self.events, [task])
        elif saved:  # a replay keeps the earlier task's files
            await self.request_files.discard(saved)
        return task, created

    async def submit_batch(
        self, key: ApiKey, sub: Submission, models: list[str], first_wins: bool = False
    ) -> tuple[Batch, list[Task]]:
        """Fan one request out to several models: a task each, accepted all together."""
        if not models or len(set(models)) != len(models):
            raise BadRequest("a batch needs one or more distinct models", field="models")
        await self._check(sub)
        batch = Batch(
            new_id(),
            key.tenant,
            key.id,
            sub.kind,
            first_wins,
            models,
            time.time(),
            conversation_id=sub.conversation_id,
            webhook_url=sub.webhook_url,
        )
        quotas = self.quotas(key)
        if sub.conversation_id is not None:
            turn = await self.conversations.submit_turn(key, sub, models, batch, quotas)
            return batch, turn
        news = [new_task(self.routing, key, sub, batch.id, m, quotas) for m in models]
        async with self.request_files.extracted(key, sub.input) as (input_, _):
            news = [dataclasses.replace(n, input=input_) for n in news]
            tasks = await self.store.batches.insert(batch, news)
        await announce_queued(self.events, tasks)
        return batch, tasks

    def quotas(self, key: ApiKey) -> tuple[Quota, ...]:
        """The limits a request with ``key`` is held to (its own and its tenant's, by the
        settings in force now); the store counts them in the transaction that accepts it."""
        return budgets.quotas(key, self.settings.limits.tenants.get(key.tenant))

    async def _check(self, sub: Submission) -> None:
        """What is checked of every submission before any model is resolved."""
        check_duration("timeout", sub.timeout, MAX_RUN_TIMEOUT)
        check_duration("queue_timeout", sub.queue_timeout, MAX_QUEUE_TIMEOUT)
        params.check(sub.params)
        await self.webhooks.check_url(sub.webhook_url)
        check_storable(sub)

    # --- reading ---------------------------------------------------------------------------

    async def get(self, key: ApiKey, task_id: str) -> Task:
        task = await self.store.tasks.get(task_id, key.scope)
        if task is None:
            raise NotFound(f"no task {task_id!r}")
        return task

    def task_json(self, task: Task) -> dict[str, Any]:
        """The task as the native API lists it: its record, with signed links to its files."""
        out = task_json(task)
        out["result"] = self.file_links.result(task.result)
        return out

    async def view(self, task: Task, *, history: bool = True) -> dict[str, Any]:
        """The task as the native API shows it."""
        out = self.task_json(task)
        if task.status is Status.PENDING:
            out["position"] = await self.store.tasks.position(task)
        if history:
            out["history"] = [attempt_json(a) for a in await self.store.tasks.history(task.id)]
        if task.webhook_url:
            out["webhook"] = await self.webhooks.view(task.webhook_url, task_id=task.id)
        return out

    async def timeline(self, task: Task) -> list[dict[str, Any]]:
        """The task's own log (see ops/timeline.py)."""
        attempts = await self.store.tasks.history(task.id)
        return timeline(task, attempts, await self.store.task_logs.of(task.id, TIMELINE_LIMIT))

    def signed(self, task: Task) -> Task:
        """The task with the links of its result's files signed (see files/signing.py)."""
        return task.evolve(result=self.file_links.result(task.result))

    def batch_json(self, batch: Batch, tasks: list[Task], base: str = "") -> dict[str, Any]:
        """The batch with its results, with signed links to their files (``base``: the
        server's URL, for absolute links to images in AI Task System's fields)."""
        return batch_json(batch, [self.signed(t) for t in tasks], base)

    async def batch_view(self, batch: Batch, tasks: list[Task], base: str = "") -> dict[str, Any]:
        """The batch as the native API shows it, with its webhook's deliveries."""
        out = self.batch_json(batch, tasks, base)
        if batch.webhook_url:
            out["webhook"] = await self.webhooks.view(batch.webhook_url, batch_id=batch.id)
        return out

    async def wait(self, key: ApiKey, task_id: str, timeout: float) -> Task:
        """The task once it has ended, or as it is after ``timeout`` seconds."""
        if timeout <= 0:
            return await self.get(key, task_id)
        end = time.monotonic() + timeout
        # subscribed first, so one read suffices: an ending after it is heard
        async with self.events.subscribe(f"task:{task_id}", WAITED_FOR) as sub:
            task = await self.get(key, task_id)
            while not task.terminal:
                left = end - time.monotonic()
                if left <= 0:
                    break
                message = await sub.get(min(left, WAIT_REREAD_SECONDS))
                task = ended_task(message, task_id) or await self.get(key, task_id)
        return task

    async def cancel(self, key: ApiKey, task_id: str) -> Task:
        task = await self.store.tasks.cancel(task_id, key.scope)
        if task is None:
            raise NotFound(f"no task {task_id!r}")
        if task.status is Status.CANCELLED:
            await announce_cancelled(self.events, [task])
        else:
            await self.events.publish(f"task:{task.id}", task_event(task, "finished"))
        return task

    async def get_batch(self, key: ApiKey, batch_id: str) -> tuple[Batch, list[Task]]:
        found = await self.store.batches.get(batch_id, key.scope)
        if found is None:
            raise NotFound(f"no batch {batch_id!r}")
        return found

    async def wait_batch(
        self, key: ApiKey, batch_id: str, timeout: float
    ) -> tuple[Batch, list[Task]]:
        """The batch once every task has ended, or as it is after ``timeout`` seconds."""
        _, tasks = await self.get_batch(key, batch_id)
        end = time.monotonic() + timeout
        for task in tasks:
            left = end - time.monotonic()
            if left <= 0:
                break
            await self.wait(key, task.id, left)
        return await self.get_batch(key, batch_id)

    async def cancel_batch(self, key: ApiKey, batch_id: str) -> tuple[Batch, list[Task]]:
        batch, _ = await self.get_batch(key, batch_id)
        await announce_cancelled(self.events, await self.store.batches.cancel(batch.id))
        return await self.get_batch(key, batch_id)

    async def list_tasks(self, key: ApiKey, f: TaskFilter) -> list[Task]:
        """The tasks the filter takes: a tenant key's always within its tenant; an admin
        key's within the filter's tenant if it names one, else of every tenant."""
        tenant = f.tenant if key.scope is None else key.scope
        return await self.store.tasks.find(dataclasses.replace(f, tenant=tenant))


def ended_task(message: dict[str, Any] | None, task_id: str) -> Task | None:
    """The ended task a ``finished`` event carries, when it came in-process (a transport
    between processes carries JSON only, and the waiter reads the store instead)."""
    task = message.get("ended") if message else None
    return task if isinstance(task, Task) and task.terminal and task.id == task_id else None


def attempt_json(a: Attempt) -> dict[str, Any]:
    out = a.as_dict()
    del out["task_id"]
    out["started_at"], out["ended_at"] = iso(a.started_at), iso(a.ended_at)
    return out
