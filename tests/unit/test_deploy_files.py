"""The Dockerfile and compose.yaml stay in step with the code: the commands, settings and
URLs they use are ones taskgate knows (no Docker here to run them)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml
from click.testing import CliRunner

from taskgate import config, files
from taskgate.cli import main

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def taskgate_services() -> dict:
    return {n: s for n, s in compose()["services"].items() if s.get("image") == "taskgate:latest"}


def test_compose_runs_gateways_and_workers_with_real_commands() -> None:
    services = taskgate_services()
    assert {s["command"][0] for s in services.values()} == {"api", "worker"}
    for s in services.values():
        result = CliRunner().invoke(main, [*s["command"], "--help"])
        assert result.exit_code == 0, result.output


def test_compose_settings_are_ones_the_config_reads(monkeypatch: object) -> None:
    for s in taskgate_services().values():
        env = s["environment"]
        known = set(config._ENV_OVERRIDES) | {"TASKGATE_CONFIG"}
        assert set(env) <= known
        conf = REPO / "deploy" / "taskgate.yaml"
        assert env["TASKGATE_CONFIG"].endswith(conf.name)
        settings = config.load(conf, env={k: v for k, v in env.items() if k != "TASKGATE_CONFIG"})
        assert settings.store_url.startswith("postgresql://")
        assert settings.events_url and settings.events_url.startswith("redis://")
        files.from_url(settings.files_url, settings.files_key_id, "x")  # a URL it accepts


def test_the_image_installs_extras_that_exist() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    line = next(li for li in (REPO / "Dockerfile").read_text().splitlines() if "pip install" in li)
    wanted = line.split("'.[", 1)[1].split("]'", 1)[0].split(",")
    assert set(wanted) <= set(extras)
