"""Whether a process is alive (it answers) and ready (it can do its work): its store
answers and is migrated, its events channel is connected, and its dispatch loop runs (in a
process that runs the scheduler). For orchestrators and the compose file's health checks;
the answers carry no counts, so they need no key."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from taskgate.events import Events
from taskgate.store import SqlStore

CHECK_TIMEOUT = 3.0  # seconds a check may take before it counts as failed


class Readiness:
    def __init__(
        self, store: SqlStore, events: Events, dispatching: Callable[[], bool] | None = None
    ) -> None:
        self.store = store
        self.events = events
        self.dispatching = dispatching  # None: this process runs no scheduler

    async def check(self) -> dict[str, Any]:
        """``{"status": "ready" | "not ready", "checks": {name: bool}}``."""
        checks = {"store": await self._store(), "events": self.events.listening()}
        if self.dispatching is not None:
            checks["dispatch"] = self.dispatching()
        return {"status": "ready" if all(checks.values()) else "not ready", "checks": checks}

    async def _store(self) -> bool:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                return await self.store.db.ready()
        except Exception:
            return False
