"""Loading settings: YAML, route resolution, validation, secrets, environment overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from taskgate import config
from taskgate.config import Settings

SECRET = "sk-very-secret-value-123"


def route(name: str, models: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "models": models,
        "provider": "mock",
        "instances": [{"name": "i1"}],
    } | extra


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "taskgate.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def load(tmp_path: Path, data: Any, **env: str) -> Settings:
    return config.load(write(tmp_path, data), env=env)


def test_yaml_values_are_loaded(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        {
            "port": 9123,
            "store_url": "sqlite:///x.db",
            "scheduler": {"lease_seconds": 12, "priority_weights": {"critical": 9, "low": 2}},
            "routes": [route("r1", ["m1"], timeout=42, retry={"max_attempts": 5})],
        },
    )
    assert s.port == 9123
    assert s.store_url == "sqlite:///x.db"
    assert s.scheduler.lease_seconds == 12
    r = s.route("r1")
    assert (r.timeout, r.retry.max_attempts, r.provider) == (42, 5, "mock")
    assert r.instances[0].name == "i1"


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    s = config.load(path, env={})
    assert s == Settings()


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mapping"):
        load(tmp_path, ["not", "a", "mapping"])


def test_unknown_keys_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="prot"):
        load(tmp_path, {"prot": 8000})


def test_exact_model_name_beats_an_earlier_glob(tmp_path: Path) -> None:
    s = load(tmp_path, {"routes": [route("glob", ["gpt-*"]), route("exact", ["gpt-4o"])]})
    assert s.resolve("gpt-4o").name == "exact"  # type: ignore[union-attr]
    assert s.resolve("gpt-4o-mini").name == "glob"  # type: ignore[union-attr]


def test_glob_resolution(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        {"routes": [route("gemini", ["gemini-*"]), route("other", ["llama-*", "gemini-*"])]},
    )
    assert s.resolve("gemini-2.5-pro").name == "gemini"  # type: ignore[union-attr]
    assert s.resolve("llama-3").name == "other"  # type: ignore[union-attr]
    assert s.resolve("gemini") is None  # the glob needs the dash
    assert s.resolve("GEMINI-2.5-pro") is None  # matching is case-sensitive
    assert s.resolve("unknown") is None


def test_unknown_fallback_route_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"unknown routes.*nowhere"):
        load(tmp_path, {"routes": [route("a", ["m"], fallbacks=["nowhere"])]})


def test_known_fallback_route_is_accepted(tmp_path: Path) -> None:
    s = load(tmp_path, {"routes": [route("a", ["m"], fallbacks=["b"]), route("b", ["n"])]})
    assert s.route("a").fallbacks == ["b"]


def test_duplicate_route_names_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"duplicate route names.*twice"):
        load(tmp_path, {"routes": [route("twice", ["a"]), route("twice", ["b"])]})


def test_unknown_route_lookup_raises_key_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        load(tmp_path, {"routes": [route("a", ["m"])]}).route("b")


def secret_config() -> dict[str, Any]:
    inst = {"name": "i1", "endpoint": "http://x", "secret_env": "MY_KEY"}
    return {"routes": [route("a", ["m"], instances=[inst])]}


def test_secret_comes_from_the_env_mapping(tmp_path: Path) -> None:
    s = load(tmp_path, secret_config(), MY_KEY=SECRET)
    secret = s.route("a").instances[0].secret
    assert secret is not None and secret.get_secret_value() == SECRET


def test_missing_secret_env_leaves_no_secret(tmp_path: Path) -> None:
    s = load(tmp_path, secret_config())
    assert s.route("a").instances[0].secret is None


def test_secret_never_shown(tmp_path: Path) -> None:
    s = load(tmp_path, secret_config(), MY_KEY=SECRET)
    for text in (repr(s), str(s), s.model_dump_json(), repr(s.route("a").instances[0])):
        assert SECRET not in text
    assert "MY_KEY" in s.model_dump_json()  # the variable's name is fine to show


def test_env_overrides_the_file(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        {"port": 8000, "host": "127.0.0.1"},
        TASKGATE_PORT="9999",
        TASKGATE_HOST="0.0.0.0",
        TASKGATE_STORE_URL="postgresql://db/x",
        TASKGATE_FILES_URL="s3://bucket",
        TASKGATE_LOG_LEVEL="debug",
    )
    assert (s.port, s.host) == (9999, "0.0.0.0")
    assert (s.store_url, s.files_url, s.log_level) == ("postgresql://db/x", "s3://bucket", "debug")


def test_invalid_env_override_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="port"):
        load(tmp_path, {}, TASKGATE_PORT="eighty")


def test_taskgate_config_env_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"port": 7001})
    assert config.load(env={"TASKGATE_CONFIG": str(path)}).port == 7001


def test_packaged_default_serves_mock(tmp_path: Path) -> None:
    s = config.load(env={})
    r = s.resolve("mock")
    assert r is not None and r.provider == "mock"
    assert s.resolve("mock-fast") is r
    assert s.scheduler.priority_weights == {"critical": 6, "default": 3, "low": 1}


def test_unknown_priority_weight_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="unknown priority"):
        load(tmp_path, {"scheduler": {"priority_weights": {"urgent": 5}}})


@pytest.mark.parametrize(
    ("prefix", "problem"),
    [("/v1", "taskgate's own"), ("/ui/pages", "taskgate's own"), ("chat", "a path like")],
)
def test_static_dirs_may_not_take_taskgate_s_own_paths(
    tmp_path: Path, prefix: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        Settings(static_dirs={prefix: str(tmp_path)})


def test_static_dirs_need_an_existing_folder(tmp_path: Path) -> None:
    assert Settings(static_dirs={"/chat": str(tmp_path)}).static_dirs == {"/chat": str(tmp_path)}
    with pytest.raises(ValueError, match="no folder at"):
        Settings(static_dirs={"/chat": str(tmp_path / "missing")})


def test_the_reserved_prefixes_cover_every_path_of_the_app() -> None:
    from taskgate.api.app import create_app

    app = create_app(Settings())
    paths = [*app.openapi()["paths"], "/ui/static/x", "/docs", "/openapi.json"]
    assert {p.strip("/").split("/")[0] for p in paths} <= config.RESERVED_PREFIXES
