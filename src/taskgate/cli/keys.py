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
            "created": iso(k.created_at),
        }
        for k in _with_store(lambda db: db.keys.find(tenant), config_path)
    ]
    output(
        rows,
        {k: k for k in ("id", "tenant", "role", "state", "prefix", "name", "created")},
        as_json,
    )


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
