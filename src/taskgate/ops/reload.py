"""What a new configuration changes, decided without I/O: the routes and instances added,
removed and changed between the running settings and new ones, the other sections that
changed, and those that only a restart can apply (the store, the ports, logging...), which
keep their running values. :mod:`taskgate.ops.live` applies the result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskgate.config import Route, Settings

# Sections read once at start-up, by what the process opened or built then: a new value in
# the file is reported, and waits for a restart. Every other section (routes, kinds, aiflow,
# registration, and those read from the settings when used) is applied at once.
RESTART_ONLY = (
    "host",
    "port",
    "store_url",
    "files_url",
    "files_key_id",
    "files_secret",
    "files",
    "events_url",
    "max_body_bytes",
    "cors",
    "auth",
    "static_dirs",
    "auth_cache_seconds",
    "log_level",
    "log_format",
    "log_file",
    "log_retention_days",
    "access_log",
    "log_errors_to_store",
    "metrics",
    "tracing",
    "scheduler",
    "conversations",
    "webhooks",
    "media",
    "plugins",
)


@dataclass(frozen=True)
class Changes:
    """Routes by name, instances as ``route/instance``; each tuple sorted."""

    routes_added: tuple[str, ...] = ()
    routes_removed: tuple[str, ...] = ()
    routes_changed: tuple[str, ...] = ()  # in anything but the list of its instances
    instances_added: tuple[str, ...] = ()
    instances_removed: tuple[str, ...] = ()
    instances_changed: tuple[str, ...] = ()
    # of those removed, the registered instances whose heartbeats stopped (ops/live.py):
    # their calls in flight are stopped, where a removed instance's would finish
    instances_expired: tuple[str, ...] = ()
    sections_changed: tuple[str, ...] = ()  # other top-level keys, applied
    needs_restart: tuple[str, ...] = ()  # changed in the file, kept as they run

    @property
    def changed(self) -> bool:
        """Whether anything is applied (a section needing a restart is not)."""
        return any(
            (
                self.routes_added,
                self.routes_removed,
                self.routes_changed,
                self.instances_added,
                self.instances_removed,
                self.instances_changed,
                self.sections_changed,
            )
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "routes": {
                "added": list(self.routes_added),
                "removed": list(self.routes_removed),
                "changed": list(self.routes_changed),
            },
            "instances": {
                "added": list(self.instances_added),
                "removed": list(self.instances_removed),
                "changed": list(self.instances_changed),
            },
            "sections": list(self.sections_changed),
            "needs_restart": list(self.needs_restart),
        }

    def summary(self) -> str:
        """One line for the log."""
        parts = [
            f"{what} {verb}: {', '.join(names)}"
            for what, verb, names in (
                ("routes", "added", self.routes_added),
                ("routes", "removed", self.routes_removed),
                ("routes", "changed", self.routes_changed),
                ("instances", "added", self.instances_added),
                ("instances", "removed", self.instances_removed),
                ("instances", "expired", self.instances_expired),
                ("instances", "changed", self.instances_changed),
                ("sections", "changed", self.sections_changed),
                ("needing a restart", "(kept)", self.needs_restart),
            )
            if names
        ]
        return "; ".join(parts) or "nothing changed"


def diff(old: Settings, new: Settings) -> Changes:
    """What changes from ``old`` (running) to ``new`` (as read)."""
    before = {r.name: r for r in old.routes}
    after = {r.name: r for r in new.routes}
    kept = [n for n in after if n in before]
    added: list[str] = []
    removed: list[str] = []
    changed: list[str] = []
    for name in kept:
        a, r, c = instance_changes(before[name], after[name])
        added += a
        removed += r
        changed += c
    sections = _changed_sections(old, new)
    return Changes(
        routes_added=_sorted(n for n in after if n not in before),
        routes_removed=_sorted(n for n in before if n not in after),
        routes_changed=_sorted(n for n in kept if _bare(before[n]) != _bare(after[n])),
        instances_added=_sorted(added),
        instances_removed=_sorted(removed),
        instances_changed=_sorted(changed),
        sections_changed=_sorted(s for s in sections if s not in RESTART_ONLY),
        needs_restart=_sorted(s for s in sections if s in RESTART_ONLY),
    )


def instance_changes(old: Route, new: Route) -> tuple[list[str], list[str], list[str]]:
    """The instances of a route added, removed and changed, as ``route/instance``."""
    before = {i.name: i for i in old.instances}
    after = {i.name: i for i in new.instances}
    return (
        [f"{new.name}/{n}" for n in after if n not in before],
        [f"{new.name}/{n}" for n in before if n not in after],
        [f"{new.name}/{n}" for n in after if n in before and after[n] != before[n]],
    )


def keep_running(running: Settings, new: Settings) -> Settings:
    """``new`` with the sections only a restart applies as they run now."""
    kept = {name: getattr(running, name) for name in RESTART_ONLY}
    return new.model_copy(update=kept)


def _changed_sections(old: Settings, new: Settings) -> list[str]:
    names = type(old).model_fields
    return [n for n in names if n != "routes" and getattr(old, n) != getattr(new, n)]


def _bare(route: Route) -> Route:
    return route.model_copy(update={"instances": []})


def _sorted(names: Any) -> tuple[str, ...]:
    return tuple(sorted(names))
