"""Events between processes (wake waiters and workers, cancel running calls, drop revoked
keys): ``from_url`` picks in-process, PostgreSQL LISTEN/NOTIFY or Redis pub/sub."""

from taskgate.events.base import Events, Message, Subscription
from taskgate.events.memory import MemoryEvents

POSTGRES = ("postgresql://", "postgres://", "postgresql+asyncpg://")


def from_url(url: str | None, store_url: str = "") -> Events:
    """``memory://``: in-process; ``postgresql://...``: LISTEN/NOTIFY; ``redis://...``: Redis
    pub/sub. ``None``: LISTEN/NOTIFY on the store's database if that is PostgreSQL, else
    in-process."""
    if url is None:
        url = store_url if store_url.startswith(POSTGRES) else "memory://"
    if url in ("", "memory://"):
        return MemoryEvents()
    if url.startswith(POSTGRES):
        try:
            from taskgate.events.postgres import PostgresEvents
        except ImportError as exc:
            raise RuntimeError("PostgreSQL events need: pip install 'taskgate[postgres]'") from exc
        return PostgresEvents(url)
    if url.startswith(("redis://", "rediss://", "unix://")):
        try:
            from taskgate.events.redis import RedisEvents
        except ImportError as exc:
            raise RuntimeError("Redis events need: pip install 'taskgate[redis]'") from exc
        return RedisEvents(url)
    raise ValueError(
        f"unsupported events URL {url!r}: use memory://, postgresql://... or redis://..."
    )


__all__ = ["Events", "MemoryEvents", "Message", "Subscription", "from_url"]
