"""taskgate side by side with its peers, in one run on this machine, so only ratios from the
same run are compared (the VM's speed drifts by 2x between days).

- The OpenAI path: one zero-latency OpenAI-compatible backend (bench/openai_api.py's), called
  directly, through taskgate's ``/openai/v1/chat/completions`` and through LiteLLM's proxy
  (one worker), each at 1 and 32 connections with wrk: req/s, p50 and p99, and the server's
  CPU time per request (its process and children, read from /proc around the measured run).
- Asynchronous tasks end to end: taskgate (bench/e2e.py: HTTP submit until every task is
  SUCCESS) against taskiq with taskiq-redis (a no-op task on a Redis stream, one worker
  process, kicked from 32 coroutines until every message is acknowledged).

The peers are installed once into their own virtual environment, ``bench/.peers`` (pinned
below), never into taskgate's. wrk must be on the PATH (``make bench-compare`` installs
Debian's). Redis is the local one (``--redis``, database 9 by default).

    .venv/bin/python bench/compare.py [--seconds 10] [-n 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from harness import free_port, server, wait_up
from openai_api import BODY, route, start_backend

from e2e import main as taskgate_end_to_end

HERE = Path(__file__).resolve().parent
PEERS = HERE / ".peers"
PEER_PACKAGES = ["litellm[proxy]==1.108.7", "taskiq==0.13.0", "taskiq-redis==1.2.4"]
MASTER_KEY = "sk-bench-" + "0" * 32  # LiteLLM refuses to start without a strong-looking one


# --- the peers' environment ------------------------------------------------------------------


def peers_bin() -> Path:
    """bench/.peers/bin, made and filled on first use (and again when the pins change)."""
    stamp = PEERS / ".installed"
    wanted = "\n".join(PEER_PACKAGES)
    if not (stamp.exists() and stamp.read_text() == wanted):
        print(f"installing the peers into {PEERS}: {', '.join(PEER_PACKAGES)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEERS)], check=True)
        pip = [str(PEERS / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run(pip + PEER_PACKAGES, check=True)
        stamp.write_text(wanted)
    return PEERS / "bin"


# --- measuring a server -------------------------------------------------------------------------


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        child = int(stat.parent.name)
        parents[child] = int(fields[1])
        times[child] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += times.get(p, 0.0)
        todo.extend(c for c, parent in parents.items() if parent == p)
    return total


@dataclass
class Sync:
    label: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float  # the server's CPU time per request

    def line(self) -> str:
        return (
            f"{self.label:<28} {self.connections:>3} conn  {self.rps:>8.0f} req/s  "
            f"p50 {self.p50_ms:6.2f} ms  p99 {self.p99_ms:6.2f} ms  "
            f"server CPU {self.cpu_ms:5.2f} ms/req"
        )


WRK_SCRIPT = """wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
{auth}
"""
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(
    url: str, key: str | None, connections: int, seconds: float
) -> tuple[float, dict[int, float], int]:
    """req/s, latency percentiles (ms) and request count of one wrk run; non-2xx answers fail it."""
    import orjson

    auth = f'wrk.headers["Authorization"] = "Bearer {key}"' if key else ""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT.format(body=orjson.dumps(BODY).decode(), auth=auth))
        script.flush()
        cmd = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            script.name,
            url,
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk against {url} saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    count = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    percentiles = {
        int(p): float(v) * UNITS[unit]
        for p, v, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$", out, re.MULTILINE)
    }
    return rps, percentiles, count


def measure(label: str, url: str, key: str | None, pid: int, seconds: int) -> list[Sync]:
    runs = []
    for connections in (1, 32):
        wrk(url, key, connections, min(seconds, 3))  # warm-up: connections, caches, JIT-free paths
        cpu0 = tree_cpu(pid)
        rps, lat, count = wrk(url, key, connections, seconds)
        cpu = tree_cpu(pid) - cpu0
        runs.append(Sync(label, connections, rps, lat[50], lat[99], cpu / count * 1000))
        print(runs[-1].line(), flush=True)
    return runs


# --- the servers ------------------------------------------------------------------------------


@contextmanager
def litellm_proxy(peers: Path, endpoint: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """LiteLLM's proxy with one worker and one model, ``bench``, on the backend."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "litellm.yaml"
        model = {"model": "openai/bench", "api_base": endpoint, "api_key": "none"}
        config.write_text(
            yaml.safe_dump({"model_list": [{"model_name": "bench", "litellm_params": model}]})
        )
        port = free_port()
        env = {
            **os.environ,
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        }
        cmd = [str(peers / "litellm"), "--config", str(config), "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--num_workers", "1"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_up(url, "/health/liveliness", seconds=120)
            yield url, proc
        finally:
            proc.terminate()
            proc.wait(30)


def openai_path(peers: Path | None, seconds: int) -> list[Sync]:
    backend, endpoint = start_backend()
    try:
        runs = measure(
            "backend directly", f"{endpoint}/chat/completions", None, backend.pid, seconds
        )
        with server([route(endpoint, 128)]) as srv:
            url = f"{srv.url}/openai/v1/chat/completions"
            runs += measure("taskgate (OpenAI path)", url, srv.key, srv.proc.pid, seconds)
        if peers is None:  # --taskgate-only
            return runs
        with litellm_proxy(peers, endpoint) as (url, proc):
            runs += measure(
                "LiteLLM proxy, 1 worker",
                f"{url}/v1/chat/completions",
                MASTER_KEY,
                proc.pid,
                seconds,
            )
    finally:
        backend.terminate()
        backend.wait(10)
    return runs


def taskiq_end_to_end(peers: Path, n: int, redis: str) -> float:
    """jobs/s of ``n`` no-op taskiq tasks, one worker process, kicked from 32 coroutines."""
    queue = f"taskiq-bench-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "TASKIQ_BENCH_QUEUE": queue, "TASKIQ_BENCH_REDIS": redis}
    python = str(peers / "python")
    worker = subprocess.Popen(
        [str(peers / "taskiq"), "worker", "taskiq_peer:broker", "--workers", "1"],
        cwd=HERE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        load = [python, "taskiq_peer.py", "load", str(n), "32"]
        out = subprocess.run(
            load, cwd=HERE, env=env, check=True, capture_output=True, text=True, timeout=600
        )
        return float(out.stdout.split()[0])
    finally:
        worker.terminate()
        worker.wait(30)
        subprocess.run(
            [python, "-c", f"import redis; redis.Redis.from_url({redis!r}).delete({queue!r})"],
            check=False,
        )


# --- the run ------------------------------------------------------------------------------


def ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else "n/a"


def report(runs: list[Sync], taskgate_async: float, taskiq_async: float) -> None:
    by = {(r.label.split()[0], r.connections): r for r in runs}
    print(f"\n== {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} cores")
    for r in runs:
        print(r.line())
    tg1, tg32, ll32 = by["taskgate", 1], by["taskgate", 32], by["LiteLLM", 32]
    print(f"taskgate / LiteLLM req/s at 32 connections: {ratio(tg32.rps, ll32.rps)} (aim: 20x)")
    print(f"taskgate server CPU per request at 32 connections: {tg32.cpu_ms:.2f} ms (aim: 0.5 ms)")
    added = tg1.p50_ms - by["backend", 1].p50_ms
    print(f"taskgate added p50 at 1 connection: {added:.2f} ms (aim: 1 ms)")
    print(
        f"asynchronous end to end: taskgate {taskgate_async:.0f} tasks/s, "
        f"taskiq {taskiq_async:.0f} jobs/s: {ratio(taskgate_async, taskiq_async)} (aim: 2x)"
    )


def main(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not on the PATH: apt-get install wrk (make bench-compare does)")
    if args.taskgate_only:  # before/after figures of a change: taskgate's rows alone
        openai_path(None, args.seconds)  # each run's line is printed as it ends
        print(f"end to end: {asyncio.run(taskgate_end_to_end(args.n, 32)):.0f} tasks/s")
        return
    peers = peers_bin()
    runs = openai_path(peers, args.seconds)
    print("asynchronous tasks end to end", flush=True)
    ours = asyncio.run(taskgate_end_to_end(args.n, 32))
    theirs = taskiq_end_to_end(peers, args.n, args.redis)
    print(f"taskiq: {theirs:.0f} jobs/s", flush=True)
    report(runs, ours, theirs)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10, help="length of each wrk run")
    ap.add_argument("-n", type=int, default=20_000, help="tasks end to end, each side")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    ap.add_argument("--taskgate-only", action="store_true", help="no peers: before/after runs")
    main(ap.parse_args())
