"""Which route serves a task: the kinds taskgate knows, the models each route serves
(declared names, globs, and names its backends list, see discovery.py), and the attempts a
route and the fallbacks it may reach allow a task."""

from __future__ import annotations

from typing import Any

from taskgate.config import Route, Settings
from taskgate.discovery import Discovery, discovers
from taskgate.errors import BadRequest
from taskgate.providers import lookup


class Routing:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.kinds = known_kinds(settings)
        self.discovery = Discovery(settings.routes)
        self._started = False

    async def start(self) -> None:
        """Learn the models of routes that discover them, and keep them fresh."""
        self._started = True
        await self.discovery.start()

    async def stop(self) -> None:
        self._started = False
        await self.discovery.stop()

    async def update(self, settings: Settings) -> None:
        """Route by new settings (a reload) from now on. Discovery starts again only if the
        routes that discover their models changed."""
        discovery = self.discovery
        if _discovering(settings) != _discovering(self.settings):
            discovery = Discovery(settings.routes)
            if self._started:
                await discovery.start()
        self.settings, self.kinds = settings, known_kinds(settings)
        if discovery is not self.discovery:
            old, self.discovery = self.discovery, discovery
            await old.stop()

    def route_for(self, kind: str, model: str) -> Route:
        """The route serving ``model`` for ``kind``; else a 400 saying which is unknown."""
        if kind not in self.kinds:
            raise BadRequest(
                f"unknown kind {kind!r}; known kinds: {', '.join(self.kinds)}",
                field="kind",
            )
        route = self.resolve(model)
        if route is None:
            raise BadRequest(f"unknown model {model!r}: no route serves it", field="model")
        served = route.kinds if route.kinds is not None else lookup(route.provider).kinds
        if served is not None and kind not in served:
            raise BadRequest(
                f"model {model!r} (route {route.name!r}) does not serve kind {kind!r}", field="kind"
            )
        return route

    def resolve(self, model: str) -> Route | None:
        """The route serving a model: declared names and globs, and discovered names."""
        return self.settings.resolve(model, self.discovery.serves)

    def models(self) -> list[dict[str, Any]]:
        """Every model name routed, OpenAI-style: declared names and globs, and the names
        discovered on a route that routes them (an earlier glob may take a name)."""
        out: list[dict[str, Any]] = []
        for r in self.settings.routes:
            named = [(m, declared_as(m)) for m in r.models]
            found = [
                (m, "discovered")
                for m in self.discovery.names(r)
                if m not in r.models and self.resolve(m) is r
            ]
            out += [
                {"id": m, "object": "model", "owned_by": r.name, "source": source}
                for m, source in named + found
            ]
        return out

    def reachable(self, route: Route) -> list[Route]:
        """The route and every fallback it may reach, each once."""
        seen: list[Route] = []
        todo = [route]
        while todo:
            r = todo.pop()
            if r not in seen:
                seen.append(r)
                todo.extend(self.settings.route(f) for f in r.fallbacks)
        return seen

    def attempt_budget(self, route: Route) -> int:
        """Attempts over the route and every fallback it may reach."""
        return sum(r.retry.max_attempts for r in self.reachable(route))


def known_kinds(settings: Settings) -> list[str]:
    """The configured kinds, and those each route (or else its provider) declares serving."""
    declared = (
        r.kinds if r.kinds is not None else lookup(r.provider).kinds or () for r in settings.routes
    )
    return sorted(set(settings.kinds).union(*declared))


def _discovering(settings: Settings) -> list[Route]:
    return [r for r in settings.routes if discovers(r)]


def declared_as(name: str) -> str:
    return "glob" if any(c in name for c in "*?[") else "declared"
