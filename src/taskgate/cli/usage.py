"""``taskgate usage``: tokens and cost by tenant, key, model or day, as a table."""

from __future__ import annotations

from typing import Any

import click

from taskgate.cli.base import KEY, URL, answer, main, print_json
from taskgate.client import Client

COLUMNS = {
    "tasks": "tasks",
    "input_tokens": "input tokens",
    "output_tokens": "output tokens",
    "cost": "cost",
}


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
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
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
        found = answer(lambda: c.usage(group_by, from_=from_, to=to, tenant=tenant))
    if as_json:
        print_json(found)
        return
    print_table(found)


def print_table(found: dict[str, Any]) -> None:
    """The report as a table: a row per group, then the total."""
    from rich.console import Console
    from rich.table import Table

    span = f"{_minute(found['from'])} to {_minute(found['to'])} UTC"
    scope = f", tenant {found['tenant']}" if found.get("tenant") else ""
    table = Table(title=f"Usage by {found['group_by']}, {span}{scope}", show_footer=True)
    table.add_column(found["group_by"], footer="total")
    for name, title in COLUMNS.items():
        table.add_column(title, justify="right", footer=_cell(name, found["total"][name]))
    for row in found["data"]:
        table.add_row(str(row["group"]), *(_cell(n, row[n]) for n in COLUMNS))
    Console().print(table)


def _minute(iso: str) -> str:
    """``2026-03-14T15:00:00.000Z`` as ``2026-03-14 15:00``."""
    return iso[:16].replace("T", " ")


def _cell(name: str, value: Any) -> str:
    if name == "cost":
        return f"{value:,.6f}".rstrip("0").rstrip(".") if value else "0"
    return f"{value:,}"
