"""Using a server as a client: submit, status, wait, cancel, list and read tasks' logs."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from taskgate.cli.base import KEY, URL, answer, main, print_json
from taskgate.client import Client


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
    input: str,
) -> None:
    """Submit a task; by default wait for it, showing its progress."""
    with Client(url, key) as c:
        task = answer(
            lambda: c.submit(
                kind,
                model,
                _json_or_str(input),
                params=_params(params),
                priority=priority,
                timeout=timeout,
                queue_timeout=queue_timeout,
                idempotency_key=idempotency_key,
            )
        )
        if no_wait:
            click.echo(task["id"])
            return
        click.echo(f"task {task['id']} queued", err=True)
        final = task
        for event, data in c.events(task["id"]):
            _show_progress(event, data)
            if event == "finished":
                final = data
        print_json(final)
        if final["status"] != "SUCCESS":
            sys.exit(1)


def _show_progress(event: str, data: Any) -> None:
    if event == "position":
        click.echo(f"  position in queue: {data['position']}", err=True)
    elif event == "queued":
        click.echo(f"  position in queue: {data.get('position', '?')}", err=True)
    elif event == "started":
        click.echo(f"  started (attempt {data.get('attempt')}, {data.get('instance')})", err=True)
    elif event == "progress":
        click.echo(f"  progress: {json.dumps(data.get('data'), ensure_ascii=False)}", err=True)
    elif event == "retrying":
        click.echo("  failed; will retry", err=True)
    elif event == "finished":
        click.echo(f"  finished: {data['status']}", err=True)


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
@click.argument("task_id")
def status(url: str, key: str, task_id: str) -> None:
    """Show a task."""
    with Client(url, key) as c:
        print_json(answer(lambda: c.get(task_id)))


@main.command()
@URL
@KEY
@click.option("--timeout", type=float, help="Give up after this many seconds.")
@click.argument("task_id")
def wait(url: str, key: str, timeout: float | None, task_id: str) -> None:
    """Wait for a task to end and show it."""
    with Client(url, key) as c:
        task = answer(lambda: c.wait(task_id, timeout))
        print_json(task)
        if task["status"] != "SUCCESS":
            sys.exit(1)


@main.command()
@URL
@KEY
@click.argument("task_id")
def cancel(url: str, key: str, task_id: str) -> None:
    """Cancel a task."""
    with Client(url, key) as c:
        print_json(answer(lambda: c.cancel(task_id)))


@main.command()
@URL
@KEY
@click.option("--status", "statuses", multiple=True)
@click.option("--kind")
@click.option("--model")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--cursor")
def tasks(
    url: str,
    key: str,
    statuses: tuple[str, ...],
    kind: str | None,
    model: str | None,
    limit: int,
    cursor: str | None,
) -> None:
    """List tasks, newest first."""
    with Client(url, key) as c:
        page = answer(
            lambda: c.list(
                status=list(statuses) or None, kind=kind, model=model, limit=limit, cursor=cursor
            )
        )
    for t in page["data"]:
        click.echo(f"{t['id']}\t{t['status']}\t{t['kind']}\t{t['model']}\t{t['created_at']}")
    if page["next_cursor"]:
        click.echo(f"more: --cursor {page['next_cursor']}", err=True)


@main.command()
@URL
@KEY
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
@click.argument("task_id")
def logs(url: str, key: str, as_json: bool, task_id: str) -> None:
    """Show a task's own log: each transition, attempt, retry, job and webhook try."""
    with Client(url, key) as c:
        found = answer(lambda: c.logs(task_id))
    if as_json:
        print_json(found)
        return
    for e in found["entries"]:
        where = " ".join(
            part
            for part in (
                f"attempt {e['attempt']}" if e.get("attempt") else "",
                f"on {e['instance']}" if e.get("instance") else "",
            )
            if part
        )
        data = " ".join(f"{k}={v}" for k, v in (e.get("data") or {}).items())
        line = "  ".join(p for p in (e["at"], e["event"], where, e.get("message") or "", data) if p)
        click.echo(line)
