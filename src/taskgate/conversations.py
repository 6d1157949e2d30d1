"""A tenant's conversations: creating, reading, listing and deleting them, and submitting a
turn, whose chat tasks are sent the earlier turns (built by history.py) and stored with the
user's turn in one transaction."""

from __future__ import annotations

import dataclasses

from taskgate.budgets import Quota
from taskgate.config import ConversationSettings
from taskgate.errors import NotFound
from taskgate.events import Events
from taskgate.events.topics import announce_queued
from taskgate.history import user_turn, with_history
from taskgate.models import ApiKey, Batch, Conversation, Message, Task
from taskgate.request_files import RequestFiles
from taskgate.routing import Routing
from taskgate.store import SqlStore
from taskgate.submission import Submission, checked_route, new_task


class Conversations:
    def __init__(
        self,
        settings: ConversationSettings,
        store: SqlStore,
        events: Events,
        routing: Routing,
        request_files: RequestFiles,
    ) -> None:
        self.settings = settings
        self.store = store
        self.events = events
        self.routing = routing
        self.request_files = request_files

    async def create(self, key: ApiKey, title: str = "", api: str | None = None) -> Conversation:
        """A new conversation of the key's tenant, started through ``api`` (None: taskgate's
        own), whose history then answers in that API's shape."""
        return await self.store.conversations.create(key.tenant, title, api)

    async def get(self, key: ApiKey, conversation_id: str) -> tuple[Conversation, list[Message]]:
        c = await self.store.conversations.get(conversation_id, key.scope)
        if c is None:
            raise NotFound(f"no conversation {conversation_id!r}")
        return c, await self.store.conversations.messages(c.id)

    async def latest(self, key: ApiKey, api: str | None, limit: int) -> list[Conversation]:
        """Up to ``limit`` conversations the key may see that ``api`` started, the latest
        changed first."""
        return await self.store.conversations.latest(key.scope, api, limit)

    async def tasks(self, conversation: Conversation) -> list[Task]:
        """The kept tasks of a conversation (read with :meth:`get`), oldest first."""
        return await self.store.conversations.tasks(conversation.id)

    async def page(self, key: ApiKey, before_id: str | None, limit: int) -> list[Conversation]:
        """Up to ``limit`` conversations the key may see, the newest first, each older than
        ``before_id`` (the last of the previous page) if given."""
        return await self.store.conversations.find(key.scope, before_id, limit)

    async def delete(self, key: ApiKey, conversation_id: str) -> None:
        if not await self.store.conversations.delete(conversation_id, key.scope):
            raise NotFound(f"no conversation {conversation_id!r}")

    async def submit_turn(
        self,
        key: ApiKey,
        sub: Submission,
        models: list[str],
        batch: Batch | None = None,
        quotas: tuple[Quota, ...] = (),
    ) -> list[Task]:
        """A submission as a turn of its conversation (of the key's tenant): each model's
        chat task gets the earlier turns as context (a task of another kind, an image, just
        joins the history); the user's turn is kept with the tasks, in one transaction.
        Reached through ``Gateway.submit`` and ``submit_batch``, which check it first."""
        assert sub.conversation_id is not None
        for m in models:  # refuse before anything is read or stored
            checked_route(self.routing, sub, m)
        conversation = await self.store.conversations.get(sub.conversation_id, key.tenant)
        if conversation is None:
            raise NotFound(f"no conversation {sub.conversation_id!r}")
        history = await self.store.conversations.messages(conversation.id)
        batch_id = batch.id if batch else None
        async with self.request_files.extracted(key, sub.input) as (input_, _):
            sub = dataclasses.replace(sub, input=input_)
            news = [
                new_task(self.routing, key, self._sent(sub, history, m), batch_id, m, quotas)
                for m in models
            ]
            tasks = await self.store.conversations.add_turn(
                conversation.id, user_turn(sub.input), news, batch
            )
        await announce_queued(self.events, tasks)
        return tasks

    def _sent(self, sub: Submission, history: list[Message], model: str) -> Submission:
        """What ``model`` is sent of a turn: a chat, with the earlier turns first; any other
        kind (an image) as it is, joining the history uncontexted."""
        if sub.kind != "chat":
            return sub
        return dataclasses.replace(
            sub, input=with_history(sub.input, history, model, self.settings)
        )
