"""Operating a server: the queue in numbers."""

from __future__ import annotations

from typing import Any

import click

from taskgate.cli.base import KEY, URL, answer, main, print_json
from taskgate.client import Client


@main.command()
@URL
@KEY
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def stats(url: str, key: str, as_json: bool) -> None:
    """Show the queue in numbers (needs an admin key): lanes and instances, as tables."""
    from rich.console import Console
    from rich.table import Table

    with Client(url, key) as c:
        found = answer(c.stats)
    if as_json:
        print_json(found)
        return
    console = Console()
    lanes = Table(title="Lanes (route, priority)")
    columns = {
        "route": "route",
        "priority": "priority",
        "waiting": "waiting",
        "running": "running",
        "oldest_wait_seconds": "oldest wait s",
        "ended_last_minute": "ended 1m",
        "failed_last_minute": "failed 1m",
        "ended_last_hour": "ended 1h",
        "failed_last_hour": "failed 1h",
        "run_seconds_p50": "run p50 s",
        "run_seconds_p95": "run p95 s",
    }
    _table(console, lanes, columns, found["lanes"])
    instances = Table(title="Instances")
    columns = {
        "route": "route",
        "instance": "instance",
        "state": "state",
        "in_flight": "in flight",
        "capacity": "capacity",
        "cooldown_left_seconds": "cool-down left s",
        "rate_allowance": "rate allowance",
    }
    _table(console, instances, columns, found["instances"])


def _table(console: Any, table: Any, columns: dict[str, str], rows: list[dict[str, Any]]) -> None:
    for title in columns.values():
        table.add_column(title)
    for row in rows:
        table.add_row(*("-" if row.get(k) is None else str(row[k]) for k in columns))
    console.print(table)
