"""Revoking a key reaches every gateway: two ``taskgate api`` processes on one PostgreSQL
database, each caching verified keys for a minute, so that the other gateway can only refuse
the key in time by hearing of its revocation."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PG_URL, reset_postgres
from tests.e2e.conftest import Server, mock_route

pytestmark = pytest.mark.postgres

CACHE = 60  # auth_cache_seconds of both gateways
WITHIN = 10  # seconds the other gateway may take to refuse the key: far less than CACHE


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    asyncio.run(reset_postgres())
    servers = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        servers.append(
            Server(
                tmp_path / name,
                [mock_route()],
                store_url=PG_URL,
                files_url=f"file://{tmp_path}/files",
                auth_cache_seconds=CACHE,
            )
        )
    try:
        for s in servers:
            s.start("api")
        yield servers[0], servers[1]
    finally:
        for s in servers:
            s.stop(kill=True)


@pytest.mark.parametrize("how", ["api", "cli"])
def test_a_key_revoked_on_one_gateway_is_refused_by_the_other_long_before_its_cache_expires(
    gateways: tuple[Server, Server], how: str
) -> None:
    a, b = gateways
    secret = a.create_key("acme")
    key_id = json.loads(a.cli("keys", "list", "--tenant", "acme", "--json").stdout)[0]["id"]
    with b.client(secret) as client:
        assert client.get("/v1/tasks").status_code == 200  # b caches the key for a minute
        if how == "api":
            with a.client(a.create_key("ops", admin=True)) as admin:
                assert admin.delete(f"/v1/keys/{key_id}").status_code == 200
        else:
            a.cli("keys", "revoke", key_id)
        revoked = time.monotonic()
        while (r := client.get("/v1/tasks")).status_code != 401:
            assert time.monotonic() - revoked < WITHIN, "the other gateway still takes the key"
            time.sleep(0.02)
        assert "revoked" in r.json()["error"]["message"]
