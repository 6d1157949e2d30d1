"""Live configuration without I/O: what a new config changes (``ops.reload``), registered
instances joining a route (``Settings.with_instances``), a refused file's message naming
the file, line and key (``configfile``), and lanes brought in line (``relane``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from taskgate import config, policy
from taskgate.config import ConfigError, Settings
from taskgate.config import load as read
from taskgate.configfile import read_checked
from taskgate.ops.reload import diff, keep_running
from taskgate.providers import Provider
from taskgate.scheduling.reconfigure import relane
from taskgate.scheduling.state import build_lanes


def route(name: str, *instances: dict[str, Any], **over: Any) -> dict[str, Any]:
    return {
        "name": name,
        "models": [name],
        "provider": "mock",
        "instances": list(instances) or [{"name": f"{name}-1"}],
        **over,
    }


def settings(*routes: dict[str, Any], **over: Any) -> Settings:
    return Settings.model_validate({"routes": list(routes), **over})


# --- diff ------------------------------------------------------------------------------------


def test_nothing_changes_between_equal_settings() -> None:
    s = settings(route("a"), route("b"))
    changes = diff(s, settings(route("a"), route("b")))
    assert not changes.changed
    assert changes.summary() == "nothing changed"


def test_routes_added_removed_and_changed() -> None:
    old = settings(route("a"), route("b"), route("c"))
    new = settings(route("a"), route("c", timeout=5), route("d"))
    changes = diff(old, new)
    assert changes.routes_added == ("d",)
    assert changes.routes_removed == ("b",)
    assert changes.routes_changed == ("c",)
    # a route added or removed does not list its instances again
    assert changes.instances_added == changes.instances_removed == ()
    assert changes.changed


def test_instances_added_removed_and_changed_are_not_route_changes() -> None:
    old = settings(route("a", {"name": "x"}, {"name": "y"}, {"name": "z", "max_concurrency": 2}))
    new = settings(route("a", {"name": "y"}, {"name": "z", "max_concurrency": 3}, {"name": "w"}))
    changes = diff(old, new)
    assert changes.routes_changed == ()
    assert changes.instances_added == ("a/w",)
    assert changes.instances_removed == ("a/x",)
    assert changes.instances_changed == ("a/z",)
    assert changes.as_dict()["instances"] == {
        "added": ["a/w"],
        "removed": ["a/x"],
        "changed": ["a/z"],
    }


def test_an_instance_whose_options_change_has_changed() -> None:
    old = settings(route("a", {"name": "x", "options": {"latency_ms": 1}}))
    new = settings(route("a", {"name": "x", "options": {"latency_ms": 2}}))
    assert diff(old, new).instances_changed == ("a/x",)


def test_sections_applied_and_sections_that_need_a_restart() -> None:
    old = settings(route("a"))
    new = settings(route("a"), port=9000, kinds=["chat", "custom"], scheduler={"claim_batch": 7})
    changes = diff(old, new)
    assert changes.sections_changed == ("kinds",)
    assert changes.needs_restart == ("port", "scheduler")
    kept = keep_running(old, new)
    assert kept.port == old.port and kept.scheduler == old.scheduler
    assert kept.kinds == ["chat", "custom"]


def test_a_change_that_needs_a_restart_alone_changes_nothing() -> None:
    changes = diff(settings(route("a")), settings(route("a"), store_url="sqlite:///other.db"))
    assert not changes.changed
    assert changes.needs_restart == ("store_url",)
    assert "needing a restart" in changes.summary()


# --- registered instances ----------------------------------------------------------------------


def test_registered_instances_join_their_routes_after_the_configured_ones() -> None:
    s = settings(route("a", {"name": "x"}), route("b"))
    extra = config.registered_instance({"name": "r1", "max_concurrency": 3, "weight": 2.0})
    joined = s.with_instances({"a": [extra], "gone": [extra]})
    assert [i.name for i in joined.route("a").instances] == ["x", "r1"]
    assert joined.route("b") == s.route("b")
    assert joined.rate_limits == {}
    assert diff(s, joined).instances_added == ("a/r1",)


def test_a_configured_instance_keeps_its_name() -> None:
    s = settings(route("a", {"name": "x", "max_concurrency": 1}))
    clash = config.registered_instance({"name": "x", "max_concurrency": 50})
    assert s.with_instances({"a": [clash]}) == s


def test_a_registered_instance_reads_its_secret_from_the_environment() -> None:
    fields = {"name": "r1", "secret_env": "R1_KEY"}
    got = config.registered_instance(fields, env={"R1_KEY": "sk-1"})
    assert got.secret is not None and got.secret.get_secret_value() == "sk-1"
    assert config.registered_instance(fields, env={}).secret is None


# --- a refused file ----------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "taskgate.yaml"
    path.write_text(text)
    return path


def test_a_bad_value_names_the_file_line_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "port: 8000\n"
        "routes:\n"
        "  - name: a\n"
        "    models: [a]\n"
        "    provider: mock\n"
        "    instances:\n"
        "      - {name: a1}\n"
        "      - name: a2\n"
        "        max_concurrency: 0\n",
    )
    with pytest.raises(ConfigError) as caught:
        read(path)
    err = caught.value
    assert (err.line, err.key) == (9, "routes[0].instances[1].max_concurrency")
    assert str(err).startswith(f"{path}:9: routes[0].instances[1].max_concurrency: ")
    assert "greater than or equal to 1" in str(err)


def test_yaml_that_does_not_parse_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "port: 8000\nroutes: [\n  {name: a\n")
    with pytest.raises(ConfigError) as caught:
        read(path)
    assert caught.value.line is not None and caught.value.line >= 3
    assert str(caught.value).startswith(f"{path}:{caught.value.line}: ")


def test_a_rule_across_routes_names_the_file(tmp_path: Path) -> None:
    text = yaml.safe_dump({"routes": [route("a"), route("a")]})
    with pytest.raises(ConfigError, match="duplicate route names"):
        read(write(tmp_path, text))


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        read(tmp_path / "nope.yaml")


async def test_an_unknown_provider_is_refused_before_anything_runs(tmp_path: Path) -> None:
    text = yaml.safe_dump({"routes": [route("a"), route("b", provider="nosuch")]})
    with pytest.raises(ConfigError) as caught:
        await read_checked(write(tmp_path, text))
    assert caught.value.key == "routes[1].provider"
    assert "unknown provider 'nosuch'" in str(caught.value)
    assert caught.value.line is not None


async def test_a_route_its_provider_refuses_is_named(tmp_path: Path) -> None:
    bad = route("b", provider="openai", instances=[{"name": "b1"}])  # no endpoint
    with pytest.raises(ConfigError) as caught:
        await read_checked(write(tmp_path, yaml.safe_dump({"routes": [route("a"), bad]})))
    assert caught.value.key == "routes[1]"


# --- lanes ---------------------------------------------------------------------------------------


def test_relane_keeps_the_state_of_instances_that_stay() -> None:
    old = settings(route("a", {"name": "x"}, {"name": "y", "max_concurrency": 2}), route("b"))
    lanes = build_lanes(old)
    lane = lanes["a"]
    x, y = lane.instances
    x.in_flight, y.consecutive_failures = 3, 2
    provider_before = lane.provider
    new = settings(route("a", {"name": "y", "max_concurrency": 5}, {"name": "z"}), route("c"))
    retired = relane(lanes, new)
    assert set(lanes) == {"a", "c"}
    assert lanes["a"] is lane  # the lane object stays: running calls hold it
    assert [i.name for i in lane.instances] == ["y", "z"]
    assert lane.instances[0] is y and y.capacity == 5 and y.consecutive_failures == 2
    assert lane.provider is not provider_before
    assert provider_before in retired
    assert all(isinstance(p, Provider) for p in retired) and len(retired) == 2  # and b's


def test_relane_leaves_an_unchanged_route_alone() -> None:
    s = settings(route("a"))
    lanes = build_lanes(s)
    provider = lanes["a"].provider
    assert relane(lanes, settings(route("a"))) == []
    assert lanes["a"].provider is provider


def test_relane_keeps_a_workers_route_filter() -> None:
    lanes = build_lanes(settings(route("a"), route("b")), ["a"])
    relane(lanes, settings(route("a"), route("b"), route("c")), ["a"])
    assert set(lanes) == {"a"}


def test_relane_forgets_the_rate_limits_it_had_made() -> None:
    lanes = build_lanes(settings(route("a", {"name": "x"})))
    assert lanes["a"].limits == {}
    relane(lanes, settings(route("a", {"name": "x", "requests_per_minute": 60})))
    assert lanes["a"].limits == {"x": (60, None)}
    free = policy.free_slots(lanes["a"].instances, 0.0)
    assert free == 8
