"""Retention: ended tasks, with their attempts, logs, webhook deliveries and files, are purged
once they are older than ``retention.days`` (per tenant where ``retention.tenants`` says so).

:class:`Purger` runs purges: in the background of every scheduler process (``taskgate serve``,
``taskgate worker``) every ``retention.interval`` seconds, and by hand (``POST
/v1/admin/purge``, ``taskgate purge``). A purge goes in batches of ``retention.batch``, one
short transaction each (500 tasks with their records: about 15 ms here), pausing between
them as long as the last one took, so dispatch is never held up for long nor starved by a
backlog. On PostgreSQL one process at a time runs the background purge (an advisory lock:
the others skip their turn); a purge by hand runs whatever else is running, which is safe,
as each batch skips the rows another holds. What is purged, and what is kept (a file a kept
task or a conversation names), is in ``store/retention.py``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from taskgate.config import RetentionSettings, Settings
from taskgate.errors import Unavailable
from taskgate.files import Files
from taskgate.store import Purged, Scope, SqlStore

log = logging.getLogger("taskgate.retention")

LOCK = 7_364_023  # held by the process running the background purge (PostgreSQL)
DAY = 86400.0
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}
AGE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", re.IGNORECASE)


def parse_age(value: str | float) -> float:
    """An age in seconds from ``30s``, ``10m``, ``12h``, ``7d``, ``2w`` or a number of seconds;
    ValueError otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := AGE.fullmatch(value)):
        seconds = float(match.group(1)) * UNITS[match.group(2).lower() or "s"]
    else:
        raise ValueError(f"{value!r} is not an age: give seconds or 30s, 10m, 12h, 7d, 2w")
    if not 0 <= seconds < 1e12:
        raise ValueError(f"{value!r} is not an age: it must be 0 or more, and finite")
    return seconds


def scopes(conf: RetentionSettings, now: float, tenant: str | None = None) -> list[Scope]:
    """The configured retention as of ``now`` (of one ``tenant``, or of all): a scope per
    tenant with days of its own, and one for every other tenant; none for those kept
    forever (days null)."""
    if tenant is not None:
        days = conf.tenants.get(tenant, conf.days)
        return [] if days is None else [Scope(now - days * DAY, tenant)]
    own = [Scope(now - d * DAY, t) for t, d in sorted(conf.tenants.items()) if d is not None]
    if conf.days is None:
        return own
    return [*own, Scope(now - conf.days * DAY, None, tuple(sorted(conf.tenants)))]


Batch = Callable[[Scope, int], Awaitable[tuple[Purged, bool]]]


class Purger:
    def __init__(self, conf: RetentionSettings, store: SqlStore, files: Files) -> None:
        self.conf = conf
        self.store = store
        self.files = files

    async def use(self, settings: Settings, _: Any = None) -> None:
        """Purge as a reloaded config says, from its next run."""
        self.conf = settings.retention

    async def purge(self, found: Sequence[Scope], dry_run: bool = False) -> Purged:
        """Purge the scopes until nothing in them is left (a dry run: count what would go):
        the tasks of every scope first, then the files nothing names any more."""
        if dry_run:
            return await self.store.retention.due(found)
        started = time.monotonic()
        total = Purged()
        await self._each(found, self.store.retention.purge_tasks, total)
        await self._each(found, self.files.purge, total)
        self.store.db.observer.purged(total, time.monotonic() - started)
        return total

    async def _each(self, found: Sequence[Scope], batch: Batch, total: Purged) -> None:
        """Run ``batch`` on each scope until it says nothing more is due, pausing after each
        as long as it took: a long purge takes at most half of the store's time (and of the
        event loop's, where SQLite runs on it), and dispatch the rest."""
        for scope in found:
            more = True
            while more:
                started = time.monotonic()
                done, more = await batch(scope, self.conf.batch)
                total.add(done)
                await asyncio.sleep(time.monotonic() - started if more else 0)

    async def run_configured(self) -> Purged | None:
        """One purge of the configured retention, unless another process runs one now
        (None then, or when every tenant is kept forever)."""
        found = scopes(self.conf, time.time())
        if not found:
            return None
        async with self.store.db.exclusive(LOCK) as ours:
            if not ours:
                log.debug("another process is purging; skipped")
                return None
            return await self.purge(found)

    async def keep_purging(self) -> None:
        """The background purge: now, then every ``interval`` seconds."""
        while True:
            try:
                await self.run_configured()
            except Unavailable as exc:
                log.warning("purge skipped: %s", exc)
            except Exception:
                log.exception("purge failed")
            await asyncio.sleep(self.conf.interval)
