"""Logging set-up for a taskgate process: the standard library's logging with one handler
on the console and, optionally, one on a file rotated at midnight that keeps
``log_retention_days`` days. Lines are JSON (python-json-logger, encoded with orjson) or,
on a terminal, readable text with the structured fields appended as ``key=value``. Lines
are written in batches (at most ``FLUSH_EVERY`` seconds late; warnings and errors at once).

Structured fields travel as ``extra={"fields": {...}}`` on the log call (one attribute for
logging to copy onto the record, not one per field), or as any other ``extra``; every
formatter shows them.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

# a record's own attributes: anything else on it came in ``extra`` and is a field
# (uvicorn adds "color_message", the message with terminal colours)
_STANDARD = frozenset(RESERVED_ATTRS) | {"message", "asctime", "taskName", "color_message"}


class JsonFormatter(OrjsonFormatter):
    """python-json-logger's orjson formatter, filling each line's fields the short way:
    ``time``, ``level``, ``logger``, ``message``, then the call's ``extra`` fields (its own
    ``add_fields`` weighs every record attribute against renames and reserved names, which
    cost more than the rest of a line; a line per task transition makes that count)."""

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, tz=UTC)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.message
        log_data.update(message_dict)  # exc_info, stack_info
        log_data.update(fields_of(record))


def json_formatter() -> logging.Formatter:
    return JsonFormatter()


class ConsoleFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``, for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = fields_of(record)
        if not fields:
            return line
        return line + " " + " ".join(f"{k}={_text(v)}" for k, v in fields.items())


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a log call passed: ``extra={"fields": {...}}``, or else its
    other ``extra`` attributes."""
    fields = record.__dict__.get("fields")
    if isinstance(fields, dict):
        return fields
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def _text(value: Any) -> str:
    text = str(value)
    return repr(text) if not text or " " in text else text


FLUSH_EVERY = 0.2  # seconds a line may wait in a buffer before it is written


class Batched(logging.StreamHandler):
    """A stream handler that writes its lines in batches: a thread flushes the buffer every
    ``FLUSH_EVERY`` seconds, a warning or an error at once, and closing (at exit) whatever
    is left. Flushing after every line, as logging does, costs a system call per line: as
    much as making and formatting the line."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._start_flushing()

    def _start_flushing(self) -> None:
        self._stopped = threading.Event()  # (not _closed: logging.Handler has its own)
        threading.Thread(target=self._flush_often, name="log-flush", daemon=True).start()

    def flush(self) -> None:
        """Called after every line: the thread flushes instead."""

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if record.levelno >= logging.WARNING:
            self.flush_now()

    def flush_now(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self.stream is not None and not self.stream.closed:
                self.stream.flush()

    def _flush_often(self) -> None:
        while not self._stopped.wait(FLUSH_EVERY):
            self.flush_now()

    def close(self) -> None:
        self._stopped.set()
        self.flush_now()
        super().close()


class BatchedFile(Batched, logging.handlers.TimedRotatingFileHandler):
    """A file rotated at midnight, written in batches."""

    def __init__(self, path: str, retention_days: int) -> None:
        logging.handlers.TimedRotatingFileHandler.__init__(
            self, path, when="midnight", backupCount=retention_days, encoding="utf-8"
        )
        self._start_flushing()


def _stderr() -> logging.Handler:
    """stderr, written in batches where it is a file descriptor of its own."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # replaced (a test's capture)
        return logging.StreamHandler(sys.stderr)
    return Batched(open(fd, "w", buffering=1 << 16, encoding="utf-8", closefd=False))


def setup_logging(
    level: str,
    fmt: str = "auto",
    file: str | None = None,
    retention_days: int = 7,
) -> None:
    """Log at ``level`` to stderr (JSON, or text when ``fmt`` is ``auto`` and stderr is a
    terminal) and, with ``file``, also as JSON to that file, rotated at midnight."""
    console = _stderr()
    as_text = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    console.setFormatter(ConsoleFormatter() if as_text else json_formatter())
    handlers: list[logging.Handler] = [console]
    if file:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        rotating = BatchedFile(file, retention_days)
        rotating.setFormatter(json_formatter())
        handlers.append(rotating)
    logging.basicConfig(level=level.upper(), handlers=handlers, force=True)
    # No line shows where in the source it was logged, or the thread or process: the logging
    # HOWTO's "optimization" switches, worth a fifth of a line's cost here.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
