"""API-key authentication. Keys are stored hashed; a verified key is cached for
``auth_cache_seconds`` so that a request costs no store read. A revoked key (through the API
of any gateway, or ``taskgate keys revoke``) is announced on the events channel and every
gateway drops it at once; if the announcement is lost (the channel is down), the key still
stops working within ``auth_cache_seconds``. A key whose limits change (it carries them) is
dropped the same way, and read again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from fastapi import Request

from taskgate.errors import Forbidden, Unauthorized
from taskgate.events import Events
from taskgate.events.topics import KEY_REVOKED, announce_key_changed, announce_revoked
from taskgate.gateway import Gateway
from taskgate.models import ApiKey
from taskgate.store import SqlStore


class KeyRing:
    def __init__(
        self, store: SqlStore, events: Events, ttl: float, anonymous_tenant: str | None = None
    ) -> None:
        self.store = store
        self.events = events
        self.ttl = ttl
        # who a request that sends no key is (auth.anonymous_tenant; None: refused)
        self.anonymous = (
            ApiKey("anonymous", anonymous_tenant, "anonymous", False, 0.0)
            if anonymous_tenant
            else None
        )
        self._cache: dict[str, tuple[ApiKey, float]] = {}
        self._forgotten = 0  # how many revocations this ring has heard of
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen for revocations from every process (this one included)."""
        subscribed = asyncio.Event()
        self._listener = asyncio.create_task(self._drop_revoked(subscribed), name="keyring")
        await subscribed.wait()

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)

    async def _drop_revoked(self, subscribed: asyncio.Event) -> None:
        async with self.events.subscribe(KEY_REVOKED) as sub:
            subscribed.set()
            while True:
                if (message := await sub.get()) is not None:
                    self.forget(str(message.get("key_id")))

    async def verify(self, secret: str) -> ApiKey:
        hit = self._cache.get(secret)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        forgotten = self._forgotten
        key = await self.store.keys.for_secret(secret)
        if key is None or not key.active:
            self._cache.pop(secret, None)
            raise Unauthorized("invalid or revoked API key")
        # a revocation heard during the read may be of this key, read just before it
        if self.ttl > 0 and forgotten == self._forgotten:
            self._cache[secret] = (key, now + self.ttl)
        return key

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key: refused here at once, and by the other gateways as soon as they hear
        of it. False if there is no such active key."""
        if not await self.store.keys.revoke(key_id):
            return False
        self.forget(key_id)
        await announce_revoked(self.events, key_id)
        return True

    async def set_limits(self, key_id: str, changes: Mapping[str, Any]) -> ApiKey | None:
        """Change a key's limits: in force here at once, and on the other gateways as soon
        as they hear of it. None if there is no such active key."""
        key = await self.store.keys.set_limits(key_id, changes)
        if key is not None:
            self.forget(key_id)
            await announce_key_changed(self.events, key_id)
        return key

    def forget(self, key_id: str) -> None:
        self._forgotten += 1
        for secret, (key, _) in list(self._cache.items()):
            if key.id == key_id:
                del self._cache[secret]


def has_key(request: Request) -> bool:
    """Whether the request sends a key at all."""
    return "authorization" in request.headers or "x-api-key" in request.headers


def secret_from(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    token = request.headers.get("x-api-key", "")
    if token:
        return token
    raise Unauthorized("missing API key: send it as 'Authorization: Bearer KEY'")


async def caller(request: Request) -> ApiKey:
    """FastAPI dependency: the key that made this request."""
    keys: KeyRing = request.app.state.keys
    if not has_key(request) and keys.anonymous is not None:
        return keys.anonymous
    return await keys.verify(secret_from(request))


async def admin(request: Request) -> ApiKey:
    key = await caller(request)
    if not key.admin:
        raise Forbidden("this needs an admin key")
    return key


# How the OpenAPI document (api/docs.py) says a key is sent. A route that depends on
# ``caller`` or ``admin`` is marked as needing one; a route that checks the key in its own
# body (the fast path's, ``/health``) says so with one of these as its ``openapi_extra``.
KEY_CHECKS = (caller, admin)
SCHEME = "bearer"
KEY_NEEDED: dict[str, Any] = {"security": [{SCHEME: []}]}
KEY_OPTIONAL: dict[str, Any] = {"security": [{}, {SCHEME: []}]}


def gateway_of(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


async def gateway(request: Request) -> Gateway:
    """The Gateway, as a FastAPI dependency (async: FastAPI runs sync ones in a thread pool)."""
    return gateway_of(request)
