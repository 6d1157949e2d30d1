"""``taskgate purge``: retention run by hand, over the API (``POST /v1/admin/purge``)."""

from __future__ import annotations

from typing import Any

import click

from taskgate.cli.base import JSON_OPTION, KEY, URL, main, print_json
from taskgate.client import Client

# what the answer counts, as a person reads it (singular, plural)
COUNTED = {
    "tasks": ("task", "tasks"),
    "attempts": ("attempt", "attempts"),
    "logs": ("log entry", "log entries"),
    "webhook_deliveries": ("webhook delivery", "webhook deliveries"),
    "batches": ("batch", "batches"),
    "files": ("file", "files"),
}


def _age(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    # imported here: the retention module brings the store and files, which the client
    # commands never use, and every ``taskgate`` command would load them (~0.8 s per run)
    from taskgate.ops.retention import parse_age

    if value is not None:
        try:
            parse_age(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


@main.command()
@URL
@KEY
@click.option(
    "--older-than",
    callback=_age,
    help="Purge what ended longer ago than this: 30s, 10m, 12h, 7d, 2w "
    "(default: the server's configured retention).",
)
@click.option("--tenant", help="Only this tenant's tasks and files.")
@click.option("--dry-run", is_flag=True, help="Count what would be purged; delete nothing.")
@JSON_OPTION
def purge(
    url: str, key: str, older_than: str | None, tenant: str | None, dry_run: bool, as_json: bool
) -> None:
    """Delete ended tasks with their attempts, logs, webhook deliveries and files (needs an
    admin key). A file that a kept task or a conversation names is kept."""
    with Client(url, key) as c:
        found = c.purge(older_than, dry_run=dry_run, tenant=tenant)
    if as_json:
        print_json(found)
        return
    click.echo(summary(found))


def summary(found: dict[str, Any]) -> str:
    """``Purged 3 tasks, 3 attempts, ... and 2 files (1.2 kB)``, then one line per cutoff."""
    parts = [
        f"{found.get(name, 0)} {one if found.get(name, 0) == 1 else many}"
        for name, (one, many) in COUNTED.items()
    ]
    verb = "Would purge" if found.get("dry_run") else "Purged"
    lines = [f"{verb} {', '.join(parts[:-1])} and {parts[-1]} ({size(found.get('bytes', 0))})."]
    cutoffs = found.get("cutoffs") or {}
    for tenant, cutoff in cutoffs.items():
        everyone = "every tenant" if len(cutoffs) == 1 else "every other tenant"
        whose = everyone if tenant == "*" else f"tenant {tenant}"
        lines.append(f"  {whose}: what ended before {cutoff}")
    if not cutoffs:
        lines.append("  nothing is due: every tenant is kept forever")
    return "\n".join(lines)


def size(n: int) -> str:
    """A number of bytes as people read it: 950 B, 1.2 kB, 3.4 MB."""
    units = ("B", "kB", "MB", "GB", "TB")
    value, i = float(n), 0
    while value >= 1000 and i < len(units) - 1:
        value, i = value / 1000, i + 1
    return f"{n} B" if i == 0 else f"{value:.1f} {units[i]}"
