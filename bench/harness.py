"""Shared pieces of the benchmarks: a server process on a fresh data folder, a key, a fast
aiohttp submitter, and waiting on the server's task counts."""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

BIN = Path(sys.executable).with_name("taskgate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    key: str
    proc: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """CPU time (user and system) the server process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


@contextmanager
def server(routes: list[dict[str, Any]], **settings: Any) -> Iterator[Server]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        conf = {
            "port": port,
            "store_url": f"sqlite:///{tmp}/taskgate.db",
            "files_url": f"file://{tmp}/files",
            "log_level": "warning",
            "routes": routes,
            **settings,
        }
        path = Path(tmp) / "taskgate.yaml"
        path.write_text(yaml.safe_dump(conf))
        env = {**os.environ, "TASKGATE_CONFIG": str(path)}
        key = create_key(env)
        proc = subprocess.Popen([str(BIN), "serve"], env=env, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_up(url)
            yield Server(url, key, proc)
        finally:
            proc.terminate()
            proc.wait(30)


def create_key(env: dict[str, str]) -> str:
    """An admin key (``/health`` counts tasks for admins only) made with ``taskgate keys
    create`` on the store the config names."""
    cmd = [str(BIN), "keys", "create", "--tenant", "bench", "--admin"]
    return subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def wait_up(url: str, path: str = "/health", seconds: float = 15) -> None:
    import urllib.request

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(f"{url}{path}", timeout=1)
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not start")


async def submit_all(srv: Server, n: int, concurrency: int, body: dict[str, Any]) -> list[float]:
    """Submit ``n`` tasks from ``concurrency`` connections; return each submit's latency."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {srv.key}"}
    remaining = iter(range(n))
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(srv.url, headers=headers, connector=conn) as http:

        async def worker() -> None:
            for _ in remaining:
                t0 = time.perf_counter()
                async with http.post("/v1/tasks", json=body) as r:
                    await r.read()
                    if r.status != 202:
                        raise RuntimeError(f"submit failed: {r.status} {await r.text()}")
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def poll(
    srv: Server, path: str, done: Callable[[Any], bool], timeout: float, what: str
) -> float:
    """GET ``path`` (with the server's admin key) every 50 ms until ``done(its JSON)``;
    return the time it was."""
    end = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {srv.key}"}
    async with aiohttp.ClientSession(srv.url, headers=headers) as http:
        while time.monotonic() < end:
            async with http.get(path) as r:
                if done(await r.json()):
                    return time.perf_counter()
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{what} did not happen within {timeout:g} s")


async def wait_done(srv: Server, n: int, timeout: float = 600) -> float:
    """Poll /health until ``n`` tasks are SUCCESS; return the time it happened."""

    def done(health: Any) -> bool:
        counts = health["tasks"]
        if any(counts.get(s) for s in ("FAILED", "TIMEOUT", "CANCELLED")):
            raise RuntimeError(f"tasks did not succeed: {counts}")
        return bool(counts.get("SUCCESS", 0) >= n)

    return await poll(srv, "/health", done, timeout, f"{n} tasks done")


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] * 1000 if len(values) > 1 else 0.0
