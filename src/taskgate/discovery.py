"""Model discovery: a route whose backends say which models they serve.

A route with ``options: {discover: true}`` routes every model its instances list, without
naming them one by one in ``models`` (which may then be empty; names and globs given there
still count). Its provider must have ``async def list_models(self) -> list[str]`` (the ollama
provider reads ``GET /api/tags``). The names are read at start-up and then every
``discover_interval`` seconds (option; 60 by default) by a background task per route; a
refresh that fails logs a warning and keeps the names known before, so a backend that is
briefly down does not make its models unknown.

A name listed with the tag ``:latest`` also routes without it (``llama3.2`` and
``llama3.2:latest``), and a bare name also with it, as Ollama reads names.

Order (:meth:`taskgate.config.Settings.resolve`): an exact name in any route's ``models``
wins; then the routes in declaration order, each claiming a model by one of its globs or by
a name its backends listed. So a discovered name goes to its route unless an earlier route's
glob claims it, and explicit configuration always beats discovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol, cast

from taskgate import errors
from taskgate.config import Route
from taskgate.providers import build, lookup

log = logging.getLogger("taskgate.discovery")

DEFAULT_INTERVAL = 60.0
LATEST = ":latest"


class ListsModels(Protocol):
    async def list_models(self) -> list[str]: ...

    async def aclose(self) -> None: ...


def discovers(route: Route) -> bool:
    return route.options.get("discover") is True


def interval(route: Route) -> float:
    value = route.options.get("discover_interval", DEFAULT_INTERVAL)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(
            f"route {route.name!r}: options.discover_interval must be a number of seconds > 0"
        )
    return float(value)


def aliases(names: list[str]) -> frozenset[str]:
    """The names a listed model answers to: with and without ``:latest``."""
    out = set(names)
    for name in names:
        if name.endswith(LATEST):
            out.add(name.removesuffix(LATEST))
        elif ":" not in name.rsplit("/", 1)[-1]:
            out.add(name + LATEST)
    return frozenset(out)


class Discovery:
    """The model names each discovering route's backends listed, kept fresh."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = [r for r in routes if discovers(r)]
        for r in self.routes:
            interval(r)  # refuse a bad interval at start-up, not in the background
            if not callable(getattr(lookup(r.provider), "list_models", None)):
                raise ValueError(
                    f"route {r.name!r}: provider {r.provider!r} cannot list its models "
                    "(options.discover needs a provider with list_models)"
                )
        self._names: dict[str, tuple[str, ...]] = {}
        self._aliases: dict[str, frozenset[str]] = {}
        self._providers: dict[str, ListsModels] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def serves(self, route: Route, model: str) -> bool:
        return model in self._aliases.get(route.name, ())

    def names(self, route: Route) -> tuple[str, ...]:
        """The names the route's backends listed last, as they listed them."""
        return self._names.get(route.name, ())

    def set_names(self, route: Route, names: list[str]) -> None:
        before = set(self._names.get(route.name, ()))
        self._names[route.name] = tuple(sorted(set(names)))
        self._aliases[route.name] = aliases(names)
        if set(names) != before:
            added, gone = sorted(set(names) - before), sorted(before - set(names))
            log.info(
                "route %s: models listed %s; new %s, gone %s", route.name, len(names), added, gone
            )

    # --- refreshing ----------------------------------------------------------------------

    async def start(self) -> None:
        """Read every discovering route's names once, then keep them fresh."""
        for r in self.routes:
            self._providers[r.name] = cast(ListsModels, build(r))
        await asyncio.gather(*(self.refresh(r) for r in self.routes))
        self._tasks = [
            asyncio.create_task(self._every(r), name=f"discover:{r.name}") for r in self.routes
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        providers, self._providers = list(self._providers.values()), {}
        for provider in providers:
            await provider.aclose()

    async def refresh(self, route: Route) -> bool:
        """Ask the route's backends again; on failure keep the names known before."""
        try:
            names = await self._providers[route.name].list_models()
        except Exception as exc:  # a plugin's list_models may raise anything: keep going
            self._keep(route, exc)
            return False
        self.set_names(route, names)
        return True

    async def _every(self, route: Route) -> None:
        pause = interval(route)
        while True:
            await asyncio.sleep(pause)
            await self.refresh(route)

    def _keep(self, route: Route, exc: Exception) -> None:
        known = len(self.names(route))
        ours = isinstance(exc, errors.ProviderError)  # a known failure: no traceback
        log.warning(
            "route %s: cannot list its models (%s: %s); keeping the %d known",
            route.name,
            type(exc).__name__,
            exc,
            known,
            exc_info=None if ours else exc,
        )
