"""The distributed mode on PostgreSQL: one ``taskgate api`` and 1, 2 or 4 ``taskgate worker``
processes (``--workers``). ``-n`` chat tasks are queued through the API with no worker
running, then the workers start and the time until all are SUCCESS is the drain rate; then
the same with tasks submitted while the workers run (end to end). The backend is the mock
provider at ``--latency-ms`` (0: the figure is taskgate's own cost per task).

The clock starts once every worker has started (registered in the workers' registry): a
worker process takes a second or two of CPU to start, which would otherwise count against
the drain, N times over with N workers. For the drain the route is paused while the tasks
are queued and the workers start, and resumed when the clock starts. Each line also gives
the CPU time per task of the API process, of the workers (together) and of the PostgreSQL
backends serving the benchmark's database, from /proc: on a machine shared with other
work these vary less than the rates.

Uses the database ``taskgate_bench`` on the local server (created if missing, emptied
before each run); set TASKGATE_BENCH_PG to use another."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import yaml
from harness import (
    BIN,
    Server,
    create_key,
    free_port,
    pct,
    poll,
    submit_all,
    wait_done,
    wait_up,
)

PG = os.environ.get("TASKGATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/taskgate_bench")


async def fresh_database(url: str) -> None:
    base, name = url.rsplit("/", 1)
    admin = await asyncpg.connect(f"{base}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) of a process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def backends(url: str) -> list[int]:
    """The PostgreSQL server processes serving the benchmark's database."""
    conn = await asyncpg.connect(url)
    try:
        q = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        return [r["pid"] for r in await conn.fetch(q) if r["pid"] != conn.get_server_pid()]
    finally:
        await conn.close()


class Meter:
    """CPU time of the API process, the workers and the database's backends over a run."""

    def __init__(self, procs: list[subprocess.Popen[bytes]]) -> None:
        self.procs = procs

    async def sample(self) -> dict[str, dict[int, float]]:
        return {
            "api": {self.procs[0].pid: cpu_seconds(self.procs[0].pid)},
            "workers": {p.pid: cpu_seconds(p.pid) for p in self.procs[1:]},
            "postgres": {pid: cpu_seconds(pid) for pid in await backends(PG)},
        }

    @staticmethod
    def per_task(
        before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], n: int
    ) -> str:
        used = {k: sum(v - before[k].get(pid, 0.0) for pid, v in after[k].items()) for k in after}
        return "  CPU/task " + ", ".join(f"{k} {1e6 * v / n:.0f} us" for k, v in used.items())


async def workers_running(api: Server, n: int, timeout: float = 120) -> None:
    """Wait until ``n`` workers are registered (each has started and joined)."""

    def enough(found: Any) -> bool:
        return sum(w["state"] == "running" for w in found["data"]) >= n

    await poll(api, "/v1/workers", enough, timeout, f"{n} workers running")


async def admin_post(api: Server, path: str) -> None:
    headers = {"Authorization": f"Bearer {api.key}"}
    async with aiohttp.ClientSession(api.url, headers=headers) as http, http.post(path) as r:
        if r.status != 200:
            raise RuntimeError(f"{path}: {r.status} {await r.text()}")


@contextmanager
def cluster(latency_ms: int) -> Iterator[tuple[Server, Any]]:
    """An API process (yielded) and a function that starts N worker processes."""
    asyncio.run(fresh_database(PG))
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        route = {
            "name": "mock",
            "models": ["mock"],
            "provider": "mock",
            "instances": [{"name": "m", "max_concurrency": 512}],
            "options": {"latency_ms": latency_ms},
        }
        conf = {
            "port": port,
            "store_url": PG,
            "files_url": f"file://{tmp}/files",
            "log_level": "warning",
            "routes": [route],
        }
        path = Path(tmp) / "taskgate.yaml"
        path.write_text(yaml.safe_dump(conf))
        env = {**os.environ, "TASKGATE_CONFIG": str(path)}
        key = create_key(env)
        procs = [subprocess.Popen([str(BIN), "api"], env=env, stderr=subprocess.DEVNULL)]

        def start_workers(n: int) -> Meter:
            for _ in range(n):
                procs.append(
                    subprocess.Popen([str(BIN), "worker"], env=env, stderr=subprocess.DEVNULL)
                )
            return Meter(procs)

        try:
            url = f"http://127.0.0.1:{port}"
            wait_up(url)
            yield Server(url, key, procs[0]), start_workers
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)


BODY = {"kind": "chat", "model": "mock", "input": "hello"}


async def drain(api: Server, start_workers: Any, n: int, workers: int, concurrency: int) -> str:
    await admin_post(api, "/v1/routes/mock/pause")
    await submit_all(api, n, concurrency, BODY)
    meter = start_workers(workers)
    await workers_running(api, workers)
    before = await meter.sample()
    t0 = time.perf_counter()
    await admin_post(api, "/v1/routes/mock/resume")
    t_done = await wait_done(api, n)
    used = Meter.per_task(before, await meter.sample(), n)
    return f"workers={workers}  drain {n / (t_done - t0):6.0f} tasks/s ({t_done - t0:.2f} s){used}"


async def end_to_end(
    api: Server, start_workers: Any, n: int, workers: int, concurrency: int
) -> str:
    meter = start_workers(workers)
    await workers_running(api, workers)
    before = await meter.sample()
    t0 = time.perf_counter()
    lat = await submit_all(api, n, concurrency, BODY)
    t_done = await wait_done(api, n)
    used = Meter.per_task(before, await meter.sample(), n)
    return (
        f"workers={workers}  end to end {n / (t_done - t0):6.0f} tasks/s ({t_done - t0:.2f} s)"
        f"  submit p50 {pct(lat, 50):.1f} ms p99 {pct(lat, 99):.1f} ms{used}"
    )


def main(n: int, latency_ms: int, concurrency: int, counts: list[int]) -> None:
    print(f"{n} tasks, mock backend at {latency_ms} ms, PostgreSQL, {concurrency} connections")
    for run in (drain, end_to_end):
        for workers in counts:
            with cluster(latency_ms) as (api, start_workers):
                print(asyncio.run(run(api, start_workers, n, workers, concurrency)), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5_000)
    ap.add_argument("--latency-ms", type=int, default=0)
    ap.add_argument("-c", "--concurrency", type=int, default=32)
    ap.add_argument("--workers", default="1,2,4", help="worker process counts, comma-separated")
    args = ap.parse_args()
    main(args.n, args.latency_ms, args.concurrency, [int(w) for w in args.workers.split(",")])
