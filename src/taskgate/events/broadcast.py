"""Events shared between processes, over a transport's channels.

A message is delivered to the publishing process's own subscribers at once (with whatever
in-process extras it carries, such as the ended task), and sent to the other processes as
JSON, where anything that is not JSON becomes ``null``. Each process drops its own messages
when they come back.

A process hears only the channels its subscribers need (``channel_of``): every process the
general channel (cancels, reloads, revoked keys, ...); ``taskgate_tasks`` (``task:{id}``)
from its first waiter on a task (a gateway; a worker never waits on tasks, so it never
decodes the cluster's task events); and the channel of a route's ``queue:{route}`` while
one of its lanes serves that route (a worker: only the workers of a route wake for its
work). Topics share their channel and are filtered where they arrive, so a waiter on a new
task costs no LISTEN: the first subscriber of a channel waits until the transport has
confirmed it (nothing published after that is missed), later ones wait for nothing. A
channel stays heard for ``LINGER`` seconds after its last subscriber leaves, so that
waiters coming and going do not listen and unlisten each time.

Sending is batched: a sender task takes whatever has queued up and sends it in one round
trip. Both loops reconnect with backoff when the connection fails, and the listening one
listens again to every channel its subscribers need; events lost meanwhile are hints
only, and every waiter re-reads the store at a bounded interval.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from taskgate.events.base import Message, Subscription
from taskgate.events.memory import MemoryEvents

log = logging.getLogger("taskgate.events")

CHANNEL = "taskgate_events"  # every topic but those below; every process hears it
TASKS_CHANNEL = "taskgate_tasks"  # task:{id}
QUEUE_CHANNEL = "taskgate_queue_"  # + a digest of the route: queue:{route}
LINGER = 30.0  # seconds a channel is still heard after its last subscriber left
CONFIRM_TIMEOUT = 5.0  # seconds a first subscriber waits for the transport's confirmation
QUEUE_MAX = 10_000  # messages waiting to be sent; beyond it the oldest are dropped
SEND_BATCH = 500
RECONNECT_MAX = 5.0  # seconds between attempts to reconnect, at most
HEALTHY_AFTER = 10.0  # seconds a connection must have lasted for the backoff to start over


def _null(_: Any) -> None:
    return None


# orjson would write a dataclass (the ended Task) out in full; it stays in-process
DATACLASS_AS_NULL = orjson.OPT_PASSTHROUGH_DATACLASS


def channel_of(topic: str) -> str:
    """The channel a topic's messages travel on (a route's name may be anything: its
    channel is named by a digest, a valid name on every transport)."""
    if topic.startswith("task:"):
        return TASKS_CHANNEL
    if topic.startswith("queue:"):
        return QUEUE_CHANNEL + hashlib.sha1(topic[6:].encode()).hexdigest()[:24]
    return CHANNEL


class Broadcast(MemoryEvents, abc.ABC):
    max_payload: int | None = None  # bytes a transport carries in one message

    def __init__(self) -> None:
        super().__init__()
        self.origin = os.urandom(6).hex()
        self._seq = 0
        # (channel, payload) to send
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue(QUEUE_MAX)
        self._loops: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()  # the listener is listening (for tests and health)
        # channels other than CHANNEL: the subscriptions that need each; when the last of
        # them left; and whether the listener hears it (done: confirmed on this connection)
        self._follows: dict[str, int] = {}
        self._idle: dict[str, float] = {}
        self._heard: dict[str, asyncio.Future[None]] = {}

    def listening(self) -> bool:
        return self.connected.is_set()

    async def open(self) -> None:
        self._loops = [
            asyncio.create_task(self._forever(self._listen, "listen"), name="events-listen"),
            asyncio.create_task(self._forever(self._send_loop, "send"), name="events-send"),
        ]

    async def close(self) -> None:
        """Send what is still queued (for a second at most), then disconnect."""
        if self._loops:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._outbox.join()
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self._closed()

    async def _closed(self) -> None:
        """Release the connections once the loops have stopped."""
        await self._reset("listen")
        await self._reset("send")

    async def publish(self, topic: str, message: Message) -> None:
        await super().publish(topic, message)
        self._seq += 1  # also keeps equal messages distinct (PostgreSQL folds duplicates)
        payload = self._encode({"o": self.origin, "n": self._seq, "t": topic, "m": message})
        if self._outbox.full():
            self._outbox.get_nowait()
            self._outbox.task_done()
            log.warning("events: send queue full, dropped the oldest message")
        self._outbox.put_nowait((channel_of(topic), payload))

    @contextlib.asynccontextmanager
    async def subscribe(
        self, topic: str, only: frozenset[str] | None = None
    ) -> AsyncIterator[Subscription]:
        channel = channel_of(topic)
        async with super().subscribe(topic, only) as sub:
            try:
                await self._follow(channel)
                yield sub
            finally:
                self._unfollow(channel)

    async def _follow(self, channel: str) -> None:
        """Hear ``channel`` from now on (counted at once, before any wait): the first
        subscriber waits until the transport has confirmed it. While disconnected, the
        listener hears it once it connects again."""
        if channel == CHANNEL:
            return
        self._follows[channel] = self._follows.get(channel, 0) + 1
        self._idle.pop(channel, None)
        if not self.connected.is_set():
            return
        heard = self._heard.get(channel)
        if heard is None or (heard.done() and not _succeeded(heard)):
            heard = self._heard[channel] = asyncio.ensure_future(self._hear(channel))
        # A failure is the connection's: the listening loop reconnects and hears it again.
        # (asyncio.wait, not wait_for: it raises nothing, not even when the listener's end
        # cancels ``heard``, which would have cancelled this subscriber.)
        await asyncio.wait([heard], timeout=CONFIRM_TIMEOUT)
        if heard.done() and not heard.cancelled():
            heard.exception()  # seen: not logged as "never retrieved"

    def _unfollow(self, channel: str) -> None:
        if channel != CHANNEL:
            self._follows[channel] -= 1
            if not self._follows[channel]:
                self._idle[channel] = time.monotonic()

    async def _hear_all(self) -> None:
        """Hear CHANNEL and every channel subscribers need, on a new connection: then
        ``connected``. (No await between the last look and setting it: a subscriber that
        came meanwhile is heard too.)"""
        self._heard = {}
        await self._hear(CHANNEL)
        heard: set[str] = set()
        while todo := set(self._follows) - heard:
            for channel in todo:
                await self._hear(channel)
            heard |= todo
        for channel in heard:
            self._heard[channel] = done = asyncio.get_running_loop().create_future()
            done.set_result(None)
        self.connected.set()

    async def _drop_idle(self) -> None:
        """Stop hearing the channels that have had no subscriber for ``LINGER`` seconds."""
        now = time.monotonic()
        for channel, since in list(self._idle.items()):
            if now - since >= LINGER and not self._follows.get(channel):
                del self._idle[channel]
                self._follows.pop(channel, None)
                if self._heard.pop(channel, None) is not None:
                    await self._unhear(channel)

    def _encode(self, envelope: dict[str, Any]) -> str:
        payload = orjson.dumps(envelope, default=_null, option=DATACLASS_AS_NULL).decode()
        if self.max_payload is not None and len(payload.encode()) > self.max_payload:
            # too big for the transport: send what says which task changed; receivers re-read
            m = envelope["m"]
            envelope["m"] = {k: m[k] for k in ("type", "task_id", "status") if k in m}
            envelope["m"]["truncated"] = True
            payload = orjson.dumps(envelope, default=_null, option=DATACLASS_AS_NULL).decode()
        return payload

    def _received(self, payload: str | bytes) -> None:
        try:
            envelope = orjson.loads(payload)
            if envelope["o"] == self.origin:
                return
            topic, message = envelope["t"], envelope["m"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("events: dropped a malformed message %.200r", payload)
            return
        for sub in self._subs.get(topic, ()):
            sub.put(message)

    async def _send_loop(self) -> None:
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty() and len(batch) < SEND_BATCH:
                batch.append(self._outbox.get_nowait())
            try:
                await self._send(batch)
            finally:  # sent, or lost with the connection: either way no longer waiting
                for _ in batch:
                    self._outbox.task_done()

    async def _forever(self, loop: Callable[[], Awaitable[None]], what: str) -> None:
        """Run a loop; when its connection fails, reopen that one with backoff (which starts
        over once a connection has lasted a while)."""
        delay = 0.1
        while True:
            started = time.monotonic()
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if what == "listen":
                    self.connected.clear()
                if time.monotonic() - started > HEALTHY_AFTER:
                    delay = 0.1
                log.warning("events: %s failed (%s); reconnecting in %.1fs", what, exc, delay)
                with contextlib.suppress(Exception):
                    await self._reset(what)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)

    @abc.abstractmethod
    async def _listen(self) -> None:
        """Connect, hear the channels (``_hear_all``, which sets ``connected``) passing each
        payload to ``_received``, and ``_drop_idle`` now and then; raise when the
        connection fails."""

    @abc.abstractmethod
    async def _hear(self, channel: str) -> None:
        """Listen on ``channel`` on the listening connection; return once the transport has
        confirmed it."""

    @abc.abstractmethod
    async def _unhear(self, channel: str) -> None:
        """Stop listening on ``channel``."""

    @abc.abstractmethod
    async def _send(self, batch: list[tuple[str, str]]) -> None:
        """Publish each (channel, payload), in order, in as few round trips as possible."""

    @abc.abstractmethod
    async def _reset(self, what: str) -> None:
        """Close the connection of the ``listen`` or the ``send`` loop (it reopens it)."""


def _succeeded(future: asyncio.Future[None]) -> bool:
    return not future.cancelled() and future.exception() is None
