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


def _null(_: Any) -> None:
    return None


class Broadcast(MemoryEvents, abc.ABC):
    max_payload: int | None = None  # bytes a transport carries in one message

    def __init__(self) -> None:
        super().__init__()
        self.origin = os.urandom(6).hex()
        self._seq = 0
        self._outbox: asyncio.Queue[str] = asyncio.Queue(QUEUE_MAX)
        self._loops: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()  # the listener is listening (for tests and health)

    async def open(self) -> None:
        self._loops = [
            asyncio.create_task(self._forever(self._listen, "listen"), name="events-listen"),
            asyncio.create_task(self._forever(self._send_loop, "send"), name="events-send"),
        ]

    async def close(self) -> None:
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self._disconnect()

    async def publish(self, topic: str, message: Message) -> None:
        await super().publish(topic, message)
        self._seq += 1  # also keeps equal messages distinct (PostgreSQL folds duplicates)
        payload = self._encode({"o": self.origin, "n": self._seq, "t": topic, "m": message})
        if self._outbox.full():
            self._outbox.get_nowait()
            log.warning("events: send queue full, dropped the oldest message")
        self._outbox.put_nowait(payload)

    def _encode(self, envelope: dict[str, Any]) -> str:
        payload = orjson.dumps(envelope, default=_null).decode()
        if self.max_payload is not None and len(payload.encode()) > self.max_payload:
            # too big for the transport: send what says which task changed; receivers re-read
            m = envelope["m"]
            envelope["m"] = {k: m[k] for k in ("type", "task_id", "status") if k in m}
            envelope["m"]["truncated"] = True
            payload = orjson.dumps(envelope, default=_null).decode()
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
            await self._send(batch)

    async def _forever(self, loop: Callable[[], Awaitable[None]], what: str) -> None:
        """Run a loop; when its connection fails, reconnect with backoff."""
        delay = 0.1
        while True:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                log.warning("events: %s failed (%s); reconnecting in %.1fs", what, exc, delay)
                with contextlib.suppress(Exception):
                    await self._disconnect()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)
            else:
                delay = 0.1

    @abc.abstractmethod
    async def _listen(self) -> None:
        """Connect, listen on CHANNEL passing each payload to ``_received``, set
        ``connected``; raise when the connection fails."""

    @abc.abstractmethod
    async def _send(self, payloads: list[str]) -> None:
        """Publish the payloads on CHANNEL, in order, in as few round trips as possible."""

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Close the connections (the loops open them again)."""
