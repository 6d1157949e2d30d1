"""A store that cannot be reached: every API answers 503 in its own JSON error shape, with
``Retry-After``, and serves again once the database is back. PostgreSQL is cut off by a TCP
proxy in front of it, so the test needs no restart of the shared server."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import PG_URL, reset_postgres
from tests.e2e.conftest import Server
from tests.e2e.test_malformed_input import ENDPOINTS, JSON_TYPE, native_shape
from tests.fakes.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres

CHAT = {"kind": "chat", "model": "mock", "input": "hi"}

# besides every API's submit endpoints: reads, uploads, the health check (path, arguments)
OTHERS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/v1/tasks", {}),
    ("GET", "/v1/tasks/abc", {}),
    ("POST", "/v1/files", {"files": {"file": ("a.txt", b"abc", "text/plain")}}),
    ("GET", "/health", {}),
]


def unavailable(r: httpx.Response, what: str) -> None:
    assert r.status_code == 503, (what, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), what
    assert int(r.headers.get("retry-after", 0)) > 0, (what, r.text)
    assert "store" in r.text, (what, r.text)


def test_a_store_outage_is_a_json_503_with_retry_after_then_service_resumes(
    make_server: Any,
) -> None:
    asyncio.run(reset_postgres())
    pg = urlsplit(PG_URL)
    with TcpProxy(pg.hostname or "127.0.0.1", pg.port or 5432) as proxy:
        url = PG_URL.replace(pg.netloc.rsplit("@", 1)[-1], f"127.0.0.1:{proxy.port}")
        server: Server = make_server(store_url=url)
        server.start()
        key = server.create_key("acme", admin=True)
        with server.client(key) as c:
            assert c.post("/v1/tasks", json=CHAT).status_code == 202
            proxy.cut()
            for e in ENDPOINTS:
                r = c.post(e.path, content=e.body(), headers={"content-type": JSON_TYPE})
                unavailable(r, e.name)
                e.shape(r.json())
            for method, path, kwargs in OTHERS:
                r = c.request(method, path, **kwargs)
                unavailable(r, path)
                native_shape(r.json())
            proxy.restore()
            deadline = time.monotonic() + 60
            while (r := c.post("/v1/tasks", json=CHAT)).status_code != 202:
                assert time.monotonic() < deadline, r.text
                time.sleep(0.2)
            done = c.get(f"/v1/tasks/{r.json()['id']}", params={"wait": 30}).json()
            assert done["status"] == "SUCCESS", done
            assert len(c.get("/v1/tasks").json()["data"]) == 2  # none of the refused
    assert [p for p in (server.root / "files").rglob("*") if p.is_file()] == []
