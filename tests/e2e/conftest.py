"""End-to-end fixtures: the real ``taskgate`` command started as a subprocess, used over HTTP."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from taskgate.store import from_url

BIN = Path(sys.executable).with_name("taskgate")
REPO = Path(__file__).resolve().parents[2]

# A lease long enough that a server starved of CPU (the suite beside busy processes) still
# renews it in time: a lapsed lease runs a task twice. Tests of lapsing set their own.
FAST_SCHEDULER = {"lease_seconds": 30, "poll_interval": 0.2}


def mock_route(name: str = "mock", models: list[str] | None = None, **over: Any) -> dict[str, Any]:
    route: dict[str, Any] = {
        "name": name,
        "models": models or [name, f"{name}-*"],
        "provider": "mock",
        "instances": [{"name": f"{name}-1", "max_concurrency": 16}],
        "options": {"latency_ms": 0},
        "timeout": 30,
        "retry": {"max_attempts": 3, "backoff_base": 0.05, "backoff_max": 0.2},
    }
    route.update(over)
    return route


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def until(condition: Callable[[], object], timeout: float = 30, what: str = "") -> None:
    """Wait, polling, until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting: {what or condition}"
        time.sleep(0.02)


async def _new_key(store_url: str, tenant: str, admin: bool) -> str:
    store = from_url(store_url)
    await store.open()
    try:
        _, secret = await store.keys.create(tenant, "", admin)
    finally:
        await store.close()
    return secret


class Server:
    """One taskgate server process on a fresh data folder."""

    def __init__(self, root: Path, routes: list[dict[str, Any]], **settings: Any) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = root / "taskgate.yaml"
        conf = {
            "port": self.port,
            "store_url": f"sqlite:///{root}/taskgate.db",
            "files_url": f"file://{root}/files",
            "auth_cache_seconds": 0,
            "log_level": "warning",
            "scheduler": dict(FAST_SCHEDULER),
            "routes": routes,
            **settings,
        }
        self.config.write_text(yaml.safe_dump(conf))
        self.proc: subprocess.Popen[bytes] | None = None
        self.grace = 1.0
        self.log = root / "server.log"

    def configure(self, **settings: Any) -> None:
        """Change settings before the server starts (say, paths inside its folder)."""
        conf = yaml.safe_load(self.config.read_text())
        self.config.write_text(yaml.safe_dump({**conf, **settings}))

    def cli(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        full_env = {
            **os.environ,
            "TASKGATE_CONFIG": str(self.config),
            "TASKGATE_URL": self.url,
            **env,
        }
        return subprocess.run(
            [str(BIN), *args], capture_output=True, text=True, env=full_env, check=check, timeout=60
        )

    def create_key(self, tenant: str, admin: bool = False) -> str:
        """A key made in the server's store, as ``taskgate keys create`` makes it (that
        command has tests of its own): a process per key would add a second or two of
        start-up to every test. Runs on a thread of its own, so async tests may call it."""
        url = yaml.safe_load(self.config.read_text())["store_url"]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, _new_key(url, tenant, admin)).result()

    def start(self, command: str = "serve", *args: str) -> None:
        """Start ``taskgate serve`` (or ``api``, or ``worker``) and wait until it is ready:
        answering /health, or for a worker, saying in its log that it runs."""
        mark = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(BIN),
                    command,
                    "--config",
                    str(self.config),
                    "--grace",
                    str(self.grace),
                    *args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{command} exited: {self.log.read_text()}")
            if self._ready(command, mark):
                return
            time.sleep(0.02)
        raise RuntimeError(f"{command} did not start: {self.log.read_text()}")

    def _ready(self, command: str, mark: int) -> bool:
        if command == "worker":
            with self.log.open("rb") as f:
                f.seek(mark)
                return b"running routes" in f.read()
        # http.client, not httpx.get: each httpx.get builds a TLS context (~25 ms of CPU), and
        # polling with it took as much CPU as the server starting beside it
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        finally:
            self.proc = None

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def make(routes: list[dict[str, Any]] | None = None, **settings: Any) -> Server:
        root = tmp_path / f"server{len(servers)}"
        root.mkdir()
        server = Server(root, routes or [mock_route()], **settings)
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.stop(kill=True)


@pytest.fixture
def server(make_server: Any) -> Server:
    s: Server = make_server()
    s.start()
    return s


@pytest.fixture
def key(server: Server) -> str:
    return server.create_key("acme")


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One started server (the default mock route) for the tests of a module that each need
    only a tenant of their own (``own_key``), such as the cases of a parametrized refusal: a
    start costs about a second and a half of CPU. A test that needs a fresh server, or looks
    at anything beyond its tenant, keeps ``server``."""
    s = Server(tmp_path_factory.mktemp("shared"), [mock_route()])
    s.start()
    yield s
    s.stop(kill=True)


_tenants = itertools.count(1)


def fresh_tenant() -> str:
    """A tenant name that no other test of this process uses, for a test on a shared server."""
    return f"tenant{next(_tenants)}"


@pytest.fixture
def own_key(shared_server: Server) -> str:
    """A key of a tenant that no other test on ``shared_server`` uses."""
    return shared_server.create_key(fresh_tenant())
