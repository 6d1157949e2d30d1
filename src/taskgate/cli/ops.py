"""Operating a server: the queue in numbers (``stats``)."""

from __future__ import annotations

from taskgate.cli.base import JSON_OPTION, KEY, URL, main, print_json, show, table
from taskgate.client import Client

LANE_COLUMNS = {
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
INSTANCE_COLUMNS = {
    "route": "route",
    "instance": "instance",
    "state": "state",
    "in_flight": "in flight",
    "capacity": "capacity",
    "cooldown_left_seconds": "cool-down left s",
    "rate_allowance": "rate allowance",
}


@main.command()
@URL
@KEY
@JSON_OPTION
def stats(url: str, key: str, as_json: bool) -> None:
    """Show the queue in numbers (needs an admin key): lanes and instances, as tables."""
    with Client(url, key) as c:
        found = c.stats()
    if as_json:
        print_json(found)
        return
    show(
        table(found["lanes"], LANE_COLUMNS, title="Lanes (route, priority)"),
        table(found["instances"], INSTANCE_COLUMNS, title="Instances"),
    )
