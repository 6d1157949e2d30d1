"""Pure parts of observing taskgate: a task's timeline, percentiles, token counts, the log
formatters and set-up, and the settings that turn them on."""

from __future__ import annotations

import json
import logging
import logging.handlers
import time
from pathlib import Path

import pytest

from taskgate import config
from taskgate.models import Attempt, Priority, Status, Task
from taskgate.ops.logs import (
    BatchedFile,
    ConsoleFormatter,
    fields_of,
    json_formatter,
    setup_logging,
)
from taskgate.ops.metrics import Metrics
from taskgate.ops.stats import percentile
from taskgate.ops.timeline import timeline
from taskgate.ops.transitions import Transitions, tokens_in_out
from taskgate.store.task_logs import LogEntry


def task(**over: object) -> Task:
    base = {
        "id": "t1",
        "tenant": "acme",
        "api_key_id": "k",
        "kind": "chat",
        "model": "m",
        "route": "r",
        "priority": Priority.DEFAULT,
        "status": Status.SUCCESS,
        "input": "hi",
        "params": {},
        "created_at": 100.0,
        "updated_at": 110.0,
        "attempts": 2,
        "instance": "i1",
        "finished_at": 110.0,
    }
    return Task(**{**base, **over})  # type: ignore[arg-type]


def test_a_timeline_merges_the_row_the_attempts_and_the_logged_entries_in_time_order() -> None:
    attempts = [
        Attempt(
            "t1",
            1,
            "r",
            "i1",
            101.0,
            102.0,
            "retry",
            {"type": "overloaded", "message": "busy"},
            103.5,
        ),
        Attempt("t1", 2, "r", "i2", 104.0, 109.0, "success"),
    ]
    logged = [LogEntry("t1", 105.0, "job_submitted", 2, "i2", "the backend took job j")]
    entries = timeline(task(), attempts, logged)
    assert [(e["event"], e["attempt"], e["instance"]) for e in entries] == [
        ("submitted", None, None),
        ("started", 1, "i1"),
        ("retry", 1, "i1"),
        ("started", 2, "i2"),
        ("job_submitted", 2, "i2"),
        ("success", 2, "i2"),
        ("ended", 2, "i1"),
    ]
    retry = entries[2]
    assert retry["message"] == "busy"
    assert retry["data"] == {
        "outcome": "retry",
        "seconds": 1.0,
        "error": {"type": "overloaded"},
        "retry_in": 1.5,
    }
    assert entries[-1]["data"] == {"status": "SUCCESS"}
    assert entries[0]["at"].startswith("1970-01-01T00:01:40")


def test_a_timeline_keeps_its_newest_entries_and_shows_no_end_before_one() -> None:
    running = task(status=Status.PROCESSING, finished_at=None)
    logged = [LogEntry("t1", 100.0 + i, "webhook", message=str(i)) for i in range(1, 10)]
    entries = timeline(running, [], logged, limit=3)
    assert [e["message"] for e in entries] == ["7", "8", "9"]
    assert all(e["event"] != "ended" for e in timeline(running, [], []))


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0 and percentile(values, 0.95) == 95.0
    assert percentile([3.0], 0.95) == 3.0 and percentile([], 0.5) is None


def test_tokens_in_and_out_read_either_naming() -> None:
    assert tokens_in_out({"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}) == (3, 5)
    assert tokens_in_out({"input_tokens": 2, "output_tokens": 7}) == (2, 7)
    assert tokens_in_out({"total_tokens": True}) == (0, 0)


def record(**extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(
        "taskgate.tasks", logging.INFO, __file__, 1, "task %s", ("ended",), None
    )
    rec.__dict__.update(extra)
    return rec


def test_json_lines_carry_the_extra_fields_level_logger_and_time() -> None:
    line = json.loads(json_formatter().format(record(task_id="t1", attempt=2)))
    assert line["message"] == "task ended" and line["level"] == "INFO"
    assert line["logger"] == "taskgate.tasks" and line["task_id"] == "t1" and line["attempt"] == 2
    assert "time" in line


def test_console_lines_append_the_fields() -> None:
    text = ConsoleFormatter().format(record(task_id="t1", reason="mock busy"))
    assert text.endswith("taskgate.tasks: task ended task_id=t1 reason='mock busy'")


def test_logging_to_a_file_rotates_at_midnight_keeping_the_retention(tmp_path: Path) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        setup_logging("debug", "json", str(tmp_path / "logs" / "taskgate.log"), retention_days=3)
        [rotating] = [h for h in root.handlers if isinstance(h, BatchedFile)]
        assert rotating.when == "MIDNIGHT" and rotating.backupCount == 3
        assert root.level == logging.DEBUG
        logging.getLogger("taskgate.tasks").info("task submitted", extra={"task_id": "t9"})
        rotating.flush_now()
        written = json.loads((tmp_path / "logs" / "taskgate.log").read_text().splitlines()[-1])
        assert written["task_id"] == "t9"
    finally:
        logging.basicConfig(handlers=before, force=True)


def test_observing_settings_come_from_yaml_and_the_environment(tmp_path: Path) -> None:
    conf = tmp_path / "c.yaml"
    conf.write_text("metrics: {require_key: true}\nlog_format: console\n")
    env = {"TASKGATE_METRICS_PORT": "9100", "TASKGATE_LOG_FILE": "/var/log/tg.log"}
    s = config.load(conf, env=env)
    assert s.metrics.port == 9100 and s.metrics.require_key and s.metrics.enabled
    assert s.log_file == "/var/log/tg.log" and s.log_format == "console"
    assert s.log_retention_days == 7 and not s.access_log and not s.log_errors_to_store
    with pytest.raises(ValueError):
        config.load(conf, env={"TASKGATE_LOG_FORMAT": "xml"})


def test_batched_lines_reach_the_file_soon_warnings_at_once_and_all_at_close(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.log"
    handler = BatchedFile(str(path), retention_days=1)
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        handler.handle(record(levelno=logging.WARNING))  # a warning: written at once
        assert path.read_text() == "task ended\n"
        handler.handle(record())
        deadline = time.monotonic() + 30
        while path.read_text().count("\n") < 2:  # the flusher writes it within moments
            assert time.monotonic() < deadline
            time.sleep(0.01)
        for _ in range(3):
            handler.handle(record())
    finally:
        handler.close()
    assert path.read_text().count("task ended") == 5  # closing wrote the rest


def test_counts_and_times_render_as_prometheus_counters_and_histograms() -> None:
    m = Metrics()
    m.submitted.inc("r", "chat")
    m.submitted.inc("r", "chat", amount=2)
    m.tokens.inc("r", "m", "in", amount=0)
    for seconds in (0.004, 0.005, 0.3, 7200):  # on a bound counts as under it ("le")
        m.task_time.observe(seconds, "r")
    text = m.render().decode()
    assert 'taskgate_tasks_submitted_total{kind="chat",route="r"} 3.0' in text
    assert 'taskgate_tokens_total{direction="in",model="m",route="r"} 0.0' in text
    buckets = {
        line.split('le="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("taskgate_task_seconds_bucket")
    }
    assert buckets["0.005"] == 2 and buckets["0.25"] == 2 and buckets["0.5"] == 3
    assert buckets["3600.0"] == 3 and buckets["+Inf"] == 4
    assert 'taskgate_task_seconds_count{route="r"} 4.0' in text
    assert 'taskgate_task_seconds_sum{route="r"} 7200.309' in text


def test_a_lost_lease_is_counted_and_warned_of(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    requeued = task(status=Status.PENDING, finished_at=None)
    with caplog.at_level(logging.INFO, logger="taskgate.tasks"):
        Transitions(metrics).lost([requeued])
    assert metrics.attempts.values == {("r", "i1", "lost"): 1}
    [line] = caplog.records
    assert line.levelno == logging.WARNING
    assert fields_of(line) == {
        "task_id": "t1",
        "tenant": "acme",
        "route": "r",
        "model": "m",
        "instance": "i1",
        "attempt": 2,
        "then": "requeued",
    }


def test_a_batched_handler_closed_twice_says_nothing(tmp_path: Path) -> None:
    """The app closes its handlers, then logging.shutdown closes them again at exit."""
    handler = BatchedFile(str(tmp_path / "t.log"), retention_days=1)
    handler.close()
    handler.close()  # (raised AttributeError: its stop event was logging's _closed flag)
