"""Who may read /metrics: anyone by default (scrapers send no key), admin keys with
``metrics.require_key``, nobody on the API port when metrics are off or on a port of their
own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from taskgate.api.app import create_app
from taskgate.config import Settings
from taskgate.store import from_url
from tests.e2e.conftest import free_port


def app_with(tmp_path: Path, **metrics: Any) -> tuple[TestClient, str]:
    conf = Settings.model_validate(
        {
            "store_url": f"sqlite:///{tmp_path}/t.db",
            "files_url": f"file://{tmp_path}/files",
            "metrics": metrics,
            "routes": [
                {"name": "m", "models": ["m"], "provider": "mock", "instances": [{"name": "i"}]}
            ],
        }
    )
    return TestClient(create_app(conf)), conf.store_url


async def admin_key(url: str) -> str:
    store = from_url(url)
    await store.open()
    try:
        return (await store.keys.create("ops", "", admin=True))[1]
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("metrics", "anonymous", "admin"),
    [({}, 200, 200), ({"require_key": True}, 401, 200), ({"enabled": False}, 404, 404)],
)
async def test_who_may_read_metrics(
    tmp_path: Path, metrics: dict[str, Any], anonymous: int, admin: int
) -> None:
    client, url = app_with(tmp_path, **metrics)
    with client:
        secret = await admin_key(url)
        refused = client.get("/metrics")
        assert refused.status_code == anonymous
        if anonymous != 200:
            assert refused.json()["error"]["type"]  # refusals are JSON in the native shape
        r = client.get("/metrics", headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == admin
        if admin == 200:
            assert r.headers["content-type"].startswith("text/plain")
            assert "taskgate_instance_capacity" in r.text


async def test_with_a_port_of_their_own_metrics_leave_the_api_port(tmp_path: Path) -> None:
    port = free_port()
    client, _ = app_with(tmp_path, port=port)
    with client:
        assert client.get("/metrics").status_code == 404
        assert client.get("/health/ready").status_code == 200  # health stays on both
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as ops:
            assert "taskgate_instance_capacity" in (await ops.get("/metrics")).text
            assert (await ops.get("/health/live")).json() == {"status": "alive"}
