"""``taskgate keys``: API keys, managed on the store directly (no server needed)."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from taskgate import config
from taskgate.cli.base import CONFIG, JSON_OPTION, main, output
from taskgate.views import iso


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


def limit_options(fn: Any) -> Any:
    """The options that set a key's limits (``create``, ``limits``)."""
    options = [
        click.option("--rpm", type=click.IntRange(1), help="Tasks accepted per minute."),
        click.option(
            "--tokens-per-day", type=click.IntRange(1), help="Input and output tokens per UTC day."
        ),
        click.option(
            "--cost-per-month",
            type=click.FloatRange(0, min_open=True),
            help="Cost (by the configured prices) per UTC month.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _limits(rpm: int | None, tokens_per_day: int | None, cost_per_month: float | None) -> Any:
    given = {
        "requests_per_minute": rpm,
        "tokens_per_day": tokens_per_day,
        "cost_per_month": cost_per_month,
    }
    return {name: value for name, value in given.items() if value is not None}


def _limits_text(k: Any) -> str:
    shown = [
        f"{k.requests_per_minute}/min" if k.requests_per_minute is not None else "",
        f"{k.tokens_per_day} tokens/day" if k.tokens_per_day is not None else "",
        f"{k.cost_per_month:g}/month" if k.cost_per_month is not None else "",
    ]
    return ", ".join(s for s in shown if s) or "no limits"


@keys.command("create")
@CONFIG
@click.option("--tenant", required=True, help="The tenant whose tasks this key sees.")
@click.option("--name", default="", help="A label for the key.")
@click.option("--admin", is_flag=True, help="An admin key: manages keys, sees every tenant.")
@limit_options
def keys_create(
    config_path: str | None,
    tenant: str,
    name: str,
    admin: bool,
    rpm: int | None,
    tokens_per_day: int | None,
    cost_per_month: float | None,
) -> None:
    """Create a key and print its secret (shown only once)."""
    limits = config.Limits(**_limits(rpm, tokens_per_day, cost_per_month))
    key, secret = _with_store(lambda db: db.keys.create(tenant, name, admin, limits), config_path)
    role = "admin" if key.admin else "tenant"
    click.echo(f"{key.id}\t{key.tenant}\t{role}\t{_limits_text(key)}", err=True)
    click.echo(secret)


@keys.command("limits")
@CONFIG
@click.argument("key_id")
@limit_options
@click.option(
    "--lift",
    multiple=True,
    type=click.Choice(["rpm", "tokens-per-day", "cost-per-month"]),
    help="Lift this limit (repeat for several).",
)
def keys_limits(
    config_path: str | None,
    key_id: str,
    rpm: int | None,
    tokens_per_day: int | None,
    cost_per_month: float | None,
    lift: tuple[str, ...],
) -> None:
    """Change a key's limits: those given are set, those lifted removed, the others kept.
    Gateways that share an events channel with this command hold the key to them at once,
    others within ``auth_cache_seconds``."""
    names = {"rpm": "requests_per_minute", "tokens-per-day": "tokens_per_day"}
    changes = {names.get(n, n.replace("-", "_")): None for n in lift}
    changes.update(_limits(rpm, tokens_per_day, cost_per_month))
    if not changes:
        raise click.UsageError("give a limit to set or one to --lift")
    settings = config.load(config_path)

    async def change(db: Any) -> Any:
        key = await db.keys.set_limits(key_id, changes)
        if key is not None:
            await _announce(settings, key_id, changed=True)
        return key

    key = _with_store(change, config_path)
    if key is None:
        raise click.ClickException(f"no active key {key_id}")
    click.echo(f"{key.id}\t{key.tenant}\t{_limits_text(key)}")


async def _announce(settings: config.Settings, key_id: str, *, changed: bool) -> None:
    """Tell every gateway on the events channel that the key was revoked, or changed."""
    from taskgate import events
    from taskgate.events.topics import announce_key_changed, announce_revoked

    bus = events.from_url(settings.events_url, settings.store_url)
    await bus.open()
    try:
        await (announce_key_changed if changed else announce_revoked)(bus, key_id)
    finally:
        await bus.close()  # sends it first (a lost announcement leaves the cache's bound)


@keys.command("list")
@CONFIG
@click.option("--tenant", help="Only this tenant's keys.")
@JSON_OPTION
def keys_list(config_path: str | None, tenant: str | None, as_json: bool) -> None:
    """List keys (never their secrets)."""
    rows = [
        {
            "id": k.id,
            "tenant": k.tenant,
            "role": "admin" if k.admin else "tenant",
            "state": "revoked" if k.revoked_at else "active",
            "prefix": k.prefix,
            "name": k.name,
            "limits": _limits_text(k),
            "created": iso(k.created_at),
        }
        for k in _with_store(lambda db: db.keys.find(tenant), config_path)
    ]
    output(
        rows,
        {k: k for k in ("id", "tenant", "role", "state", "prefix", "name", "limits", "created")},
        as_json,
    )


@keys.command("revoke")
@CONFIG
@click.argument("key_id")
def keys_revoke(config_path: str | None, key_id: str) -> None:
    """Revoke a key by its id. Gateways that share an events channel with this command
    (PostgreSQL or Redis) refuse it at once, others within ``auth_cache_seconds``."""
    settings = config.load(config_path)

    async def revoke(db: Any) -> bool:
        if not await db.keys.revoke(key_id):
            return False
        await _announce(settings, key_id, changed=False)
        return True

    if not _with_store(revoke, config_path):
        raise click.ClickException(f"no active key {key_id}")
    click.echo(f"revoked {key_id}")
