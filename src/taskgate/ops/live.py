"""A process's configuration at run time: the settings read from its config file, plus the
backend instances registered in the store while they are live, applied to whatever holds
them (the gateway, the scheduler, the ops endpoints) when either changes.

- **Reload** (``POST /v1/admin/reload`` on any gateway, or SIGHUP to one process): the file
  the process started with is read again and checked (``configfile``); a bad one is refused
  and nothing changes. The gateway that took the API call checks and applies its own file
  first, then publishes ``reload``, on which every other process reads its own. SIGHUP
  reloads only the process that gets it.
- **Registered instances**: every process reads them all from the store when told of a
  change (``instances``, a hint), every ``registration.reread_seconds``, and when one is
  due to expire. One that expired (its heartbeats stopped) leaves its route, and the calls
  in flight on it are stopped and their tasks requeued (``Changes.instances_expired``); one
  removed by its owner, like a configured instance removed by a reload, takes no new calls
  and lets the running ones finish.

What changes is decided by :mod:`taskgate.ops.reload`; the sections only a restart applies
keep their running values.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from taskgate import config
from taskgate.config import ConfigError, Instance, Settings
from taskgate.configfile import read_checked
from taskgate.events import Events
from taskgate.events.base import nap
from taskgate.events.topics import INSTANCES, RELOAD
from taskgate.ops.reload import Changes, diff, keep_running
from taskgate.store import SqlStore
from taskgate.store.instances import Registered

log = logging.getLogger("taskgate.live")

Apply = Callable[[Settings, Changes], Awaitable[None]]
EXPIRY_SLACK = 0.05  # seconds after an instance's expiry before it is looked at again
PURGE_AFTER = 3600.0  # seconds an expired instance is still listed before it is forgotten

Key = tuple[str, str]  # route, instance


class LiveConfig:
    def __init__(
        self,
        settings: Settings,
        path: Path | None,
        store: SqlStore,
        events: Events,
        *,
        signals: bool = False,
    ) -> None:
        self.file = settings  # as the config file last said (good)
        self.settings = settings  # what runs: the file's, with the live registered instances
        self.path = path  # None: not started from a file (reloads are refused)
        self.store = store
        self.events = events
        self.signals = signals  # reload on SIGHUP
        self.origin = os.urandom(6).hex()  # this process, in the reload messages it sends
        self._applies: list[Apply] = []
        self._live: dict[Key, Registered] = {}
        self._warned: set[Key] = set()  # told of an unset secret_env once
        self._next_expiry: float | None = None
        self._lock = asyncio.Lock()
        self._hint = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def on_change(self, apply: Apply) -> None:
        """Have ``apply(settings, changes)`` run on every change, in the order added."""
        self._applies.append(apply)

    # --- running -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Add the registered instances, then follow reloads and registrations."""
        try:
            await self.refresh()
        except Exception:  # the store is down: the reread loop tries again
            log.warning("could not read the registered instances; trying again shortly")
        subscribed = [asyncio.Event(), asyncio.Event()]
        self._tasks = [
            asyncio.create_task(self._follow(RELOAD, self._on_reload, subscribed[0])),
            asyncio.create_task(self._follow(INSTANCES, self._on_instances, subscribed[1])),
            asyncio.create_task(self._keep_rereading(), name="instances-reread"),
        ]
        await asyncio.gather(*(s.wait() for s in subscribed))
        if self.signals and hasattr(signal, "SIGHUP"):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)

    async def stop(self) -> None:
        if self.signals and hasattr(signal, "SIGHUP"):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # --- reloading ---------------------------------------------------------------------------

    async def reload(self) -> Changes:
        """Read the config file again and apply it here; :class:`ConfigError` if it is
        refused (then nothing changes)."""
        if self.path is None:
            raise ConfigError("this process was not started from a config file")
        async with self._lock:
            self.file = await read_checked(self.path)
            return await self._apply()

    async def reload_everywhere(self) -> Changes:
        """Reload here, then tell every other process to reload its own file."""
        changes = await self.reload()
        log.warning("reloaded %s (the API): %s", self.path, changes.summary())
        await self.events.publish(RELOAD, {"origin": self.origin})
        return changes

    async def _on_reload(self, message: dict[str, Any]) -> None:
        if message.get("origin") != self.origin:
            await self._reload_logged("a reload on another process")

    def _on_sighup(self) -> None:
        task = asyncio.create_task(self._reload_logged("SIGHUP"), name="sighup-reload")
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _reload_logged(self, why: str) -> None:
        try:
            changes = await self.reload()
        except ConfigError as exc:
            log.error("reload (%s) refused, the running configuration stays: %s", why, exc)
            return
        except Exception:
            log.exception("reload (%s) failed", why)
            return
        log.warning("reloaded %s (%s): %s", self.path, why, changes.summary())

    # --- registered instances ------------------------------------------------------------

    async def instances_changed(self) -> Changes:
        """An instance was registered or removed here: apply it, and tell the others."""
        changes = await self.refresh()
        await self.events.publish(INSTANCES, {"origin": self.origin})
        return changes

    def runs(self, route: str, name: str) -> bool:
        """Whether this process counts the registered instance as live."""
        return (route, name) in self._live

    async def refresh(self) -> Changes:
        """Read the registered instances; apply what changed among the live ones."""
        async with self._lock:  # (read under it too: an older reading never wins)
            found = await self.store.instances.find()
            now = time.time()
            live = {(r.route, r.name): r for r in found if r.live(now)}
            upcoming = [r.expires_at for r in live.values() if r.expires_at is not None]
            earlier = min(upcoming, default=None)
            if earlier is not None and (self._next_expiry is None or earlier < self._next_expiry):
                self._hint.set()  # the reread loop waits for a later time: have it look again
            self._next_expiry = earlier
            if any(r.expires_at is not None and r.expires_at < now - PURGE_AFTER for r in found):
                await self.store.instances.purge(now - PURGE_AFTER)
            if _fields(live) == _fields(self._live):
                self._live = live
                return Changes()
            stayed = {(r.route, r.name) for r in found}  # rows of expired ones remain
            expired = [k for k in self._live if k not in live and k in stayed]
            self._live = live
            return await self._apply(expired)

    async def _on_instances(self, message: dict[str, Any]) -> None:
        if message.get("origin") != self.origin:
            self._hint.set()

    async def _keep_rereading(self) -> None:
        while True:
            wait = self.settings.registration.reread_seconds
            if self._next_expiry is not None:
                wait = min(wait, max(0.0, self._next_expiry - time.time()) + EXPIRY_SLACK)
            await nap(self._hint, wait)
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("could not reread the registered instances: %s", exc)

    # --- applying -------------------------------------------------------------------------

    async def _apply(self, expired: list[Key] | None = None) -> Changes:
        """Apply the file's settings with the live instances (the lock is held)."""
        new = self.file.with_instances(self._registered_instances())
        changes = diff(self.settings, new)
        tags = tuple(sorted(f"{r}/{n}" for r, n in expired or ()))
        changes = dataclasses.replace(changes, instances_expired=tags)
        if not changes.changed:
            return changes
        self.settings = keep_running(self.settings, new)
        for apply in self._applies:
            try:
                await apply(self.settings, changes)
            except Exception:  # the others still take it
                log.exception("applying the new configuration failed in %r", apply)
        log.info("configuration changed: %s", changes.summary())
        return changes

    def _registered_instances(self) -> dict[str, list[Instance]]:
        out: dict[str, list[Instance]] = {}
        for (route, name), r in sorted(self._live.items()):
            try:
                instance = config.registered_instance(r.fields())
            except ValueError as exc:  # a row this version cannot read: leave it out
                log.warning("route %s: registered instance %s left out: %s", route, name, exc)
                continue
            if r.secret_env and instance.secret is None and (route, name) not in self._warned:
                self._warned.add((route, name))
                log.warning(
                    "route %s, registered instance %s: environment variable %s is not set "
                    "here; calls to it will fail to authenticate",
                    route,
                    name,
                    r.secret_env,
                )
            out.setdefault(route, []).append(instance)
        return out

    async def _follow(
        self,
        topic: str,
        handle: Callable[[dict[str, Any]], Awaitable[None]],
        subscribed: asyncio.Event,
    ) -> None:
        async with self.events.subscribe(topic) as sub:
            subscribed.set()
            while True:
                message = await sub.get()
                if message is None:
                    continue
                try:
                    await handle(message)
                except Exception:
                    log.exception("handling a %s message failed", topic)


def _fields(live: dict[Key, Registered]) -> dict[Key, dict[str, Any]]:
    """What the routes see of each instance (not its heartbeats)."""
    return {k: r.fields() for k, r in live.items()}
