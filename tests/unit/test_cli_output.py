"""What the CLI prints, without a server: tables and their cells, JSON with ``--json``,
``submit``'s progress lines from a task's events, and ``top``'s frames and panels."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from taskgate.cli import top
from taskgate.cli.base import cell, output, show
from taskgate.cli.watch import PlainView, Watch
from taskgate.client import ApiError

ROWS = [
    {"name": "gpu1", "state": "healthy", "in_flight": 3, "p95": 0.25, "limits": None},
    {"name": "gpu2", "state": "cooling_down", "in_flight": 12, "p95": 1.5, "limits": {"rpm": 5}},
]
COLUMNS = {"name": "instance", "state": "state", "in_flight": "in flight", "p95": "p95 s"}


def test_cells_are_short_and_never_empty() -> None:
    assert [cell(v) for v in (None, "", True, 3, 2.0, 0.123456, 1.5)] == [
        "-",
        "-",
        "yes",
        "3",
        "2",
        "0.123",
        "1.5",
    ]
    assert cell({"requests": 5.0, "tokens": 100}) == "requests=5 tokens=100"
    assert cell({"error": {"type": "x"}}) == 'error={"type":"x"}'
    assert cell(["a", "b"]) == "a, b" and cell([]) == "-"


def test_a_table_has_its_headers_and_a_line_per_row(capsys: pytest.CaptureFixture[str]) -> None:
    output(ROWS, COLUMNS, as_json=False, title="Instances")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Instances"
    assert lines[1].split() == ["instance", "state", "in", "flight", "p95", "s"]
    assert [line.split() for line in lines[3:]] == [
        ["gpu1", "healthy", "3", "0.25"],
        ["gpu2", "cooling_down", "12", "1.5"],
    ]
    assert lines[3].index(" 3 ") > lines[1].index("in flight")  # numbers right-aligned
    assert all(line == line.rstrip() and "\x1b" not in line for line in lines)


def test_a_long_row_is_one_line_when_piped(capsys: pytest.CaptureFixture[str]) -> None:
    long = "x" * 300
    output([{"name": long, "state": "healthy"}], {"name": "n", "state": "s"}, as_json=False)
    assert any(long in line for line in capsys.readouterr().out.splitlines())


def test_json_prints_the_raw_answer_or_the_rows(capsys: pytest.CaptureFixture[str]) -> None:
    output(ROWS, COLUMNS, as_json=True)
    assert json.loads(capsys.readouterr().out) == ROWS
    output(ROWS, COLUMNS, as_json=True, raw={"data": ROWS, "next_cursor": None})
    assert json.loads(capsys.readouterr().out)["data"] == ROWS


def test_an_empty_table_still_has_its_headers(capsys: pytest.CaptureFixture[str]) -> None:
    output([], COLUMNS, as_json=False)
    out = capsys.readouterr().out
    assert "instance" in out and "(none)" in out


def events(watch: Watch, *pairs: tuple[str, Any]) -> list[tuple[str | None, str]]:
    return [watch.apply(event, data) for event, data in pairs]


def test_progress_lines_follow_a_task_through_a_retry() -> None:
    error = {"type": "overloaded", "message": "busy"}
    retry = {"attempt": 1, "error": error, "run_after": time.time() + 2}
    ended = {"status": "SUCCESS", "history": [{"number": 1}, {"number": 2, "instance": "gpu2"}]}
    said = events(
        Watch("t1"),
        ("queued", {"position": 3, "attempts": 0}),
        ("position", {"position": 1}),
        ("started", {"attempt": 1, "instance": "gpu1"}),
        ("retrying", retry),
        ("started", {"attempt": 2, "instance": "gpu2"}),
        ("progress", {"data": {"delta": "Hello "}}),
        ("progress", {"data": {"reasoning_delta": "hmm"}}),
        ("progress", {"data": {"job": "j1", "left": 3}}),
        ("finished", ended),
    )
    assert said[:3] == [
        ("queued: position 3", ""),
        ("queued: position 1", ""),
        ("started: attempt 1 on gpu1", ""),
    ]
    assert said[3][0] is not None
    assert said[3][0].startswith("attempt 1 failed (overloaded: busy); retrying in ")
    assert said[4:] == [
        ("started: attempt 2 on gpu2", ""),
        (None, "Hello "),
        (None, ""),  # thinking is not the answer
        ('progress: {"job": "j1", "left": 3}', ""),
        ("finished: SUCCESS (attempt 2 on gpu2)", ""),
    ]


def test_a_stream_opened_on_a_running_task_names_its_attempt() -> None:
    watch = Watch("t1")
    # the event stream's first event for a task already running: its view, and where it runs
    assert watch.apply("started", {"attempts": 1, "attempt": 1, "instance": "gpu1"}) == (
        "started: attempt 1 on gpu1",
        "",
    )
    assert watch.summary() == "running · attempt 1 on gpu1"


def test_a_failure_names_its_error_and_a_requeued_task_says_so() -> None:
    watch = Watch("t1")
    cut = {"type": "retrying", "task_id": "t1", "status": "PENDING", "truncated": True}
    assert watch.apply("retrying", cut)[0] == "the attempt failed; retrying"
    line, _ = watch.apply("queued", {"position": 1, "attempts": 1})
    assert line == "queued: position 1 (again, after attempt 1)"
    failed = {"status": "FAILED", "error": {"type": "content_refused", "message": "no"}}
    assert watch.apply("finished", failed)[0] == "finished: FAILED (content_refused: no)"


def test_plain_view_puts_streamed_text_on_lines_of_its_own(
    capsys: pytest.CaptureFixture[str],
) -> None:
    view = PlainView("t1")
    view.event("started", {"attempt": 1, "instance": "gpu1"})
    for word in ("mock ", "reply"):
        view.event("progress", {"data": {"delta": word}})
    view.event("finished", {"status": "SUCCESS", "history": [{"number": 1, "instance": "gpu1"}]})
    view.close()
    assert capsys.readouterr().err.splitlines() == [
        "task t1 submitted",
        "  started: attempt 1 on gpu1",
        "mock reply",
        "  finished: SUCCESS (attempt 1 on gpu1)",
    ]


STATS = {
    "at": "2026-01-01T00:00:00.000Z",
    "lanes": [
        {"route": "busy", "priority": "default", "waiting": 4, "running": 2},
        {"route": "quiet", "priority": "low", "waiting": 0, "running": 0, "ended_last_hour": 0},
    ],
    "instances": [{"route": "busy", "instance": "gpu1", "in_flight": 2, "capacity": 8}],
}
ROUTES = {
    "data": [
        {
            "name": "busy",
            "paused": True,
            "waiting": 4,
            "running": 2,
            "capacity": 8,
            "instances": [{"name": "gpu1", "in_flight": 1, "capacity": 8}],
        }
    ]
}
WORKERS = {
    "data": [
        {
            "id": "w-1",
            "host": "h1",
            "routes": ["busy"],
            "in_flight": 2,
            "last_seen": "now",
            "state": "draining",
        }
    ]
}


def frame(snap: top.Snapshot, capsys: pytest.CaptureFixture[str]) -> str:
    show(top.render(snap, "http://tg", None))
    return capsys.readouterr().out


def test_top_shows_queues_and_instances(capsys: pytest.CaptureFixture[str]) -> None:
    out = frame({"/v1/stats": STATS, "/v1/routes": None, "/v1/workers": None}, capsys)
    assert out.startswith("taskgate top · http://tg · 2026-01-01T00:00:00.000Z\n")
    assert "Queues" in out and "Instances" in out and "2/8" in out
    assert "busy" in out and "quiet" not in out  # idle lanes are left out
    assert "Routes" not in out and "Workers" not in out  # the server has no such endpoint


def test_top_shows_routes_and_workers_where_the_server_has_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = frame({"/v1/stats": STATS, "/v1/routes": ROUTES, "/v1/workers": WORKERS}, capsys)
    routes = out[out.index("Routes") : out.index("Queues")]
    assert "paused" in routes and "gpu1" in routes
    workers = out[out.index("Workers") :]
    assert "w-1" in workers and "draining" in workers


class FakeClient:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    def call(self, method: str, path: str) -> Any:
        answer = self.answers[path]
        if isinstance(answer, int):
            raise ApiError(answer, {"error": {"type": "x", "message": path}})
        return answer


def test_top_leaves_out_what_answers_404_and_fails_on_other_errors() -> None:
    older = FakeClient({"/v1/stats": STATS, "/v1/routes": 404, "/v1/workers": 404})
    found = top.fetch(older)  # type: ignore[arg-type]
    assert found == {"/v1/stats": STATS, "/v1/routes": None, "/v1/workers": None}
    refused = FakeClient({"/v1/stats": 403, "/v1/routes": 404, "/v1/workers": 404})
    with pytest.raises(ApiError):
        top.fetch(refused)  # type: ignore[arg-type]
