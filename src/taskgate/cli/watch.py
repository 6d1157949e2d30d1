"""How ``taskgate submit`` shows a task while it runs, on stderr: its place in the queue, each
attempt's start (its number and instance), retries with the error that caused them, other
progress and, for a chat that streams, the text as it comes. On a terminal that is one live
line (Rich) under the streamed text; elsewhere (a pipe, a log, a test) plain lines with no
control codes. The task's final JSON is the command's to print, on stdout.

:class:`Watch` is what the events say so far, without I/O; :class:`PlainView` and
:class:`LiveView` show it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import click

from taskgate.cli.base import STYLES, stderr

TEXT_KEYS = ("delta",)  # progress that is the answer's text (``reasoning_delta`` is not)


@dataclass
class Watch:
    """One task as its server-sent events describe it."""

    task_id: str
    state: str = "submitted"
    position: int | None = None
    attempt: int | None = None
    instance: str | None = None
    chars: int = 0  # of streamed text
    status: str | None = None  # once finished

    def apply(self, event: str, data: Any) -> tuple[str | None, str]:
        """Take one event: the line it is worth (or None) and the text it streams (or "")."""
        data = data if isinstance(data, dict) else {}
        if event in ("queued", "position"):
            self.state, self.position = "queued", data.get("position", self.position)
            again = f" (again, after attempt {data['attempts']})" if data.get("attempts") else ""
            return f"queued: position {cell_of(self.position)}{again}", ""
        if event == "started":
            self.state = "running"
            self.attempt = data.get("attempt") or data.get("attempts") or self.attempt
            self.instance = data.get("instance") or self.instance
            return f"started: {self.where()}", ""
        if event == "progress":
            return self._progress(data.get("data"))
        if event == "retrying":
            self.state = "retrying"
            return self._retrying(data), ""
        if event == "finished":
            return self._finished(data), ""
        return None, ""

    def where(self) -> str:
        attempt = f"attempt {cell_of(self.attempt)}"
        return f"{attempt} on {self.instance}" if self.instance else attempt

    def _progress(self, data: Any) -> tuple[str | None, str]:
        if isinstance(data, dict):
            text = "".join(v for k in TEXT_KEYS if isinstance(v := data.get(k), str))
            if text or "reasoning_delta" in data:
                self.chars += len(text)
                return None, text
        return f"progress: {json.dumps(data, ensure_ascii=False)}", ""

    def _retrying(self, data: dict[str, Any]) -> str:
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        why = f" ({error.get('type')}: {error.get('message')})" if error else ""
        failed = f"attempt {data['attempt']}" if data.get("attempt") else "the attempt"
        run_after = data.get("run_after")  # not there when the event was cut down to size
        if not isinstance(run_after, int | float):
            return f"{failed} failed{why}; retrying"
        return f"{failed} failed{why}; retrying in {max(0.0, run_after - time.time()):.1f} s"

    def _finished(self, task: dict[str, Any]) -> str:
        self.state, self.status = "finished", str(task.get("status"))
        history = task.get("history") or []
        if history:
            last = history[-1]
            self.attempt, self.instance = last.get("number"), last.get("instance")
        error = task.get("error") if isinstance(task.get("error"), dict) else None
        why = f"; {error.get('type')}: {error.get('message')}" if error else ""
        where = f" ({self.where()}{why})" if history else (f" ({why[2:]})" if why else "")
        return f"finished: {self.status}{where}"

    def summary(self) -> str:
        """The live line: where the task is now."""
        if self.state == "queued":
            return f"queued · position {cell_of(self.position)}"
        if self.state == "running":
            chars = f" · {self.chars} characters" if self.chars else ""
            return f"running · {self.where()}{chars}"
        if self.state == "retrying":
            return f"waiting to retry · {self.where()} failed"
        return self.state


def cell_of(value: Any) -> str:
    return "?" if value is None else str(value)


class PlainView:
    """Plain lines on stderr; streamed text as it comes, on lines of its own."""

    def __init__(self, task_id: str) -> None:
        self.watch = Watch(task_id)
        self.mid_line = False  # streamed text that has not ended its line
        click.echo(f"task {task_id} submitted", err=True)

    def event(self, event: str, data: Any) -> None:
        line, text = self.watch.apply(event, data)
        if text:
            click.echo(text, err=True, nl=False)
            self.mid_line = not text.endswith("\n")
        if line is not None:
            self._end_text()
            click.echo(f"  {line}", err=True)

    def close(self) -> None:
        self._end_text()

    def _end_text(self) -> None:
        if self.mid_line:
            click.echo(err=True)
            self.mid_line = False


class LiveView:
    """A live line on a terminal: a spinner and where the task is, under the streamed text
    (whose finished lines scroll up above it)."""

    def __init__(self, task_id: str, console: Any) -> None:
        from rich.live import Live

        self.watch = Watch(task_id)
        self.console = console
        self.partial = ""  # the streamed line not yet ended
        console.print(f"task {task_id} submitted", style="dim")
        self.live = Live(self._render(), console=console, refresh_per_second=12, transient=True)
        self.live.start()

    def event(self, event: str, data: Any) -> None:
        from rich.text import Text

        line, text = self.watch.apply(event, data)
        if text:
            *done, self.partial = (self.partial + text).split("\n")
            for ended in done:
                self.console.print(Text(ended))
        if line is not None and event in ("retrying", "finished"):  # kept, under the text
            self._end_text()
            self.console.print(Text(f"  {line}", style=_style(self.watch.status)))
        self.live.update(self._render(), refresh=True)

    def close(self) -> None:
        self.live.stop()
        self._end_text()

    def _end_text(self) -> None:
        from rich.text import Text

        if self.partial:
            text, self.partial = self.partial, ""
            if self.live.is_started:
                self.live.update(self._render(), refresh=True)  # the live line without it
            self.console.print(Text(text))

    def _render(self) -> Any:
        from rich.console import Group
        from rich.spinner import Spinner
        from rich.text import Text

        spinner = Spinner("dots", text=Text(self.watch.summary(), style="cyan"))
        return Group(Text(self.partial), spinner) if self.partial else spinner


def _style(status: str | None) -> str:
    return STYLES.get(status or "", "yellow")


def view_for(task_id: str) -> PlainView | LiveView:
    """A live view on a terminal, plain lines otherwise."""
    console = stderr()
    return LiveView(task_id, console) if console.is_terminal else PlainView(task_id)
