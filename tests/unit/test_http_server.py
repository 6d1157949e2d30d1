"""``taskgate serve`` runs uvicorn with the protocol that writes a response in one write."""

from __future__ import annotations

from typing import Any

import pytest
import uvicorn

from taskgate.api.one_write import OneWritePerResponse
from taskgate.cli import server


def test_serve_writes_each_response_in_one_write(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    ran: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.update(kw))
    monkeypatch.setenv("TASKGATE_STORE_URL", f"sqlite:///{tmp_path}/t.db")
    server._run_http(None, "127.0.0.1", 0, 1.0, run_scheduler=False)
    assert ran["http"] is OneWritePerResponse
