"""The ``taskgate`` command: run the server, manage keys, and use a server as a client."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from taskgate import config
from taskgate.client import DEFAULT_URL, ApiError, Client

CONFIG = click.option(
    "--config",
    "config_path",
    envvar="TASKGATE_CONFIG",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML config file (default: the packaged embedded config).",
)


@click.group()
def main() -> None:
    """taskgate: gateway and scheduler for AI model tasks."""


# --- server --------------------------------------------------------------------------------


GRACE = click.option(
    "--grace",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds that running tasks get to finish on shutdown.",
)
HOST = click.option("--host", help="Listen address (overrides the config).")
PORT = click.option("--port", type=int, help="Listen port (overrides the config).")


@main.command()
@CONFIG
@HOST
@PORT
@GRACE
def serve(config_path: str | None, host: str | None, port: int | None, grace: float) -> None:
    """Run the API, the scheduler and the workers in one process."""
    _run_http(config_path, host, port, grace, run_scheduler=True)


@main.command()
@CONFIG
@HOST
@PORT
@GRACE
def api(config_path: str | None, host: str | None, port: int | None, grace: float) -> None:
    """Run the HTTP API only; ``taskgate worker`` processes run the tasks."""
    _run_http(config_path, host, port, grace, run_scheduler=False)


@main.command()
@CONFIG
@GRACE
@click.option(
    "--route",
    "routes",
    multiple=True,
    help="Run only this route's tasks (repeatable; default: every route).",
)
def worker(config_path: str | None, grace: float, routes: tuple[str, ...]) -> None:
    """Run the scheduler and workers only (no HTTP), against the configured store."""
    from taskgate import worker as worker_mod

    settings = _configured(config_path)
    try:
        asyncio.run(worker_mod.run(settings, list(routes) or None, grace))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _configured(config_path: str | None) -> config.Settings:
    """The settings, with logging and (if enabled) tracing set up as they say."""
    from taskgate.ops import tracing
    from taskgate.ops.logs import setup_logging

    settings = config.load(config_path)
    setup_logging(
        settings.log_level, settings.log_format, settings.log_file, settings.log_retention_days
    )
    try:
        tracing.from_settings(settings.tracing)  # the process's exporter, from here on
    except tracing.TracingUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    return settings


def _run_http(
    config_path: str | None, host: str | None, port: int | None, grace: float, run_scheduler: bool
) -> None:
    import uvicorn

    from taskgate.api import create_app

    settings = _configured(config_path)
    app = create_app(settings, run_scheduler=run_scheduler, grace=grace)
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(grace) + 5,
    )


# --- keys ------------------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Manage API keys (works on the store directly; no server needed)."""


def _with_store(fn: Any, config_path: str | None) -> Any:
    from taskgate import store

    async def run() -> Any:
        db = store.from_url(config.load(config_path).store_url)
        await db.open()
        try:
            return await fn(db)
        finally:
            await db.close()

    return asyncio.run(run())


@keys.command("create")
@CONFIG
@click.option("--tenant", required=True, help="The tenant whose tasks this key sees.")
@click.option("--name", default="", help="A label for the key.")
@click.option("--admin", is_flag=True, help="An admin key: manages keys, sees every tenant.")
def keys_create(config_path: str | None, tenant: str, name: str, admin: bool) -> None:
    """Create a key and print its secret (shown only once)."""
    key, secret = _with_store(lambda db: db.keys.create(tenant, name, admin), config_path)
    click.echo(f"{key.id}\t{key.tenant}\t{'admin' if key.admin else 'tenant'}", err=True)
    click.echo(secret)


@keys.command("list")
@CONFIG
@click.option("--tenant", help="Only this tenant's keys.")
def keys_list(config_path: str | None, tenant: str | None) -> None:
    """List keys (never their secrets)."""
    for k in _with_store(lambda db: db.keys.find(tenant), config_path):
        state = "revoked" if k.revoked_at else "active"
        role = "admin" if k.admin else "tenant"
        click.echo(f"{k.id}\t{k.tenant}\t{role}\t{state}\t{k.prefix}…\t{k.name}")


@keys.command("revoke")
@CONFIG
@click.argument("key_id")
def keys_revoke(config_path: str | None, key_id: str) -> None:
    """Revoke a key by its id. Gateways that share an events channel with this command
    (PostgreSQL or Redis) refuse it at once, others within ``auth_cache_seconds``."""
    from taskgate import events
    from taskgate.events.topics import announce_revoked

    settings = config.load(config_path)

    async def revoke(db: Any) -> bool:
        if not await db.keys.revoke(key_id):
            return False
        bus = events.from_url(settings.events_url, settings.store_url)
        await bus.open()
        try:
            await announce_revoked(bus, key_id)
        finally:
            await bus.close()  # sends it first (a lost announcement leaves the cache's bound)
        return True

    if not _with_store(revoke, config_path):
        raise click.ClickException(f"no active key {key_id}")
    click.echo(f"revoked {key_id}")


# --- client ----------------------------------------------------------------------------------

URL = click.option("--url", envvar="TASKGATE_URL", default=DEFAULT_URL, show_default=True)
KEY = click.option("--key", envvar="TASKGATE_KEY", required=True, help="API key ($TASKGATE_KEY).")


def _print(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _api(fn: Any) -> Any:
    try:
        return fn()
    except ApiError as exc:
        raise click.ClickException(str(exc)) from exc


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
        task = _api(
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
        _print(final)
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
        _print(_api(lambda: c.get(task_id)))


@main.command()
@URL
@KEY
@click.option("--timeout", type=float, help="Give up after this many seconds.")
@click.argument("task_id")
def wait(url: str, key: str, timeout: float | None, task_id: str) -> None:
    """Wait for a task to end and show it."""
    with Client(url, key) as c:
        task = _api(lambda: c.wait(task_id, timeout))
        _print(task)
        if task["status"] != "SUCCESS":
            sys.exit(1)


@main.command()
@URL
@KEY
@click.argument("task_id")
def cancel(url: str, key: str, task_id: str) -> None:
    """Cancel a task."""
    with Client(url, key) as c:
        _print(_api(lambda: c.cancel(task_id)))


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
        page = _api(
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
        found = _api(lambda: c.logs(task_id))
    if as_json:
        _print(found)
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


@main.command()
@URL
@KEY
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def stats(url: str, key: str, as_json: bool) -> None:
    """Show the queue in numbers (needs an admin key): lanes and instances, as tables."""
    from rich.console import Console
    from rich.table import Table

    with Client(url, key) as c:
        found = _api(c.stats)
    if as_json:
        _print(found)
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
