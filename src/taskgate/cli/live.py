"""Live configuration: ``taskgate reload`` and ``taskgate instances list|add|remove|heartbeat``
(admin keys), over the server's API."""

from __future__ import annotations

from typing import Any

import click
import yaml

from taskgate.cli.base import JSON_OPTION, KEY, URL, main, print_json
from taskgate.client import Client


@main.command()
@URL
@KEY
@JSON_OPTION
def reload(url: str, key: str, as_json: bool) -> None:
    """Have every server process read its config file again: routes, instances, prices,
    limits. A file that cannot be used is refused (the file, line and key that are wrong)
    and the running configuration stays."""
    with Client(url, key) as c:
        changes = c.reload()
    if as_json:
        print_json(changes)
        return
    for line in describe(changes):
        click.echo(line)


def describe(changes: dict[str, Any]) -> list[str]:
    """A reload's answer as lines: what was added, removed and changed."""
    lines = [
        f"{what} {verb}: {', '.join(names)}"
        for what in ("routes", "instances")
        for verb, names in changes[what].items()
        if names
    ]
    if changes["sections"]:
        lines.append(f"sections changed: {', '.join(changes['sections'])}")
    if changes["needs_restart"]:
        kept = ", ".join(changes["needs_restart"])
        lines.append(f"changed but kept until a restart: {kept}")
    return lines or ["nothing changed"]


@main.group()
def instances() -> None:
    """A route's backend instances: list them, add (register) or remove one at run time."""


@instances.command("list")
@URL
@KEY
@JSON_OPTION
@click.argument("route")
def list_instances(url: str, key: str, as_json: bool, route: str) -> None:
    """Show ROUTE's instances, configured and registered."""
    from rich.console import Console
    from rich.table import Table

    with Client(url, key) as c:
        found = c.instances(route)
    if as_json:
        print_json(found)
        return
    table = Table(title=f"Instances of route {route}")
    columns = {  # state: configured, or a registered one's live or expired
        "name": "name",
        "state": "state",
        "max_concurrency": "capacity",
        "weight": "weight",
        "ttl": "ttl s",
        "expires_at": "expires",
        "endpoint": "endpoint",
    }
    for key, title in columns.items():
        wraps = key in ("endpoint", "expires_at")
        table.add_column(title, no_wrap=not wraps, overflow="fold" if wraps else "ellipsis")
    for row in found["data"]:
        table.add_row(*("-" if row.get(k) is None else str(row[k]) for k in columns))
    Console().print(table)


@instances.command("add")
@URL
@KEY
@JSON_OPTION
@click.argument("route")
@click.argument("name")
@click.option("--endpoint", help="The backend's base URL.")
@click.option("--capacity", "--max-concurrency", "max_concurrency", type=int, help="Calls at once.")
@click.option("--weight", type=float)
@click.option("--secret-env", help="Environment variable (of the servers) holding its secret.")
@click.option("--requests-per-minute", type=int)
@click.option("--tokens-per-minute", type=int)
@click.option("--option", "options", multiple=True, help="A provider option, KEY=VALUE.")
@click.option("--ttl", type=float, help="Seconds a heartbeat keeps it (default: until removed).")
def add_instance(
    url: str,
    key: str,
    as_json: bool,
    route: str,
    name: str,
    options: tuple[str, ...],
    **fields: Any,
) -> None:
    """Add instance NAME to ROUTE (or refresh it): every server process starts sending it
    calls."""
    fields["options"] = parse_options(options) if options else None
    with Client(url, key) as c:
        added = c.register_instance(route, name, **fields)
    if as_json:
        print_json(added)
        return
    until = f", expires {added['expires_at']} unless heartbeats keep it" if added["ttl"] else ""
    click.echo(f"instance {name} on route {route}: {added['state']}{until}")


def parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; each value read as YAML (``latency_ms=50`` is a number)."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--option")
        out[name] = yaml.safe_load(value) if value else ""
    return out


@instances.command("remove")
@URL
@KEY
@click.argument("route")
@click.argument("name")
def remove_instance(url: str, key: str, route: str, name: str) -> None:
    """Remove registered instance NAME from ROUTE: no new calls go to it; those in flight
    finish."""
    with Client(url, key) as c:
        c.remove_instance(route, name)
    click.echo(f"instance {name} removed from route {route}")


@instances.command("heartbeat")
@URL
@KEY
@click.argument("route")
@click.argument("name")
def heartbeat(url: str, key: str, route: str, name: str) -> None:
    """Keep registered instance NAME of ROUTE for another time to live."""
    with Client(url, key) as c:
        kept = c.heartbeat(route, name)
    click.echo(f"instance {name} on route {route}: {kept['state']}, expires {kept['expires_at']}")
