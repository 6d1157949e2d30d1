"""Events shared between processes: every process publishes on one channel and hears all.

A message is delivered to the publishing process's own subscribers at once (with whatever
in-process extras it carries, such as the ended task), and sent to the other processes as
JSON, where anything that is not JSON becomes ``null``. Each process drops its own messages
when they come back. One channel for every topic, filtered where it arrives, keeps
subscribing synchronous and free: no LISTEN or SUBSCRIBE per waiter, so no event is missed
between subscribing and the transport confirming it.

Sending is batched: a sender task takes whatever has queued up and sends it in one round
trip. Both loops reconnect with backoff when the connection fails; events lost meanwhile
are hints only, and every waiter re-reads the store at a bounded interval.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from taskgate.events.base import Message
from taskgate.events.memory import MemoryEvents

log = logging.getLogger("taskgate.events")

CHANNEL = "taskgate_events"
QUEUE_MAX = 10_000  # messages waiting to be sent; beyond it the oldest are dropped
SEND_BATCH = 500
RECONNECT_MAX = 5.0  # seconds between attempts to reconnect, at most
HEALTHY_AFTER = 10.0  # seconds a connection must have lasted for the backoff to start over


def _null(_: Any) -> None:
    return None


# orjson would write a dataclass (the ended Task) out in full; it stays in-process
DATACLASS_AS_NULL = orjson.OPT_PASSTHROUGH_DATACLASS


class Broadcast(MemoryEvents, abc.ABC):
    max_payload: int | None = None  # bytes a transport carries in one message

    def __init__(self) -> None:
        super().__init__()
        self.origin = os.urandom(6).hex()
        self._seq = 0
        self._outbox: asyncio.Queue[str] = asyncio.Queue(QUEUE_MAX)
        self._loops: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()  # the listener is listening (for tests and health)

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
        self._outbox.put_nowait(payload)

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
        """Connect, listen on CHANNEL passing each payload to ``_received``, set
        ``connected``; raise when the connection fails."""

    @abc.abstractmethod
    async def _send(self, payloads: list[str]) -> None:
        """Publish the payloads on CHANNEL, in order, in as few round trips as possible."""

    @abc.abstractmethod
    async def _reset(self, what: str) -> None:
        """Close the connection of the ``listen`` or the ``send`` loop (it reopens it)."""
