"""The store, which is also the queue. ``from_url`` picks the backend from a URL."""

from taskgate.store.base import NewTask, Outcome, Purged, Scope, TaskFilter
from taskgate.store.sql import SqlStore


def from_url(url: str) -> SqlStore:
    """``sqlite:///PATH`` (embedded default) or ``postgresql://...`` (needs the postgres extra)."""
    if url.startswith(("postgresql", "postgres://")):
        try:
            import asyncpg  # noqa: F401
        except ImportError as exc:
            raise RuntimeError("PostgreSQL needs: pip install 'taskgate[postgres]'") from exc
    return SqlStore(url)


__all__ = ["NewTask", "Outcome", "Purged", "Scope", "SqlStore", "TaskFilter", "from_url"]
