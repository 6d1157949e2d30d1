"""A config file read for a reload (``POST /v1/admin/reload``, SIGHUP): everything
:func:`taskgate.config.load` checks, and what only building the routes finds (an unknown
provider, an instance its provider refuses, a bad discovery option). A file that fails says
which file, line and key are wrong, in one :class:`~taskgate.config.ConfigError`; nothing is
applied."""

from __future__ import annotations

from pathlib import Path

from taskgate import config
from taskgate.config import ConfigError, Settings
from taskgate.discovery import Discovery
from taskgate.providers import build, lookup


async def read_checked(path: Path) -> Settings:
    """The settings of ``path``, refused with a :class:`ConfigError` unless every route can
    be built."""
    settings = config.load(path)
    await check_routes(settings, path)
    return settings


async def check_routes(settings: Settings, path: Path) -> None:
    """Build each route's provider (and model discovery) as the scheduler will, then let
    it go: a route its provider refuses is named here rather than failing a worker."""
    for n, route in enumerate(settings.routes):
        try:
            lookup(route.provider)
        except LookupError as exc:
            raise ConfigError.at(path, ("routes", n, "provider"), str(exc).strip("'\"")) from None
        try:
            provider = build(route)
            Discovery([route])
        except (ValueError, TypeError) as exc:
            raise ConfigError.at(path, ("routes", n), str(exc)) from None
        await provider.aclose()
