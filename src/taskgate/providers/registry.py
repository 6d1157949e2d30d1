"""Provider registry: built-ins, ``@register_provider`` / ``@register_inference_function``
decorators, and the ``taskgate.providers`` entry-point group for installed packages.

A registered function is wrapped into a provider. ``register_inference_function`` keeps
AIFlow's signature ``fn(model_spec, payload, inference_params)`` so its plugins port unchanged.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from taskgate.config import Route
from taskgate.providers.base import Call, Provider, Result

ENTRY_POINT_GROUP = "taskgate.providers"

_registry: dict[str, type[Provider]] = {}


def register_provider(name: str) -> Callable[[Any], Any]:
    """Register a Provider subclass, or a function ``fn(call) -> output | Result``."""

    def deco(obj: Any) -> Any:
        _registry[name] = _as_provider(obj, name, aiflow=False)
        return obj

    return deco


def register_inference_function(name: str) -> Callable[[Any], Any]:
    """AIFlow-style plugin: ``fn(model_spec: dict, payload, inference_params: dict)``."""

    def deco(fn: Any) -> Any:
        _registry[name] = _as_provider(fn, name, aiflow=True)
        return fn

    return deco


def _as_provider(obj: Any, name: str, *, aiflow: bool) -> type[Provider]:
    if inspect.isclass(obj) and issubclass(obj, Provider):
        return obj
    if not callable(obj):
        raise TypeError(f"provider {name!r} must be a Provider subclass or a function")
    fn = obj

    class FunctionProvider(Provider):
        async def run(self, call: Call) -> Result:
            args = _aiflow_args(call) if aiflow else (call,)
            if inspect.iscoroutinefunction(fn):
                out = await fn(*args)
            else:  # a blocking function must not stall the event loop
                out = await asyncio.to_thread(fn, *args)
            return out if isinstance(out, Result) else Result(out)

    FunctionProvider.__name__ = FunctionProvider.__qualname__ = f"FunctionProvider[{name}]"
    return FunctionProvider


def _aiflow_args(call: Call) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    spec = {"name": call.model, "endpoint": call.instance.endpoint}
    if call.instance.secret is not None:
        spec["api_key"] = call.instance.secret.get_secret_value()
    return spec, call.input, dict(call.params)


def lookup(name: str) -> type[Provider]:
    if name in _registry:
        return _registry[name]
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        _registry[name] = _as_provider(ep.load(), name, aiflow=False)
        return _registry[name]
    known = sorted(set(_registry) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})
    raise LookupError(f"unknown provider {name!r}; registered: {', '.join(known)}")


def build(route: Route) -> Provider:
    return lookup(route.provider)(route)


def load_plugins(modules: list[str]) -> None:
    """Import plugin modules named in the config so that their decorators run."""
    for module in modules:
        importlib.import_module(module)
