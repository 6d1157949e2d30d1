"""Using a server as a client: submit, status, wait, cancel, list and read tasks' logs.

``status``, ``wait`` and ``cancel`` print the task as JSON, as ``submit`` does on stdout:
one record, which scripts parse (``--json`` is accepted for the same, as every command
takes it). ``tasks`` and ``logs`` print tables, or JSON with ``--json``."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from taskgate.cli.base import JSON_OPTION, KEY, URL, main, output, print_json
from taskgate.cli.watch import view_for
from taskgate.client import Client
from taskgate.models import Status

# --json on the commands that print one task: the task is JSON already
SAME_JSON = click.option(
    "--json", "as_json", is_flag=True, help="Print the task as JSON (what it prints anyway)."
)


@main.command()
@URL
@KEY
@click.option("--kind", default="chat", show_default=True)
@click.option("--model", required=True)
@click.option("--priority", type=click.Choice(["critical", "default", "low"]), default="default")
@click.option(
    "--param", "params", multiple=True, help="NAME=VALUE (VALUE parsed as JSON if it can be)."
)
@click.option("--timeout", type=float, help="Run timeout, seconds.")
@click.option("--queue-timeout", type=float, help="Longest wait in the queue, seconds.")
@click.option("--idempotency-key")
@click.option("--no-wait", is_flag=True, help="Print the task id and return at once.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="With --no-wait, print the accepted task as JSON rather than its id.",
)
@click.argument("input")
def submit(
    url: str,
    key: str,
    kind: str,
    model: str,
    priority: str,
    params: tuple[str, ...],
    timeout: float | None,
    queue_timeout: float | None,
    idempotency_key: str | None,
    no_wait: bool,
    as_json: bool,
    input: str,
) -> None:
    """Submit a task; by default wait for it, showing its progress on stderr (queue
    position, each attempt and its instance, retries, a chat's text as it streams) and
    printing the ended task as JSON on stdout. Exit code 1 unless it succeeded."""
    with Client(url, key) as c:
        task = c.submit(
            kind,
            model,
            _json_or_str(input),
            params=_params(params),
            priority=priority,
            timeout=timeout,
            queue_timeout=queue_timeout,
            idempotency_key=idempotency_key,
        )
        if no_wait:
            print_json(task) if as_json else click.echo(task["id"])
            return
        final = _watch(c, task)
    print_json(final)
    if final["status"] != "SUCCESS":
        sys.exit(1)


def _watch(c: Client, task: dict[str, Any]) -> dict[str, Any]:
    """Show the task's events until it ends; the ended task. Ctrl-C stops watching only."""
    view = view_for(task["id"])
    final = None
    try:
        for event, data in c.events(task["id"]):
            view.event(event, data)
            if event == "finished":
                final = data
    except KeyboardInterrupt:
        view.close()
        tid = task["id"]
        click.echo(f"stopped watching; task {tid} goes on (taskgate wait {tid})", err=True)
        sys.exit(130)
    finally:
        view.close()
    return final if final is not None else c.get(task["id"])  # the stream ended early


def _json_or_str(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _params(pairs: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--param")
        out[name] = _json_or_str(value)
    return out


@main.command()
@URL
@KEY
@SAME_JSON
@click.argument("task_id")
def status(url: str, key: str, as_json: bool, task_id: str) -> None:
    """Show a task, as JSON."""
    with Client(url, key) as c:
        print_json(c.get(task_id))


@main.command()
@URL
@KEY
@click.option("--timeout", type=float, help="Give up after this many seconds.")
@SAME_JSON
@click.argument("task_id")
def wait(url: str, key: str, timeout: float | None, as_json: bool, task_id: str) -> None:
    """Wait for a task to end and show it, as JSON. Exit code 1 unless it succeeded."""
    with Client(url, key) as c:
        task = c.wait(task_id, timeout)
    print_json(task)
    if task["status"] != "SUCCESS":
        sys.exit(1)


@main.command()
@URL
@KEY
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in Status], case_sensitive=False),
    help="Only tasks in this status (repeatable).",
)
@click.option("--kind")
@click.option("--model")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--cursor", help="The next page: the cursor the previous one printed.")
@JSON_OPTION
def tasks(
    url: str,
    key: str,
    statuses: tuple[str, ...],
    kind: str | None,
    model: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List tasks, newest first (with --json, the page as the API answers it)."""
    with Client(url, key) as c:
        page = c.list(
            status=[s.upper() for s in statuses] or None,
            kind=kind,
            model=model,
            limit=limit,
            cursor=cursor,
        )
    output(page["data"], TASK_COLUMNS, as_json, raw=page)
    if page["next_cursor"] and not as_json:
        click.echo(f"more: --cursor {page['next_cursor']}", err=True)


TASK_COLUMNS = {
    "id": "id",
    "status": "status",
    "kind": "kind",
    "model": "model",
    "route": "route",
    "priority": "priority",
    "attempts": "attempts",
    "created_at": "created",
    "finished_at": "finished",
}
LOG_COLUMNS = {
    "at": "at",
    "event": "event",
    "attempt": "attempt",
    "instance": "instance",
    "message": "message",
    "data": "data",
}


@main.command()
@URL
@KEY
@JSON_OPTION
@click.argument("task_id")
def logs(url: str, key: str, as_json: bool, task_id: str) -> None:
    """Show a task's own log: each transition, attempt, retry, job and webhook try."""
    with Client(url, key) as c:
        found = c.logs(task_id)
    output(found["entries"], LOG_COLUMNS, as_json, title=f"task {task_id}", raw=found)
