"""``taskgate usage``: tokens and cost by tenant, key, model or day, as a table."""

from __future__ import annotations

import click

from taskgate.cli.base import JSON_OPTION, KEY, URL, main, output
from taskgate.client import Client


@main.command()
@URL
@KEY
@click.option(
    "--group-by",
    type=click.Choice(["tenant", "key", "model", "day"]),
    default="tenant",
    show_default=True,
)
@click.option("--from", "from_", help="From this time (ISO 8601, UTC); default: this month.")
@click.option("--to", help="Until this time (ISO 8601, UTC; excluded); default: now.")
@click.option("--tenant", help="One tenant's usage (admin keys).")
@JSON_OPTION
def usage(
    url: str,
    key: str,
    group_by: str,
    from_: str | None,
    to: str | None,
    tenant: str | None,
    as_json: bool,
) -> None:
    """Show the tokens and cost of the tasks created in a time range (a tenant key: its
    own tenant's; an admin key: every tenant's, or --tenant's)."""
    with Client(url, key) as c:
        found = c.usage(group_by, from_=from_, to=to, tenant=tenant)
    span = f"{_minute(found['from'])} to {_minute(found['to'])} UTC"
    scope = f", tenant {found['tenant']}" if found.get("tenant") else ""
    rows = [*found["data"], {"group": "total", **found["total"]}]
    columns = {"group": found["group_by"], **COLUMNS}
    output(rows, columns, as_json, title=f"Usage by {found['group_by']}, {span}{scope}", raw=found)


COLUMNS = {
    "tasks": "tasks",
    "input_tokens": "input tokens",
    "output_tokens": "output tokens",
    "cost": "cost",
}


def _minute(iso: str) -> str:
    """``2026-03-14T15:00:00.000Z`` as ``2026-03-14 15:00``."""
    return iso[:16].replace("T", " ")
