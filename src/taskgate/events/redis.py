"""Events over Redis pub/sub (redis-py's asyncio client), for when a Redis URL is set.

Pub/sub channels belong to the whole Redis server, not to a db number: on the wire a channel
carries the URL's db (``taskgate_events:3``), so deployments, or parallel test workers, that
share a server on different db numbers do not hear each other. db 0 keeps the plain names,
which processes of earlier versions use."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis

from taskgate.events.broadcast import CHANNEL, Broadcast

TICK = 5.0  # seconds between looks for channels no longer needed (and health checks)


def db_suffix(url: str) -> str:
    """What the channels' names carry for the Redis URL's db number."""
    db = int(aioredis.ConnectionPool.from_url(url).connection_kwargs.get("db", 0))
    return "" if db == 0 else f":{db}"


class RedisEvents(Broadcast):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._suffix = db_suffix(url)  # a channel's name on the wire: channel + suffix
        self._client: aioredis.Redis | None = None
        self._pubsub: Any = None  # the listening loop's, while it runs
        # SUBSCRIBEs sent and not yet confirmed: the loop reads the confirmations
        self._confirming: dict[str, asyncio.Future[None]] = {}

    def _redis(self) -> aioredis.Redis:
        if self._client is None:  # health checks notice a dead connection while idle
            self._client = aioredis.from_url(
                self.url, health_check_interval=5, socket_connect_timeout=10
            )
        return self._client

    async def _listen(self) -> None:
        async with self._redis().pubsub() as pubsub:
            self._pubsub = pubsub
            listening = None
            try:
                # the first SUBSCRIBE connects it (reading needs a connection); the rest, and
                # the confirmations, while the loop below reads
                wire = CHANNEL + self._suffix
                self._confirming[wire] = asyncio.get_running_loop().create_future()
                await pubsub.subscribe(wire)
                listening = asyncio.ensure_future(self._hear_all())
                tick = time.monotonic() + TICK
                while True:
                    message = await pubsub.get_message(timeout=TICK) or {"type": None}
                    if message["type"] in ("message", "pmessage"):
                        self._received(message["data"])
                    elif message["type"] == "subscribe":
                        self._confirmed(message["channel"])
                    if listening.done():
                        listening.result()  # raise what made it fail
                    if time.monotonic() >= tick:  # (messages may never leave a pause)
                        tick = time.monotonic() + TICK
                        await self._drop_idle()
            finally:
                self._pubsub = None
                if listening is not None:
                    listening.cancel()
                for waiting in self._confirming.values():
                    waiting.cancel()
                self._confirming.clear()

    def _confirmed(self, channel: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        waiting = self._confirming.pop(name, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    async def _hear(self, channel: str) -> None:
        if self._pubsub is None:
            raise ConnectionError("not listening")
        wire = channel + self._suffix
        waiting = self._confirming.get(wire)
        if waiting is None:
            waiting = self._confirming[wire] = asyncio.get_running_loop().create_future()
            try:
                await self._pubsub.subscribe(wire)
            except BaseException:  # not sent: the next follower sends it again
                self._confirming.pop(wire, None)
                raise
        await asyncio.shield(waiting)  # the listening loop reads the confirmation

    async def _unhear(self, channel: str) -> None:
        if self._pubsub is not None:
            await self._pubsub.unsubscribe(channel + self._suffix)

    async def _send(self, batch: list[tuple[str, str]]) -> None:
        async with self._redis().pipeline(transaction=False) as pipe:
            for channel, payload in batch:
                pipe.publish(channel + self._suffix, payload)
            await pipe.execute()

    async def _reset(self, what: str) -> None:
        """Nothing to do: the pub/sub connection closes with its ``async with``, and the
        client's pool drops a broken connection by itself."""

    async def _closed(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
