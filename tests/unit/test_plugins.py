"""Providers installed by other packages through the ``taskgate.providers`` entry-point group."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

from taskgate.providers import registry


async def shout(call: Any) -> dict[str, str]:
    return {"text": str(call.input).upper()}


def fake_entry_points(**query: str) -> list[EntryPoint]:
    eps = [EntryPoint("shout", f"{__name__}:shout", registry.ENTRY_POINT_GROUP)]
    return [ep for ep in eps if all(getattr(ep, k) == v for k, v in query.items())]


def test_an_entry_point_provider_is_found_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))
    provider_cls = registry.lookup("shout")
    assert provider_cls.__name__ == "FunctionProvider[shout]"
    assert registry.lookup("shout") is provider_cls  # loaded once, then cached
    with pytest.raises(LookupError, match="shout"):  # listed among the known names
        registry.lookup("whisper")


def test_plugin_modules_named_in_the_config_are_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))
    registry.load_plugins(["tests.e2e.plugins.sidefx"])
    assert registry.lookup("sidefx").__name__ == "SideEffectProvider"
