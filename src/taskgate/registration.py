"""What a backend instance registered at run time must be, and how instances are shown.

A registration (``POST /v1/routes/{name}/instances``) names a configured route, a name no
configured instance of that route has, an ``http(s)`` endpoint (or none, for a provider
that needs none), and a secret by reference only: ``secret_env``, an environment variable
the route's configured instances already name or one ``registration.secret_envs`` lists
(so an admin key cannot have taskgate send any variable of its environment anywhere). Its
time to live is at most ``registration.max_ttl``; without one it stays until removed. The
route's provider must accept it as it would a configured instance. All is checked before
anything is stored.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from taskgate import config
from taskgate.config import Instance, Route, Settings
from taskgate.errors import BadRequest, Conflict, NotFound
from taskgate.providers import build
from taskgate.store.instances import Registered
from taskgate.views import iso


def configured_route(configured: Settings, name: str) -> Route:
    """The route as the config file has it (without registered instances); else 404."""
    try:
        return configured.route(name)
    except KeyError:
        raise NotFound(f"no route {name!r}") from None


async def check(configured: Settings, reg: Registered) -> Instance:
    """The instance a registration makes on its route; a 4xx saying what is wrong."""
    route = configured_route(configured, reg.route)
    conf = configured.registration
    if any(i.name == reg.name for i in route.instances):
        raise Conflict(
            f"route {route.name!r} has a configured instance {reg.name!r}; "
            "a registered instance needs a name of its own",
            field="name",
        )
    if reg.ttl is not None and reg.ttl > conf.max_ttl:
        raise BadRequest(f"ttl is at most {conf.max_ttl:g} seconds", field="ttl")
    allowed = {i.secret_env for i in route.instances if i.secret_env} | set(conf.secret_envs)
    if reg.secret_env is not None and reg.secret_env not in allowed:
        raise BadRequest(
            f"secret_env may name only a variable the route's configured instances use or "
            f"registration.secret_envs lists: {', '.join(sorted(allowed)) or 'none'}",
            field="secret_env",
        )
    if reg.endpoint is not None:
        check_endpoint(reg.endpoint)
    try:
        instance = config.registered_instance(reg.fields())
    except ValidationError as exc:
        raise BadRequest(f"not a valid instance: {exc.errors()[0]['msg']}") from None
    await _provider_accepts(route, instance)
    return instance


def check_endpoint(endpoint: str) -> None:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("endpoint must be an http:// or https:// URL", field="endpoint")


async def _provider_accepts(route: Route, instance: Instance) -> None:
    joined = route.model_copy(update={"instances": [*route.instances, instance]})
    try:
        provider = build(joined)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"route {route.name!r} refuses the instance: {exc}") from None
    await provider.aclose()


def configured_json(route: Route, i: Instance) -> dict[str, Any]:
    """A configured instance as the listing shows it (its options by name only: an option
    may hold a header with a secret)."""
    return {
        "route": route.name,
        "name": i.name,
        "source": "config",
        "state": "configured",
        "endpoint": i.endpoint,
        "max_concurrency": i.max_concurrency,
        "weight": i.weight,
        "secret_env": i.secret_env,
        "requests_per_minute": i.requests_per_minute,
        "tokens_per_minute": i.tokens_per_minute,
        "options": sorted(i.options),
    }


def registered_json(r: Registered, now: float) -> dict[str, Any]:
    """A registered instance as the API shows it (``state``: live or expired)."""
    return {
        "route": r.route,
        "name": r.name,
        "source": "registered",
        "state": "live" if r.live(now) else "expired",
        "endpoint": r.endpoint,
        "max_concurrency": r.max_concurrency,
        "weight": r.weight,
        "secret_env": r.secret_env,
        "requests_per_minute": r.requests_per_minute,
        "tokens_per_minute": r.tokens_per_minute,
        "options": sorted(r.options),
        "ttl": r.ttl,
        "registered_at": iso(r.registered_at),
        "heartbeat_at": iso(r.heartbeat_at),
        "expires_at": iso(r.expires_at),
    }
