"""Backend instances registered at run time: one row per route and name, refreshed by
re-registering, kept alive by heartbeats, removed by their owner or expired when the
heartbeats stop. Every process reads them all (a handful of rows) to add the live ones to
its routes (see ``taskgate.ops.live``); expired rows are kept a while to be seen, then
purged."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from taskgate.store.database import Conn, Database, rows
from taskgate.store.schema import instances as table

# what an instance's own registration sets (the rest is bookkeeping)
CONFIG_FIELDS = (
    "name",
    "endpoint",
    "max_concurrency",
    "weight",
    "secret_env",
    "requests_per_minute",
    "tokens_per_minute",
    "options",
)


@dataclass(frozen=True, slots=True)
class Registered:
    route: str
    name: str
    endpoint: str | None = None
    max_concurrency: int = 8
    weight: float = 1.0
    secret_env: str | None = None  # an environment variable of the processes that call it
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    ttl: float | None = None  # None: kept until removed
    registered_at: float = 0.0
    heartbeat_at: float = 0.0
    expires_at: float | None = None

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now

    def fields(self) -> dict[str, Any]:
        """What makes it a :class:`taskgate.config.Instance`."""
        return {name: getattr(self, name) for name in CONFIG_FIELDS}


class Instances:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def register(self, new: Registered) -> tuple[Registered, bool]:
        """Add an instance, or refresh the one of that route and name (its settings and
        time to live); its heartbeat counts from now. Returns it and whether it is new."""
        now = time.time()
        row = {
            **asdict(new),
            "registered_at": now,
            "heartbeat_at": now,
            "expires_at": now + new.ttl if new.ttl is not None else None,
        }
        kept = await self._db.write(_upsert, row)
        return kept, kept.registered_at == now

    async def heartbeat(self, route: str, name: str) -> Registered | None:
        """Keep an instance for another time to live (expired or not); None if unknown."""
        now = time.time()
        stmt = (
            table.update()
            .where(table.c.route == route, table.c.name == name)
            .values(heartbeat_at=now, expires_at=table.c.ttl + now)  # NULL stays NULL
            .returning(*table.c)
        )
        found = await self._db.write(rows, stmt)
        return _record(found[0]) if found else None

    async def remove(self, route: str, name: str) -> bool:
        stmt = (
            table.delete()
            .where(table.c.route == route, table.c.name == name)
            .returning(table.c.name)
        )
        return bool(await self._db.write(rows, stmt))

    async def find(self, route: str | None = None) -> list[Registered]:
        """Every instance registered (on one route, if given), expired ones too."""
        q = sa.select(table).order_by(table.c.route, table.c.name)
        if route is not None:
            q = q.where(table.c.route == route)
        return [_record(r) for r in await self._db.read(rows, q)]

    async def purge(self, expired_before: float) -> int:
        """Forget the instances that expired before then."""
        stmt = table.delete().where(table.c.expires_at < expired_before).returning(table.c.name)
        return len(await self._db.write(rows, stmt))


def _upsert(conn: Conn, row: dict[str, Any]) -> Registered:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table).values(**row)
    changed = {k: stmt.excluded[k] for k in row if k not in ("route", "name", "registered_at")}
    upsert = stmt.on_conflict_do_update(index_elements=["route", "name"], set_=changed)
    return _record(conn.execute(upsert.returning(*table.c)).mappings().one())


def _record(row: Any) -> Registered:
    return Registered(**dict(row))
