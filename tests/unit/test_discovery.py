"""Routing by model names a route's backends list (model discovery), without I/O: the
routes' provider is a registered stand-in whose ``list_models`` answers from a dict."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from taskgate import errors
from taskgate.config import Route, Settings
from taskgate.discovery import Discovery, aliases
from taskgate.errors import BadRequest
from taskgate.providers import Call, Provider, Result, register_provider
from taskgate.providers import registry as registry_module
from taskgate.routing import Routing

LISTED: dict[str, list[str]] = {}  # route name -> what its backends list now
DOWN: set[str] = set()  # routes whose backends cannot be asked
CLOSED: list[str] = []


@pytest.fixture(autouse=True)
def lister(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A provider that lists ``LISTED[route]``; registrations vanish after the test."""
    monkeypatch.setattr(registry_module, "_registry", dict(registry_module._registry))

    @register_provider("lister")
    class Lister(Provider):
        kinds = frozenset({"chat", "embedding"})

        async def run(self, call: Call) -> Result:
            return Result({"text": "unused"})

        async def list_models(self) -> list[str]:
            if self.route.name in DOWN:
                raise errors.ConnectionFailed(f"{self.route.name} is down")
            return list(LISTED[self.route.name])

        async def aclose(self) -> None:
            CLOSED.append(self.route.name)

    LISTED.clear()
    DOWN.clear()
    CLOSED.clear()
    yield


def route(name: str, models: list[str], provider: str = "mock", **options: Any) -> Route:
    return Route(
        name=name,
        models=models,
        provider=provider,
        instances=[{"name": f"{name}-1"}],
        options=options,
    )


def local(**options: Any) -> Route:
    return route("local", [], "lister", discover=True, **options)


def routing_of(*routes: Route) -> Routing:
    return Routing(Settings(routes=list(routes)))


@pytest.fixture
async def routing() -> AsyncIterator[Routing]:
    """Routes in order: a glob, the discovering route, a later glob, an exact name."""
    LISTED["local"] = ["llama3.2:latest", "qwen3:8b", "gpt-oss:20b", "deepseek-r1:7b"]
    g = routing_of(
        route("cloud", ["gpt-*"]),
        local(),
        route("later", ["qwen*", "deepseek-*"]),
        route("pinned", ["deepseek-r1:7b"]),
    )
    await g.start()
    yield g
    await g.stop()


def routed(g: Routing, model: str, kind: str = "chat") -> str:
    return g.route_for(kind, model).name


# --- which route ---------------------------------------------------------------------------


async def test_a_listed_name_routes_with_and_without_latest(routing: Routing) -> None:
    assert routed(routing, "llama3.2:latest") == "local"
    assert routed(routing, "llama3.2") == "local"
    assert routed(routing, "qwen3:8b", kind="embedding") == "local"


async def test_an_earlier_glob_beats_a_discovered_name_which_beats_a_later_glob(
    routing: Routing,
) -> None:
    assert routed(routing, "gpt-oss:20b") == "cloud"  # "gpt-*" comes first
    assert routed(routing, "qwen3:8b") == "local"  # listed, and "qwen*" comes after
    assert routed(routing, "qwen3") == "later"  # qwen3:latest is not listed


async def test_an_exact_declared_name_beats_discovery(routing: Routing) -> None:
    assert routed(routing, "deepseek-r1:7b") == "pinned"


async def test_a_name_nobody_lists_is_a_bad_request(routing: Routing) -> None:
    with pytest.raises(BadRequest, match="unknown model 'mistral:7b'"):
        routing.route_for("chat", "mistral:7b")


def test_aliases_add_and_drop_the_latest_tag() -> None:
    assert aliases(["a:latest", "b", "c:7b", "hf.co/x/y:Q4"]) == {
        "a:latest",
        "a",
        "b",
        "b:latest",
        "c:7b",
        "hf.co/x/y:Q4",
    }


# --- refreshing ------------------------------------------------------------------------------


async def test_a_refresh_picks_up_a_newly_pulled_model_and_drops_a_removed_one(
    routing: Routing,
) -> None:
    LISTED["local"] = ["llama3.2:latest", "mistral:7b"]
    assert await routing.discovery.refresh(routing.settings.route("local"))
    assert routed(routing, "mistral:7b") == "local"
    assert routed(routing, "qwen3:8b") == "later"  # gone from local; the later glob takes it


async def test_the_background_task_refreshes_every_interval() -> None:
    LISTED["local"] = ["llama3.2:latest"]
    g = routing_of(local(discover_interval=0.05))
    await g.start()
    try:
        LISTED["local"].append("phi4:latest")
        for _ in range(100):
            if g.resolve("phi4:latest") is not None:
                break
            await asyncio.sleep(0.02)
        assert routed(g, "phi4") == "local"
    finally:
        await g.stop()
    assert CLOSED == ["local"]


async def test_an_unreachable_backend_keeps_the_last_names_with_a_warning(
    routing: Routing, caplog: pytest.LogCaptureFixture
) -> None:
    DOWN.add("local")
    LISTED["local"] = []
    with caplog.at_level(logging.WARNING, "taskgate.discovery"):
        assert not await routing.discovery.refresh(routing.settings.route("local"))
    assert routed(routing, "llama3.2") == "local"
    assert "route local: cannot list its models (ConnectionFailed: local is down)" in caplog.text
    assert "keeping the 4 known" in caplog.text


async def test_a_backend_down_at_start_up_routes_once_it_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    DOWN.add("local")
    LISTED["local"] = ["llama3.2:latest"]
    g = routing_of(local())
    await g.start()
    try:
        with pytest.raises(BadRequest):
            g.route_for("chat", "llama3.2")
        assert "cannot list its models" in caplog.text
        DOWN.clear()
        await g.discovery.refresh(g.settings.route("local"))
        assert routed(g, "llama3.2") == "local"
    finally:
        await g.stop()


async def test_models_lists_declared_names_globs_and_discovered_names(routing: Routing) -> None:
    rows = {(m["id"], m["owned_by"], m["source"]) for m in routing.models()}
    assert rows == {
        ("gpt-*", "cloud", "glob"),
        ("llama3.2:latest", "local", "discovered"),
        ("qwen3:8b", "local", "discovered"),
        ("qwen*", "later", "glob"),
        ("deepseek-*", "later", "glob"),
        ("deepseek-r1:7b", "pinned", "declared"),
    }  # gpt-oss:20b and deepseek-r1:7b route elsewhere, so local does not list them


# --- configuration ---------------------------------------------------------------------------


def test_a_route_without_models_must_discover_them() -> None:
    with pytest.raises(ValidationError, match=r"list its models, or set options\.discover"):
        route("empty", [])


def test_discovery_needs_a_provider_that_lists_models() -> None:
    with pytest.raises(ValueError, match="provider 'mock' cannot list its models"):
        Discovery([route("m", [], "mock", discover=True)])


@pytest.mark.parametrize("value", [0, -1, "60", True])
def test_a_bad_interval_is_refused_at_start_up(value: Any) -> None:
    with pytest.raises(ValueError, match="discover_interval must be a number"):
        Discovery([local(discover_interval=value)])


def test_routes_without_discover_are_left_alone() -> None:
    assert Discovery([route("m", ["m"]), route("x", ["x"], "lister", discover=False)]).routes == []
