"""The ``taskgate`` command as people and scripts use it, through its output: tables with
headers, ``--json`` that parses, ``submit``'s progress, ``top``, one-line errors (never a
traceback) and shell completion."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from taskgate.client import Client
from tests.e2e.conftest import BIN, Server, free_port, mock_route, until


def header(text: str) -> list[str]:
    """The words of a table's header line (the first line, or the one after its title)."""
    lines = text.splitlines()
    return lines[1 if "─" in lines[2] else 0].split()


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr
    [line] = out.stderr.splitlines()
    assert line.startswith("Error: ")
    return line


def test_tasks_stats_and_logs_are_tables_or_json(server: Server) -> None:
    admin = server.create_key("acme", admin=True)
    with Client(server.url, admin) as c:
        ok = c.wait(c.submit("chat", "mock", "hi")["id"], timeout=20)
        failed = c.submit("chat", "mock", "x", params={"mock_fail_attempts": 9})
        failed = c.wait(failed["id"], timeout=20)

    listing = server.cli("tasks", TASKGATE_KEY=admin).stdout
    assert header(listing)[:4] == ["id", "status", "kind", "model"]
    rows = {line.split()[0]: line.split()[1] for line in listing.splitlines()[2:]}
    assert rows == {ok["id"]: "SUCCESS", failed["id"]: "FAILED"}
    page = json.loads(
        server.cli("tasks", "--json", "--status", "failed", TASKGATE_KEY=admin).stdout
    )
    assert [t["id"] for t in page["data"]] == [failed["id"]] and "next_cursor" in page

    stats = server.cli("stats", TASKGATE_KEY=admin).stdout
    assert "Lanes (route, priority)" in stats and "Instances" in stats
    assert "oldest wait s" in stats and "mock-1" in stats
    assert json.loads(server.cli("stats", "--json", TASKGATE_KEY=admin).stdout)["instances"][0][
        "capacity"
    ]

    log = server.cli("logs", failed["id"], TASKGATE_KEY=admin).stdout
    assert header(log) == ["at", "event", "attempt", "instance", "message", "data"]
    assert "mock overloaded on attempt 3" in log
    entries = json.loads(server.cli("logs", "--json", failed["id"], TASKGATE_KEY=admin).stdout)[
        "entries"
    ]
    assert entries[0]["event"] == "submitted" and entries[-1]["event"] == "ended"


def test_errors_are_one_line_never_a_traceback(server: Server, key: str) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(server.cli("tasks", check=False, TASKGATE_KEY=key, TASKGATE_URL=nowhere))
    assert f"cannot reach taskgate at {nowhere}" in line
    line = one_line_error(
        server.cli("submit", "--model", "mock", "x", "--url", nowhere, "--key", key, check=False)
    )
    assert "cannot reach taskgate" in line

    line = one_line_error(server.cli("tasks", check=False, TASKGATE_KEY="tg_wrong"))
    assert "refused the key: invalid or revoked API key" in line and "TASKGATE_KEY" in line
    line = one_line_error(server.cli("top", "--once", check=False, TASKGATE_KEY=key))
    assert "not allowed with this key: this needs an admin key (403)" in line
    line = one_line_error(server.cli("status", "nope", check=False, TASKGATE_KEY=key))
    assert "404" in line and "nope" in line
    line = one_line_error(
        server.cli("submit", "--model", "gpt-9", "x", check=False, TASKGATE_KEY=key)
    )
    assert "gpt-9" in line

    missing = run("tasks", TASKGATE_URL=server.url)  # no key at all: click's usage error
    assert missing.returncode == 2 and "Missing option '--key'" in missing.stderr


BAD_CONFIG = """\
port: 8000
routes:
  - name: a
    models: [m]
    provider: mock
    instances:
      - name: a-1
        max_concurrency: 0
"""


@pytest.mark.parametrize("command", [["serve"], ["api"], ["worker"], ["keys", "list"]])
def test_a_bad_config_file_is_one_line_with_file_line_and_key(
    tmp_path: Path, command: list[str]
) -> None:
    path = tmp_path / "taskgate.yaml"
    path.write_text(BAD_CONFIG)
    out = run(*command, "--config", str(path))
    line = one_line_error(out)
    assert line == (
        f"Error: {path}:8: routes[0].instances[0].max_concurrency: "
        "Input should be greater than or equal to 1"
    )


def test_a_config_file_that_is_not_yaml_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "taskgate.yaml"
    path.write_text("port: 8000\nroutes:\n  - name: a\n   models: [m]\n")
    line = one_line_error(run("serve", "--config", str(path)))
    assert line.startswith(f"Error: {path}:4: expected <block end>")


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")}
    return subprocess.run(
        [str(BIN), *args], capture_output=True, text=True, env={**clean, **env}, timeout=60
    )


def test_top_once_prints_one_frame(server: Server) -> None:
    admin = server.create_key("acme", admin=True)
    with Client(server.url, admin) as c:
        c.wait(c.submit("chat", "mock", "hi")["id"], timeout=20)
    out = server.cli("top", "--once", TASKGATE_KEY=admin)
    assert out.stdout.startswith(f"taskgate top · {server.url} · ")
    assert "Queues (route, priority" in out.stdout and "Instances" in out.stdout
    assert "mock-1" in out.stdout and "0/16" in out.stdout and "\x1b" not in out.stdout
    with server.client(admin) as c:  # panels of endpoints the server has, only
        for path, title in (("/v1/routes", "Routes\n"), ("/v1/workers", "Workers\n")):
            assert (title in out.stdout) == (c.get(path).status_code != 404)
    found = json.loads(server.cli("top", "--json", TASKGATE_KEY=admin).stdout)
    assert found["stats"]["instances"][0]["instance"] == "mock-1"


@pytest.fixture
def one_slot(make_server: Any) -> Server:
    """A server whose one instance runs one call at a time: a second task waits."""
    s: Server = make_server([mock_route(instances=[{"name": "mock-1", "max_concurrency": 1}])])
    s.start()
    return s


def test_submit_shows_position_attempts_retries_and_streamed_text(one_slot: Server) -> None:
    key = one_slot.create_key("acme")
    with Client(one_slot.url, key) as c:
        blocker = c.submit("chat", "mock", "wait", params={"mock_latency_ms": 60_000})
        until(lambda: c.get(blocker["id"])["status"] == "PROCESSING", what="blocker runs")
        env = {**os.environ, "TASKGATE_URL": one_slot.url, "TASKGATE_KEY": key}
        args = ["--param", "stream=true", "--param", "mock_fail_attempts=1"]
        proc = subprocess.Popen(
            [str(BIN), "submit", "--model", "mock", *args, "hello there"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stderr is not None
        seen = [proc.stderr.readline(), proc.stderr.readline()]  # waits for each line
        assert seen[0].startswith("task ") and seen[1] == "  queued: position 1\n"
        c.cancel(blocker["id"])  # the slot frees: the task runs
        out, err = proc.communicate(timeout=30)
    lines = [line.rstrip() for line in err.splitlines()]
    assert in_order(
        lines,
        "  started: attempt 1 on mock-1",
        "  attempt 1 failed (overloaded: mock overloaded on attempt 1); retrying in ",
        "  started: attempt 2 on mock-1",
        "mock reply to: hello there",
        "  finished: SUCCESS (attempt 2 on mock-1)",
    )
    assert "\x1b" not in err  # not a terminal: plain lines
    assert json.loads(out)["result"]["output"]["text"] == "mock reply to: hello there"
    assert proc.returncode == 0


def in_order(lines: list[str], *starts: str) -> bool:
    """Whether lines starting so come in this order (other lines may come between)."""
    rest = iter(lines)
    return all(any(line.startswith(start) for line in rest) for start in starts)


def test_the_event_stream_of_a_running_task_names_its_attempt(server: Server, key: str) -> None:
    with Client(server.url, key) as c:
        task = c.submit("chat", "mock", "slow", params={"mock_latency_ms": 60_000})
        until(lambda: c.get(task["id"])["status"] == "PROCESSING", what="it runs")
        events = c.events(task["id"])
        event, data = next(events)
        assert (event, data["attempt"], data["instance"]) == ("started", 1, "mock-1")
        c.cancel(task["id"])
        assert [e for e, _ in events][-1] == "finished"


def test_submit_no_wait_prints_the_id_or_the_task(server: Server, key: str) -> None:
    task_id = server.cli("submit", "--no-wait", "--model", "mock", "x", TASKGATE_KEY=key).stdout
    accepted = server.cli("submit", "--no-wait", "--json", "--model", "mock", "x", TASKGATE_KEY=key)
    assert json.loads(accepted.stdout)["status"] in ("PENDING", "PROCESSING")
    assert json.loads(server.cli("status", "--json", task_id.strip(), TASKGATE_KEY=key).stdout)


def test_shell_completion_scripts_generate(tmp_path: Path) -> None:
    for shell, marker in (
        ("bash", "complete -o nosort -F _taskgate_completion taskgate"),
        ("zsh", "#compdef taskgate"),
        ("fish", "complete --no-files --command taskgate"),
    ):
        out = run(_TASKGATE_COMPLETE=f"{shell}_source")
        assert out.returncode == 0 and marker in out.stdout, out.stderr
    words = run(_TASKGATE_COMPLETE="bash_complete", COMP_WORDS="taskgate to", COMP_CWORD="1")
    assert "plain,top" in words.stdout.splitlines()


def test_the_url_and_key_can_be_given_as_options(server: Server, key: str) -> None:
    out = run("tasks", "--json", "--url", server.url, "--key", key)  # no TASKGATE_* at all
    assert json.loads(out.stdout)["data"] == []
