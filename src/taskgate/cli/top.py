"""``taskgate top``: a live terminal view of a server, like ``asynq dash``: its routes (with
their paused state), queues (per route and priority: waiting, running, oldest wait, ended
and failed in the last minute, run time p50 and p95), instances (state, calls in flight of
capacity, rate allowance) and worker processes, refreshed every ``--interval`` seconds.

Each panel is a :class:`Panel` in :data:`PANELS`: the endpoint it reads and how it turns
the answer into table rows. A panel whose endpoint the server does not have (404: an older
server) is left out, so a new panel is one entry in that list."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
import httpx

from taskgate.cli.base import KEY, URL, api_problem, main, print_json, show, table
from taskgate.client import ApiError, Client

Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class Panel:
    title: str
    path: str  # the native API's GET that feeds it
    rows: Callable[[Any], Rows]  # that answer → the table's rows
    columns: dict[str, str]  # row key → header


def _routes(found: Any) -> Rows:
    return [
        {
            **r,
            "state": "paused" if r.get("paused") else "active",
            "instances": [f"{i['name']} {i['in_flight']}/{i['capacity']}" for i in r["instances"]],
        }
        for r in found["data"]
    ]


def _lanes(found: Any) -> Rows:
    """Lanes with something waiting, running or ended in the last hour (the rest is noise)."""
    return [
        lane
        for lane in found["lanes"]
        if lane["waiting"] or lane["running"] or lane.get("ended_last_hour")
    ]


def _instances(found: Any) -> Rows:
    return [{**i, "load": f"{i['in_flight']}/{i['capacity']}"} for i in found["instances"]]


def _workers(found: Any) -> Rows:
    return list(found["data"])


ROUTES = Panel(
    "Routes",
    "/v1/routes",
    _routes,
    {
        "name": "route",
        "state": "state",
        "waiting": "waiting",
        "running": "running",
        "capacity": "capacity",
        "instances": "instances",
    },
)
QUEUES = Panel(
    "Queues (route, priority; idle ones hidden)",
    "/v1/stats",
    _lanes,
    {
        "route": "route",
        "priority": "priority",
        "waiting": "waiting",
        "running": "running",
        "oldest_wait_seconds": "oldest wait s",
        "ended_last_minute": "ended/min",
        "failed_last_minute": "failed/min",
        "run_seconds_p50": "p50 s",
        "run_seconds_p95": "p95 s",
    },
)
INSTANCES = Panel(
    "Instances",
    "/v1/stats",
    _instances,
    {
        "route": "route",
        "instance": "instance",
        "state": "state",
        "load": "in flight/capacity",
        "rate_allowance": "rate allowance",
        "cooldown_left_seconds": "cool-down left s",
    },
)
WORKERS = Panel(
    "Workers",
    "/v1/workers",
    _workers,
    {
        "id": "worker",
        "host": "host",
        "state": "state",
        "routes": "routes",
        "in_flight": "in flight",
        "last_seen": "last seen",
    },
)
PANELS = [ROUTES, QUEUES, INSTANCES, WORKERS]

Snapshot = dict[str, Any]  # path → its answer, or None where the server answered 404


def fetch(client: Client) -> Snapshot:
    """Every panel's endpoint, once each."""
    found: Snapshot = {}
    for path in dict.fromkeys(p.path for p in PANELS):
        try:
            found[path] = client.call("GET", path)
        except ApiError as exc:
            if exc.status != 404:
                raise
            found[path] = None
    return found


def render(snap: Snapshot, url: str, interval: float | None, problem: str = "") -> Any:
    """One frame: a header line, then each panel the server answered."""
    from rich.console import Group
    from rich.text import Text

    at = (snap.get("/v1/stats") or {}).get("at") or ""
    every = f" · every {interval:g} s · Ctrl-C quits" if interval else ""
    header = Text.assemble(("taskgate top", "bold"), f" · {url} · {at}{every}")
    if problem:
        header.append(f"\n{problem}", style="bold red")
    tables = [
        table(p.rows(snap[p.path]), p.columns, title=p.title)
        for p in PANELS
        if snap.get(p.path) is not None
    ]
    parts: list[Any] = [header]
    for t in tables:
        parts += [Text(""), t]
    return Group(*parts)


@main.command()
@URL
@KEY
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=2.0,
    show_default=True,
    help="Seconds between refreshes.",
)
@click.option("--once", is_flag=True, help="Print one frame and exit (for scripts).")
@click.option("--json", "as_json", is_flag=True, help="Print what each panel read, once, as JSON.")
def top(url: str, key: str, interval: float, once: bool, as_json: bool) -> None:
    """A live view of routes, queues, instances and workers (needs an admin key)."""
    with Client(url, key) as c:
        snap = fetch(c)  # a first failure is the command's one-line error
        if as_json:  # {"stats": ..., "routes": ..., "workers": ...}; null where not served
            print_json({path.rsplit("/", 1)[-1]: found for path, found in snap.items()})
        elif once:
            show(render(snap, url, None))
        elif sys.stdout.isatty():
            _live(c, snap, url, interval)
        else:
            _lines(c, snap, url, interval)


def _refreshed(c: Client, snap: Snapshot) -> tuple[Snapshot, str]:
    """A new snapshot, or the last one with what went wrong (the server may come back)."""
    try:
        return fetch(c), ""
    except ApiError as exc:
        return snap, api_problem(exc)
    except httpx.HTTPError as exc:
        return snap, f"cannot reach taskgate: {exc or type(exc).__name__}; retrying"


def _live(c: Client, snap: Snapshot, url: str, interval: float) -> None:
    from rich.live import Live

    with Live(render(snap, url, interval), screen=True, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval)
                snap, problem = _refreshed(c, snap)
                live.update(render(snap, url, interval, problem), refresh=True)
        except KeyboardInterrupt:
            pass


def _lines(c: Client, snap: Snapshot, url: str, interval: float) -> None:
    """Not on a terminal: a frame after another, as plain text."""
    problem = ""
    try:
        while True:
            show(render(snap, url, interval, problem))
            click.echo()
            time.sleep(interval)
            snap, problem = _refreshed(c, snap)
    except KeyboardInterrupt:
        pass
