"""Admins' actions on a running server (admin keys): run tasks again and cancel them by
filter, pause and resume routes, list routes and worker processes, drain a worker. Each
command makes the API call of the same name (``api/admin.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from taskgate.cli import top
from taskgate.cli.base import JSON_OPTION, KEY, URL, main, output, print_json
from taskgate.cli.tasks import SAME_JSON
from taskgate.client import Client

STATUSES = ["PENDING", "PROCESSING", "SUCCESS", "FAILED", "TIMEOUT", "CANCELLED"]


def selection(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The listing's filters, naming the tasks of a bulk action."""
    options = [
        click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES)),
        click.option("--kind"),
        click.option("--model"),
        click.option("--route"),
        click.option("--tenant"),
        click.option("--created-after", help="ISO time, e.g. 2026-11-29T08:00:00Z"),
        click.option("--created-before", help="ISO time"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def selection_body(**given: Any) -> dict[str, Any]:
    body = {k: v for k, v in given.items() if v and k != "statuses"}
    if given.get("statuses"):
        body["status"] = list(given["statuses"])
    return body


@main.command()
@URL
@KEY
@SAME_JSON
@selection
@click.argument("task_id", required=False)
def retry(url: str, key: str, as_json: bool, task_id: str | None, **filters: Any) -> None:
    """Run a FAILED, TIMEOUT or CANCELLED task again (prints it, as JSON), or every such
    task the filters take (prints how many). Admin keys."""
    with Client(url, key) as c:
        if task_id:
            _no_filters(filters)
            print_json(c.call("POST", f"/v1/tasks/{task_id}/retry"))
            return
        done = c.call("POST", "/v1/tasks/retry", json=selection_body(**filters))
    _counted(done, "retried", as_json)


@main.command()
@URL
@KEY
@SAME_JSON
@selection
@click.argument("task_id", required=False)
def cancel(url: str, key: str, as_json: bool, task_id: str | None, **filters: Any) -> None:
    """Cancel a task and show it, as JSON (an ended task comes back unchanged); or, with an
    admin key, every waiting or running task the filters take (prints how many)."""
    with Client(url, key) as c:
        if task_id:
            _no_filters(filters)
            print_json(c.cancel(task_id))
            return
        done = c.call("POST", "/v1/tasks/cancel", json=selection_body(**filters))
    _counted(done, "cancelled", as_json)


def _counted(done: dict[str, int], action: str, as_json: bool) -> None:
    if as_json:
        print_json(done)
    else:
        click.echo(f"{action} {done[action]} tasks")


def _no_filters(filters: dict[str, Any]) -> None:
    if any(filters.values()):
        raise click.UsageError("give a task id or filters, not both")


@main.command()
@URL
@KEY
@JSON_OPTION
def routes(url: str, key: str, as_json: bool) -> None:
    """The routes: paused or active, tasks waiting and running, capacity, instances."""
    _panel(url, key, as_json, top.ROUTES)


def _set_paused(url: str, key: str, route: str, action: str) -> None:
    with Client(url, key) as c:
        r = c.call("POST", f"/v1/routes/{route}/{action}")
    click.echo(
        f"route {r['name']}: {'paused' if r['paused'] else 'active'}, {r['waiting']} waiting"
    )


@main.command()
@URL
@KEY
@click.argument("route")
def pause(url: str, key: str, route: str) -> None:
    """Pause a route: its tasks are accepted and wait; running ones finish."""
    _set_paused(url, key, route, "pause")


@main.command()
@URL
@KEY
@click.argument("route")
def resume(url: str, key: str, route: str) -> None:
    """Resume a paused route: its waiting tasks start."""
    _set_paused(url, key, route, "resume")


@main.command()
@URL
@KEY
@JSON_OPTION
def workers(url: str, key: str, as_json: bool) -> None:
    """The worker processes seen in the last hour."""
    _panel(url, key, as_json, top.WORKERS)


def _panel(url: str, key: str, as_json: bool, panel: top.Panel) -> None:
    """What one of ``taskgate top``'s panels shows, once, as a table (or JSON)."""
    with Client(url, key) as c:
        found = c.call("GET", panel.path)
    output(panel.rows(found), panel.columns, as_json, title=panel.title, raw=found)


@main.command()
@URL
@KEY
@click.argument("worker_id")
def drain(url: str, key: str, worker_id: str) -> None:
    """Drain a worker as SIGTERM would: it stops claiming, lets running calls finish within
    its grace, and stops."""
    with Client(url, key) as c:
        c.call("POST", f"/v1/workers/{worker_id}/drain")
    click.echo(f"worker {worker_id}: draining")
