"""A fault of ours (an exception nothing expected) still answers JSON in the calling API's
error shape, with a 500 that names nothing of it; the traceback goes to the log. The route
answers it: nothing is re-raised to the server, which would close the connection."""

from __future__ import annotations

import logging

import httpx
import pytest

from taskgate.api.app import create_app
from taskgate.config import load
from tests.e2e.test_malformed_input import ENDPOINTS, JSON_TYPE, Endpoint, native_shape

SECRET = "sk-BOOM-in-the-exception-text"


class BrokenKeys:
    async def verify(self, secret: str) -> None:
        raise RuntimeError(f"a bug, quoting {SECRET}")


@pytest.mark.parametrize("e", ENDPOINTS, ids=lambda e: e.name)
async def test_an_unexpected_error_is_a_json_500_in_the_api_s_shape(
    e: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(load(None, {}))  # its lifespan is not run: no store, no scheduler
    app.state.keys = BrokenKeys()
    transport = httpx.ASGITransport(app)  # an exception the app re-raised would raise here
    async with httpx.AsyncClient(transport=transport, base_url="http://tg") as c:
        headers = {"authorization": "Bearer tg_x", "content-type": JSON_TYPE}
        with caplog.at_level(logging.ERROR):
            r = await c.post(e.path, content=e.body(), headers=headers)
        assert r.status_code == 500, r.text
        assert r.headers["content-type"].startswith("application/json")
        e.shape(r.json())
        assert SECRET not in r.text
        assert "RuntimeError" in caplog.text  # the traceback is logged


async def test_an_unexpected_error_on_a_native_read_is_a_json_500() -> None:
    app = create_app(load(None, {}))
    app.state.keys = BrokenKeys()
    transport = httpx.ASGITransport(app)  # an exception the app re-raised would raise here
    async with httpx.AsyncClient(transport=transport, base_url="http://tg") as c:
        r = await c.get("/v1/tasks", headers={"authorization": "Bearer tg_x"})
    assert r.status_code == 500
    native_shape(r.json())
    assert r.json()["error"]["type"] == "internal_error" and SECRET not in r.text
