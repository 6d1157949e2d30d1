"""API-key authentication. Keys are stored hashed; a verified key is cached for
``auth_cache_seconds`` so that a request costs no store read (a revoked key stops working
within that time; revoking through the API takes effect at once on this process)."""

from __future__ import annotations

import time

from fastapi import Request

from taskgate.errors import Forbidden, Unauthorized
from taskgate.gateway import Gateway
from taskgate.models import ApiKey
from taskgate.store import SqlStore


class KeyRing:
    def __init__(self, store: SqlStore, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self._cache: dict[str, tuple[ApiKey, float]] = {}

    async def verify(self, secret: str) -> ApiKey:
        hit = self._cache.get(secret)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        key = await self.store.key_for_secret(secret)
        if key is None or not key.active:
            self._cache.pop(secret, None)
            raise Unauthorized("invalid or revoked API key")
        if self.ttl > 0:
            self._cache[secret] = (key, now + self.ttl)
        return key

    def forget(self, key_id: str) -> None:
        for secret, (key, _) in list(self._cache.items()):
            if key.id == key_id:
                del self._cache[secret]


def secret_from(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    token = request.headers.get("x-api-key", "")
    if token:
        return token
    raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")


async def caller(request: Request) -> ApiKey:
    """FastAPI dependency: the key that made this request."""
    keys: KeyRing = request.app.state.keys
    return await keys.verify(secret_from(request))


async def admin(request: Request) -> ApiKey:
    key = await caller(request)
    if not key.admin:
        raise Forbidden("this needs an admin key")
    return key


def gateway_of(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


async def gateway(request: Request) -> Gateway:
    """The Gateway, as a FastAPI dependency (async: FastAPI runs sync ones in a thread pool)."""
    return gateway_of(request)
