"""Events over Redis pub/sub (redis-py's asyncio client), for when a Redis URL is set."""

from __future__ import annotations

import redis.asyncio as aioredis

from taskgate.events.broadcast import CHANNEL, Broadcast


class RedisEvents(Broadcast):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._client: aioredis.Redis | None = None

    def _redis(self) -> aioredis.Redis:
        if self._client is None:  # health checks notice a dead connection while idle
            self._client = aioredis.from_url(
                self.url, health_check_interval=5, socket_connect_timeout=10
            )
        return self._client

    async def _listen(self) -> None:
        async with self._redis().pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(CHANNEL)
            self.connected.set()
            while True:
                message = await pubsub.get_message(timeout=5.0)
                if message is not None:
                    self._received(message["data"])

    async def _send(self, payloads: list[str]) -> None:
        async with self._redis().pipeline(transaction=False) as pipe:
            for p in payloads:
                pipe.publish(CHANNEL, p)
            await pipe.execute()

    async def _reset(self, what: str) -> None:
        """Nothing to do: the pub/sub connection closes with its ``async with``, and the
        client's pool drops a broken connection by itself."""

    async def _closed(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
