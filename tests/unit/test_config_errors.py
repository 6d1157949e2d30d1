"""A config file taskgate cannot use is one line per problem: the file, the line of the
offending key and the key's path (or the environment variable that set it), never a
traceback's worth of pydantic."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskgate import config

ROUTES = """\
port: 8000
routes:
  - name: a
    models: [m]
    provider: mock
    instances:
      - {name: i1}
      - name: i2
        max_concurrency: 0
  - name: b
    models: [n]
    provider: mock
    instances: [{name: x, wieght: 2}]
"""


def problems(tmp_path: Path, text: str, **env: str) -> list[str]:
    path = tmp_path / "taskgate.yaml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as caught:
        config.load(path, env=env)
    return str(caught.value).replace(str(path), "FILE").splitlines()


def test_a_bad_value_names_the_line_and_path_of_its_key(tmp_path: Path) -> None:
    assert problems(tmp_path, ROUTES) == [
        "FILE:9: routes[0].instances[1].max_concurrency: "
        "Input should be greater than or equal to 1",
        "FILE:13: routes[1].instances[0].wieght: unknown key",
    ]


def test_a_missing_key_names_the_line_of_what_lacks_it(tmp_path: Path) -> None:
    text = "routes:\n  - name: a\n    models: [m]\n    instances: [{name: i}]\n"
    assert problems(tmp_path, text) == ["FILE:2: routes[0].provider: missing (required)"]


def test_a_validator_of_a_section_names_the_section(tmp_path: Path) -> None:
    text = "log_level: info\nscheduler:\n  priority_weights: {urgent: 5}\n"
    [line] = problems(tmp_path, text)
    assert line.startswith("FILE:3: scheduler.priority_weights: ")
    assert "unknown priority 'urgent'" in line and "Value error" not in line


def test_a_whole_file_check_names_the_file(tmp_path: Path) -> None:
    route = "  - {name: twice, models: [m], provider: mock, instances: [{name: i}]}\n"
    assert problems(tmp_path, "routes:\n" + route * 2) == ["FILE: duplicate route names: ['twice']"]


def test_a_bad_environment_override_names_the_variable(tmp_path: Path) -> None:
    assert problems(tmp_path, "port: 8000\n", TASKGATE_PORT="eighty") == [
        "TASKGATE_PORT: port: Input should be a valid integer, unable to parse string as an integer"
    ]


def test_a_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    [line] = problems(tmp_path, "port: 8000\nroutes:\n  - name: a\n   models: [x]\n")
    assert line.startswith("FILE:4: expected <block end>")


def test_a_file_that_is_not_a_mapping_or_not_there(tmp_path: Path) -> None:
    assert problems(tmp_path, "- a\n- b\n") == ["FILE:1: the top level must be a mapping"]
    with pytest.raises(config.ConfigError, match=r"nowhere\.yaml: No such file"):
        config.load(tmp_path / "nowhere.yaml", env={})


def test_a_secret_never_shows_in_the_message(tmp_path: Path) -> None:
    text = (
        "routes:\n  - name: a\n    models: [m]\n    provider: mock\n"
        "    instances: [{name: i, secret_env: K, max_concurrency: -1}]\n"
    )
    [line] = problems(tmp_path, text, K="sk-secret-value")
    assert "sk-secret-value" not in line and line.startswith("FILE:5: routes[0].instances[0]")
