"""Waiting on one task for an OpenAI-dialect caller, who holds the HTTP request open until the
answer: :class:`Watch` follows the task's events (``task:{id}``) from its submission to its end,
and :class:`ChatStream` turns its streamed progress into ``chat.completion.chunk`` s.

The wait is bounded (:func:`max_wait`): the queue timeout the task was given, then every
attempt its route and fallbacks allow, each with its run timeout and the longest backoff, plus
:data:`SLACK`. When that passes, or when the client hangs up, the task is cancelled: nobody is
left to read its answer, and its backend slot is better spent on someone who is.

Events are hints (see events/base.py): a waiter that hears nothing re-reads the store every
:data:`REREAD_SECONDS`, and a stream that missed some deltas sends what is missing of the final
text before it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response

from taskgate.api import openai_wire as wire
from taskgate.events import Message, Subscription
from taskgate.gateway import Gateway, ended_task
from taskgate.models import ApiKey, Status, Task
from taskgate.submission import Submission

log = logging.getLogger("taskgate.openai")

REREAD_SECONDS = 5.0  # re-read the store this often without an event
# when to start watching for the client hanging up: the watch is a task of its own, and most
# calls end sooner (one that hangs up meanwhile is cancelled this much later)
WATCH_CLIENT_AFTER = 0.25
SLACK = 5.0  # seconds of the wait beyond the task's own limits
GONE: Message = {"type": "client_gone"}
ENDINGS = frozenset({"finished", GONE["type"]})  # what a waiter for the end hears


def _finished(task: Task) -> Message:
    return {"type": "finished", "task_id": task.id, "status": task.status.value}


class WaitEnded(Exception):
    """The wait stopped before the task ended: the client left or the time ran out (the task
    is cancelled by then). ``answer`` is what to send, if anyone is listening."""

    def __init__(self, answer: Response) -> None:
        super().__init__("wait ended")
        self.answer = answer


def max_wait(gw: Gateway, task: Task) -> float:
    """Seconds to wait for a task: its queue wait, then every attempt it may make."""
    budget = sum(
        r.retry.max_attempts * ((task.run_timeout or r.timeout) + r.retry.backoff_max)
        for r in gw.routing.reachable(gw.settings.route(task.route))
    )
    queued = task.deadline - task.created_at if task.deadline is not None else 0.0
    return queued + budget + SLACK


class Watch:
    """A task submitted for a waiting client, and its events from the moment it exists."""

    def __init__(self, gw: Gateway, key: ApiKey, request: Request) -> None:
        self.gw = gw
        self.key = key
        self.request = request
        self.task: Task | None = None
        self._created = False  # this request made the task (else: an idempotent replay)
        self._events: Subscription | None = None
        self._following: contextlib.AbstractAsyncContextManager[Subscription] | None = None
        self._gone: asyncio.Future[Any] | None = None
        self._watch_client: asyncio.TimerHandle | None = None
        self._deadline = self._limit = 0.0

    @property
    def current(self) -> Task:
        assert self.task is not None, "submit first"
        return self.task

    async def submit(self, sub: Submission) -> Task:
        """Accept the task, then follow it at once: the scheduler cannot start it (nor emit
        progress) before this coroutine next yields, so no event is missed in one process."""
        task, self._created = await self.gw.submit(self.key, sub)
        self.task = task
        self._following = self.gw.events.subscribe(f"task:{task.id}")
        self._events = await self._following.__aenter__()
        self._limit = max_wait(self.gw, task)
        self._deadline = time.monotonic() + self._limit
        loop = asyncio.get_running_loop()
        self._watch_client = loop.call_later(WATCH_CLIENT_AFTER, self._watch_for_hang_up)
        if task.terminal:  # an idempotent replay of a task that has ended
            self._events.put(_finished(task) | {"ended": task})
        return task

    def _watch_for_hang_up(self) -> None:
        self._gone = asyncio.ensure_future(self.request.receive())  # returns on hang-up
        self._gone.add_done_callback(self._on_gone)

    def _on_gone(self, fut: asyncio.Future[Any]) -> None:
        if self._events is not None and not fut.cancelled():
            self._events.put(GONE)

    async def next(self, tick: float) -> Message | None:
        """The task's next event; ``finished`` once it has ended (even if that event was
        lost); None after ``tick`` seconds without news. Raises :class:`WaitEnded`."""
        assert self._events is not None
        left = self._deadline - time.monotonic()
        message = None if left <= 0 else await self._events.get(min(tick, left, REREAD_SECONDS))
        if message is GONE or left <= 0:
            why = "the client closed the connection" if left > 0 else "the wait limit passed"
            return await self._give_up(why)
        if message is None:
            task = await self.reread()
            return _finished(task) if task.terminal else None
        return message

    async def ended(self) -> Task:
        """Wait for the end; the task as it ended."""
        assert self._events is not None
        self._events.only = ENDINGS  # narrowed now: a stream follows every event
        while True:
            message = await self.next(REREAD_SECONDS)
            if message is not None and message.get("type") == "finished":
                return await self.final(message)

    async def final(self, finished: Message) -> Task:
        """The ended task: the one the ``finished`` event carries, if it does (in-process
        events can, and save a read of the store per call), else as the store has it."""
        if (task := ended_task(finished, self.current.id)) is not None:
            self.task = task
            return task
        return await self.reread()

    async def reread(self) -> Task:
        self.task = await self.gw.get(self.key, self.current.id)
        return self.task

    async def _give_up(self, why: str) -> Message:
        """Cancel the task and raise :class:`WaitEnded`; unless it has just ended."""
        task = await self.reread()
        if not task.terminal and self._created:  # an idempotent replay's task is not ours
            self.task = task = await self.gw.cancel(self.key, task.id)
        if task.terminal and task.status is not Status.CANCELLED:
            return _finished(task)
        log.info("openai dialect: gave up on task %s: %s", task.id, why)
        ending = "was cancelled" if task.status is Status.CANCELLED else "is still running"
        raise WaitEnded(
            wire.error(
                504,
                f"task {task.id} did not finish within {self._limit:.0f}s and {ending}",
                "server_error",
                code="timeout",
                headers={"x-taskgate-task-id": task.id},
            )
        )

    async def close(self) -> None:
        """Stop following; a task that has not ended has nobody to answer, so it is
        cancelled (shielded: this also runs when the request itself is cancelled).
        Safe to call twice."""
        if self._watch_client is not None:
            self._watch_client.cancel()
        if self._gone is not None:
            self._gone.remove_done_callback(self._on_gone)
            self._gone.cancel()
        if self.task is not None and not self.task.terminal and self._created:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                if not (await self.reread()).terminal:
                    self.task = await self.gw.cancel(self.key, self.task.id)
        following, self._following = self._following, None
        if following is not None:
            await following.__aexit__(None, None, None)


@dataclass
class _Sent:
    """What the client has of one field (``content`` or ``reasoning_content``)."""

    parts: list[str] = field(default_factory=list)
    length: int = 0
    replayed: int | None = None  # characters of a retried attempt, until it passes ``length``

    def take(self, piece: str) -> str:
        """The part of a new delta the client does not have yet."""
        if self.replayed is not None:
            self.replayed += len(piece)
            ahead = self.replayed - self.length
            if ahead <= 0:
                return ""
            piece, self.replayed = piece[len(piece) - ahead :], None
        self.parts.append(piece)
        self.length += len(piece)
        return piece

    def rest(self, final: Any) -> str:
        """What is missing of the final text, if what was sent begins it."""
        if not isinstance(final, str) or len(final) <= self.length:
            return ""
        return self.take(final[self.length :]) if final.startswith("".join(self.parts)) else ""


class ChatStream:
    """The chunks of one streamed chat completion, built from the task's progress events.

    A retried attempt streams again from its start; its deltas are held back until they pass
    what the client already has (a backend that answers differently the second time cannot be
    unsent). At the end, what is missing of the final text (deltas lost between processes) is
    sent before the tool calls, the ``finish_reason``, the usage and ``[DONE]``.
    """

    FIELDS = (("reasoning_delta", "reasoning_content"), ("delta", "content"))

    def __init__(self, task: Task, include_usage: bool) -> None:
        self.task = task
        self.include_usage = include_usage
        self.sent = {name: _Sent() for _, name in self.FIELDS}
        self.attempt: int | None = None

    def opening(self) -> bytes:
        return wire.chunk(self.task, {"role": "assistant", "content": ""})

    def on_event(self, message: Message) -> bytes:
        kind = message.get("type")
        if kind == "retrying" or (kind == "started" and self._new_attempt(message)):
            for sent in self.sent.values():
                sent.replayed = 0
        data = message.get("data")
        if kind != "progress" or not isinstance(data, dict):
            return b""
        out = b""
        for key, name in self.FIELDS:
            piece = data.get(key)
            if isinstance(piece, str) and piece and (new := self.sent[name].take(piece)):
                out += wire.chunk(self.task, {name: new})
        return out

    def _new_attempt(self, message: Message) -> bool:
        before, self.attempt = self.attempt, message.get("attempt")
        return before is not None and self.attempt != before

    def closing(self, task: Task) -> bytes:
        """The end of the stream for an ended task: the rest, or the error."""
        if task.status is not Status.SUCCESS:
            return wire.stream_error(task) + wire.DONE
        output = wire.output_of(task)
        out = b""
        for name, final in (
            ("reasoning_content", output.get("reasoning")),
            ("content", output.get("text")),
        ):
            if rest := self.sent[name].rest(final):
                out += wire.chunk(task, {name: rest})
        calls = output.get("tool_calls") or []
        if calls:
            indexed = [{"index": i, **c} for i, c in enumerate(calls)]
            out += wire.chunk(task, {"tool_calls": indexed})
        out += wire.chunk(task, {}, wire.finish_reason(output))
        if self.include_usage:
            out += wire.chunk(task, None, usage=wire.usage_of(task))
        return out + wire.DONE
