"""What every API dialect does with tasks: accept, read, wait, cancel, list, always within the
caller's tenant. Routers (native, OpenAI, and the compatible APIs) translate their shapes to
these calls; none of them reads or writes tasks, or talks to the scheduler, any other way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from taskgate import netguard, params
from taskgate.config import Route, Settings
from taskgate.conversations import user_turn, with_history
from taskgate.discovery import Discovery
from taskgate.errors import BadRequest, NotFound, ProviderError
from taskgate.events import Events
from taskgate.events.topics import announce_cancelled, task_event
from taskgate.files import Files
from taskgate.models import (
    ApiKey,
    Attempt,
    Batch,
    Conversation,
    Message,
    Priority,
    Status,
    Task,
    new_id,
)
from taskgate.providers import lookup
from taskgate.providers.media import from_data_uri, is_data_uri
from taskgate.store import NewTask, SqlStore, TaskFilter
from taskgate.store.outbox import Delivery
from taskgate.views import batch_json as batch_json
from taskgate.views import batch_result as batch_result
from taskgate.views import iso, task_json

log = logging.getLogger("taskgate.gateway")

# Inline data: URIs longer than this go to file storage at submit; shorter ones stay inline.
INLINE_FILE_MIN = 4096

# The longest durations a client may ask for, in seconds: a run of one attempt, and a wait
# in the queue before the first start.
MAX_RUN_TIMEOUT = 86_400.0
MAX_QUEUE_TIMEOUT = 30 * 86_400.0

# How often a waiter re-reads the store even without an event (events are hints).
WAIT_REREAD_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Submission:
    kind: str
    model: str
    input: Any
    params: dict[str, Any]
    priority: Priority = Priority.DEFAULT
    timeout: float | None = None  # run timeout, seconds
    queue_timeout: float | None = None  # longest wait in the queue, seconds
    idempotency_key: str | None = None
    conversation_id: str | None = None  # a chat turn of this conversation (of the tenant)
    webhook_url: str | None = None
    label: str | None = None  # the client's own tag, e.g. the Volcengine AI Server's user_id


def scope(key: ApiKey) -> str | None:
    """The tenant a key may see: its own; admin keys see every tenant."""
    return None if key.admin else key.tenant


class Gateway:
    def __init__(
        self, settings: Settings, store: SqlStore, events: Events, files: Files | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.events = events
        self.files = files  # where inline data: URIs of inputs go (None: they stay inline)
        # the configured kinds, and those each route (or else its provider) declares serving
        declared = (
            r.kinds if r.kinds is not None else lookup(r.provider).kinds or ()
            for r in settings.routes
        )
        self.kinds = sorted(set(settings.kinds).union(*declared))
        self.discovery = Discovery(settings.routes)
        self.guard = netguard.guard_of(settings.webhooks)  # where webhook URLs may point

    async def start(self) -> None:
        """Learn the models of routes that discover them, and keep them fresh."""
        await self.discovery.start()

    async def stop(self) -> None:
        await self.discovery.stop()

    # --- accepting -----------------------------------------------------------------------

    def route_for(self, kind: str, model: str) -> Route:
        if kind not in self.kinds:
            raise BadRequest(
                f"unknown kind {kind!r}; known kinds: {', '.join(self.kinds)}",
                field="kind",
            )
        route = self.resolve(model)
        if route is None:
            raise BadRequest(f"unknown model {model!r}: no route serves it", field="model")
        served = route.kinds if route.kinds is not None else lookup(route.provider).kinds
        if served is not None and kind not in served:
            raise BadRequest(
                f"model {model!r} (route {route.name!r}) does not serve kind {kind!r}", field="kind"
            )
        return route

    def resolve(self, model: str) -> Route | None:
        """The route serving a model: declared names and globs, and discovered names."""
        return self.settings.resolve(model, self.discovery.serves)

    def models(self) -> list[dict[str, Any]]:
        """Every model name routed, OpenAI-style: declared names and globs, and the names
        discovered on a route that routes them (an earlier glob may take a name)."""
        out: list[dict[str, Any]] = []
        for r in self.settings.routes:
            named = [(m, declared_as(m)) for m in r.models]
            found = [
                (m, "discovered")
                for m in self.discovery.names(r)
                if m not in r.models and self.resolve(m) is r
            ]
            out += [
                {"id": m, "object": "model", "owned_by": r.name, "source": source}
                for m, source in named + found
            ]
        return out

    def reachable(self, route: Route) -> list[Route]:
        """The route and every fallback it may reach, each once."""
        seen: list[Route] = []
        todo = [route]
        while todo:
            r = todo.pop()
            if r not in seen:
                seen.append(r)
                todo.extend(self.settings.route(f) for f in r.fallbacks)
        return seen

    def attempt_budget(self, route: Route) -> int:
        """Attempts over the route and every fallback it may reach."""
        return sum(r.retry.max_attempts for r in self.reachable(route))

    async def submit(self, key: ApiKey, sub: Submission) -> tuple[Task, bool]:
        """Accept a task durably. Returns (task, created); created is False on an idempotent
        replay of an earlier submission with the same key and body. Everything is checked
        before anything is stored: a refused request leaves no task and no file."""
        await self._check(sub)
        if sub.conversation_id is not None:
            if sub.idempotency_key is not None:
                raise BadRequest(
                    "an idempotency key cannot be used with a conversation turn",
                    field="idempotency_key",
                )
            [task] = await self._submit_turn(key, sub, [sub.model])
            return task, True
        new = self._new_task(key, sub)
        async with self._inline_files(key, sub.input) as (input_, saved):
            if saved:
                new = dataclasses.replace(new, input=input_)
            task, created = await self.store.tasks.insert(new)
        if created:
            await self._queued(task)
        elif saved:  # a replay keeps the earlier task's files
            await self.discard_files(saved)
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
        if sub.conversation_id is not None:
            return batch, await self._submit_turn(key, sub, models, batch)
        news = [self._new_task(key, sub, batch.id, model=m) for m in models]
        async with self._inline_files(key, sub.input) as (input_, _):
            news = [dataclasses.replace(n, input=input_) for n in news]
            tasks = await self.store.batches.insert(batch, news)
        for task in tasks:
            await self._queued(task)
        return batch, tasks

    async def _check(self, sub: Submission) -> None:
        """What is checked of every submission before any model is resolved."""
        check_duration("timeout", sub.timeout, MAX_RUN_TIMEOUT)
        check_duration("queue_timeout", sub.queue_timeout, MAX_QUEUE_TIMEOUT)
        params.check(sub.params)
        await self._check_webhook(sub)
        check_storable(sub)

    @contextlib.asynccontextmanager
    async def _inline_files(self, key: ApiKey, value: Any) -> AsyncIterator[tuple[Any, list[str]]]:
        """``value`` with its inline ``data:`` URIs over ``INLINE_FILE_MIN`` bytes stored as
        files of the tenant (``{"file_id": ...}`` in their place), and the ids of the files
        stored. Run it last, once the request is known good: if the block fails (or a URI
        is not valid), the files are removed again."""
        async with self.discarded_if_refused() as saved:
            if self.files is not None and has_data_uri(value):
                value = await self._extract(key, value, saved)
            yield value, saved

    async def _extract(self, key: ApiKey, value: Any, saved: list[str]) -> Any:
        if is_data_uri(value) and len(value) > INLINE_FILE_MIN:
            assert self.files is not None
            try:
                f = from_data_uri(value, "input")
            except ProviderError as exc:
                raise BadRequest(f"an input data: URI is not valid: {exc.message}") from None
            stored = await self.files.save(key.tenant, f.data, f.content_type, f.name)
            saved.append(stored.id)
            return {"file_id": stored.id}
        if isinstance(value, dict):
            return {k: await self._extract(key, v, saved) for k, v in value.items()}
        if isinstance(value, list):
            return [await self._extract(key, v, saved) for v in value]
        return value

    @contextlib.asynccontextmanager
    async def discarded_if_refused(self) -> AsyncIterator[list[str]]:
        """A list for the ids of the files stored for one request: if the block fails (the
        request is refused, or the client is gone), those files are removed again."""
        saved: list[str] = []
        try:
            yield saved
        except BaseException:
            await self.discard_files(saved)
            raise

    async def discard_files(self, file_ids: Sequence[str]) -> None:
        """Remove the files stored for a request that was then refused (best effort: the
        refusal stands even if this fails)."""
        if file_ids and self.files is not None:
            try:
                await self.files.discard(file_ids)
            except Exception:  # the refusal still stands; the files are only orphans
                log.exception("could not remove the files %s of a refused request", file_ids)

    async def _submit_turn(
        self, key: ApiKey, sub: Submission, models: list[str], batch: Batch | None = None
    ) -> list[Task]:
        """A turn of a conversation: each model's chat task gets the earlier turns as context
        (a task of another kind, an image, just joins the history); the user's turn is kept
        with the tasks, in one transaction."""
        assert sub.conversation_id is not None
        for m in models:  # refuse before anything is read or stored
            self._route_checked(sub, m)
        conversation = await self.store.conversations.get(sub.conversation_id, key.tenant)
        if conversation is None:
            raise NotFound(f"no conversation {sub.conversation_id!r}")
        history = await self.store.conversations.messages(conversation.id)
        conf = self.settings.conversations
        async with self._inline_files(key, sub.input) as (input_, _):
            sub = dataclasses.replace(sub, input=input_)
            news = [
                self._new_task(
                    key,
                    dataclasses.replace(sub, input=with_history(sub.input, history, m, conf))
                    if sub.kind == "chat"  # other kinds (an image) join the history, uncontexted
                    else sub,
                    batch.id if batch else None,
                    model=m,
                )
                for m in models
            ]
            tasks = await self.store.conversations.add_turn(
                conversation.id, user_turn(sub.input), news, batch
            )
        for task in tasks:
            await self._queued(task)
        return tasks

    async def create_conversation(self, key: ApiKey, title: str = "") -> Conversation:
        return await self.store.conversations.create(key.tenant, title)

    async def get_conversation(
        self, key: ApiKey, conversation_id: str
    ) -> tuple[Conversation, list[Message]]:
        c = await self.store.conversations.get(conversation_id, scope(key))
        if c is None:
            raise NotFound(f"no conversation {conversation_id!r}")
        return c, await self.store.conversations.messages(c.id)

    async def list_conversations(
        self, key: ApiKey, before_id: str | None, limit: int
    ) -> list[Conversation]:
        return await self.store.conversations.find(scope(key), before_id, limit)

    async def delete_conversation(self, key: ApiKey, conversation_id: str) -> None:
        if not await self.store.conversations.delete(conversation_id, scope(key)):
            raise NotFound(f"no conversation {conversation_id!r}")

    def _route_checked(self, sub: Submission, model: str) -> Route:
        """The route of ``model``, once the submission's params suit its provider."""
        route = self.route_for(sub.kind, model)
        params.check(sub.params, lookup(route.provider).param_bounds)
        return route

    def _new_task(
        self,
        key: ApiKey,
        sub: Submission,
        batch_id: str | None = None,
        model: str | None = None,
    ) -> NewTask:
        """A checked submission (for ``model``, in a batch; by default the submission's
        model), ready for the store; refused with a 400 if not routable."""
        if model is not None:
            sub = dataclasses.replace(sub, model=model, idempotency_key=None)
        route = self._route_checked(sub, sub.model)
        if sub.idempotency_key is not None and not 0 < len(sub.idempotency_key) <= 200:
            raise BadRequest(
                "idempotency key must have 1 to 200 characters", field="idempotency_key"
            )
        now = time.time()
        return NewTask(
            tenant=key.tenant,
            api_key_id=key.id,
            kind=sub.kind,
            model=sub.model,
            route=route.name,
            priority=sub.priority,
            input=sub.input,
            params=sub.params,
            max_attempts=self.attempt_budget(route),
            run_timeout=sub.timeout,
            deadline=now + sub.queue_timeout if sub.queue_timeout else None,
            idempotency_key=sub.idempotency_key,
            request_hash=_request_hash(sub) if sub.idempotency_key else None,
            batch_id=batch_id,
            conversation_id=sub.conversation_id,
            webhook_url=sub.webhook_url if batch_id is None else None,  # a batch's: one event
            label=sub.label,
        )

    async def _check_webhook(self, sub: Submission) -> None:
        """A webhook URL must be http(s) and lead to an address the config allows."""
        if sub.webhook_url is None:
            return
        try:
            await self.guard.check_url(sub.webhook_url)
        except netguard.Refused as exc:
            raise BadRequest(f"webhook_url refused: {exc}", field="webhook_url") from None

    async def _queued(self, task: Task) -> None:
        await self.events.publish("queue", {"route": task.route, "priority": int(task.priority)})

    # --- reading ---------------------------------------------------------------------------

    async def get(self, key: ApiKey, task_id: str) -> Task:
        task = await self.store.tasks.get(task_id, scope(key))
        if task is None:
            raise NotFound(f"no task {task_id!r}")
        return task

    async def view(self, task: Task, *, history: bool = True) -> dict[str, Any]:
        """The task as the native API shows it."""
        out = task_json(task)
        if task.status is Status.PENDING:
            out["position"] = await self.store.tasks.position(task)
        if history:
            out["history"] = [attempt_json(a) for a in await self.store.tasks.history(task.id)]
        if task.webhook_url:
            deliveries = await self.store.outbox.of(task_id=task.id)
            out["webhook"] = webhook_json(task.webhook_url, deliveries)
        return out

    async def batch_view(self, batch: Batch, tasks: list[Task]) -> dict[str, Any]:
        """The batch as the native API shows it, with its webhook's deliveries."""
        out = batch_json(batch, tasks)
        if batch.webhook_url:
            deliveries = await self.store.outbox.of(batch_id=batch.id)
            out["webhook"] = webhook_json(batch.webhook_url, deliveries)
        return out

    async def webhook_secret(self, key: ApiKey, rotate: bool = False) -> str:
        """The secret that signs the webhooks of the key's tenant (made on first need).
        Rotating takes effect from the next attempt of every delivery."""
        if rotate:
            return await self.store.outbox.rotate_secret(key.tenant)
        return await self.store.outbox.secret(key.tenant)

    async def wait(self, key: ApiKey, task_id: str, timeout: float) -> Task:
        """The task once it has ended, or as it is after ``timeout`` seconds."""
        task = await self.get(key, task_id)
        if task.terminal or timeout <= 0:
            return task
        end = time.monotonic() + timeout
        async with self.events.subscribe(f"task:{task_id}") as sub:
            task = await self.get(key, task_id)  # it may have ended before we subscribed
            while not task.terminal:
                left = end - time.monotonic()
                if left <= 0:
                    break
                message = await sub.get(min(left, WAIT_REREAD_SECONDS))
                if message is None or message.get("type") in ("finished", "retrying"):
                    task = ended_task(message, task_id) or await self.get(key, task_id)
        return task

    async def cancel(self, key: ApiKey, task_id: str) -> Task:
        task = await self.store.tasks.cancel(task_id, scope(key))
        if task is None:
            raise NotFound(f"no task {task_id!r}")
        if task.status is Status.CANCELLED:
            await announce_cancelled(self.events, [task])
        else:
            await self.events.publish(f"task:{task.id}", task_event(task, "finished"))
        return task

    async def get_batch(self, key: ApiKey, batch_id: str) -> tuple[Batch, list[Task]]:
        found = await self.store.batches.get(batch_id, scope(key))
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
        return await self.store.tasks.find(dataclasses.replace(f, tenant=scope(key)))


def declared_as(name: str) -> str:
    return "glob" if any(c in name for c in "*?[") else "declared"


def check_duration(name: str, seconds: float | None, most: float) -> None:
    """A duration a client asked for: none, or more than 0 and at most ``most`` seconds."""
    if seconds is not None and not 0 < seconds <= most:  # NaN fails this too
        raise BadRequest(f"{name} must be more than 0 and at most {most:g} seconds", field=name)


def check_storable(sub: Submission) -> Submission:
    """The submission, if the store can keep its input and params as JSON; else a 400 (an
    integer beyond 64 bits, nesting deeper than 254 levels)."""
    try:
        orjson.dumps([sub.input, sub.params])
    except TypeError as exc:
        raise BadRequest(f"input and params must be storable JSON: {exc}") from None
    return sub


def ended_task(message: dict[str, Any] | None, task_id: str) -> Task | None:
    """The ended task a ``finished`` event carries, when it came in-process (a transport
    between processes carries JSON only, and the waiter reads the store instead)."""
    task = message.get("ended") if message else None
    return task if isinstance(task, Task) and task.terminal and task.id == task_id else None


def has_data_uri(value: Any) -> bool:
    if isinstance(value, str):
        return is_data_uri(value)
    if isinstance(value, dict):
        return any(has_data_uri(v) for v in value.values())
    if isinstance(value, list):
        return any(has_data_uri(v) for v in value)
    return False


def _request_hash(sub: Submission) -> str:
    body = [sub.kind, sub.model, sub.input, sub.params, int(sub.priority), sub.timeout]
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def webhook_json(url: str, deliveries: list[Delivery]) -> dict[str, Any]:
    return {"url": url, "deliveries": [delivery_json(d) for d in deliveries]}


def delivery_json(d: Delivery) -> dict[str, Any]:
    return {
        "event_id": d.event_id,
        "type": d.payload.get("type"),
        "status": d.status,
        "attempts": d.attempts,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": iso(d.created_at),
        "next_attempt_at": iso(d.next_attempt_at) if d.status == "PENDING" else None,
        "delivered_at": iso(d.updated_at) if d.status == "DELIVERED" else None,
    }


def attempt_json(a: Attempt) -> dict[str, Any]:
    out = a.as_dict()
    del out["task_id"]
    out["started_at"], out["ended_at"] = iso(a.started_at), iso(a.ended_at)
    return out
