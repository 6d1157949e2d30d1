"""The OpenAI dialect's speed: chat completions through taskgate (``/openai/v1``, a route of
the ``openai`` provider) to a zero-latency OpenAI-compatible backend, against the same load
sent to the backend directly, so that what taskgate adds is known.

The backend is a minimal HTTP server (asyncio + httptools, in its own process) that answers
every request with the same ``chat.completion``. The load is an aiohttp client (not the SDK:
httpx would cost the client more than the server) with ``-c`` connections sending as fast as
they are answered, after a warm-up; then one connection alone (``-c 1``), where latency is
the cost of one request rather than queueing (at -c 32, latency is 32 / throughput).

    .venv/bin/python bench/openai_api.py [-n 20000] [-c 32] [--solo 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from harness import free_port, pct, server

COMPLETION = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "pong"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    % len(COMPLETION)
    + COMPLETION
)
BODY = {"model": "bench", "messages": [{"role": "user", "content": "ping"}]}


# --- the backend (run as: openai_api.py --backend PORT) ------------------------------------


class Backend(asyncio.Protocol):
    """One keep-alive connection: every complete request gets the canned completion."""

    def connection_made(self, transport: Any) -> None:
        import httptools

        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        self.transport.write(RESPONSE)


async def serve_backend(port: int) -> None:
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(Backend, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    await srv.serve_forever()


def start_backend() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--backend", str(port)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise RuntimeError("backend did not start")
    return proc, f"http://127.0.0.1:{port}/v1"


# --- the load ------------------------------------------------------------------------------


@dataclass
class Run:
    label: str
    n: int
    concurrency: int
    seconds: float
    latencies: list[float]

    def line(self) -> str:
        rate = self.n / self.seconds
        return (
            f"{self.label:<28} c={self.concurrency:<3} {rate:>7.0f} req/s   "
            f"p50 {pct(self.latencies, 50):6.2f} ms   p99 {pct(self.latencies, 99):6.2f} ms"
        )


async def load(url: str, key: str | None, n: int, concurrency: int, label: str) -> Run:
    """``n`` chat completions from ``concurrency`` connections; each must answer 200."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = orjson.dumps(BODY)
    latencies: list[float] = []
    remaining = iter(range(n))
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=headers, connector=conn) as http:

        async def worker() -> None:
            for _ in remaining:
                t0 = time.perf_counter()
                async with http.post(url, data=body, headers=JSON_TYPE) as r:
                    reply = await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"{label}: {r.status} {reply[:300]!r}")
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - t0
    return Run(label, n, concurrency, seconds, latencies)


JSON_TYPE = {"Content-Type": "application/json"}


def route(endpoint: str, concurrency: int) -> dict[str, Any]:
    return {
        "name": "bench",
        "models": ["bench"],
        "provider": "openai",
        "instances": [{"name": "b1", "endpoint": endpoint, "max_concurrency": concurrency}],
        "timeout": 30,
    }


async def measure(args: argparse.Namespace, direct: str, gateway: str, key: str) -> list[Run]:
    runs = []
    for label, url, k in (("backend directly", direct, None), ("through taskgate", gateway, key)):
        await load(url, k, args.warmup, args.concurrency, "warm-up")
        runs.append(await load(url, k, args.n, args.concurrency, label))
        runs.append(await load(url, k, args.solo, 1, label))
    return runs


def main(args: argparse.Namespace) -> None:
    backend, endpoint = start_backend()
    try:
        with server([route(endpoint, 4 * args.concurrency)]) as srv:
            runs = asyncio.run(
                measure(
                    args,
                    f"{endpoint}/chat/completions",
                    f"{srv.url}/openai/v1/chat/completions",
                    srv.key,
                )
            )
            rss = srv.peak_rss_mb()
    finally:
        backend.terminate()
        backend.wait(10)
    print(f"chat completions, zero-latency backend; {args.n} requests at c={args.concurrency}")
    for run in runs:
        print(run.line())
    direct = {r.concurrency: r for r in runs if r.label == "backend directly"}
    through = {r.concurrency: r for r in runs if r.label == "through taskgate"}
    for c in sorted(direct):
        added = pct(through[c].latencies, 50) - pct(direct[c].latencies, 50)
        print(f"added at p50, c={c}: {added:.2f} ms")
    print(f"server peak RSS: {rss:.0f} MB")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20_000)
    ap.add_argument("-c", "--concurrency", type=int, default=32)
    ap.add_argument("--solo", type=int, default=2_000, help="requests sent one at a time")
    ap.add_argument("--warmup", type=int, default=2_000)
    ap.add_argument("--backend", type=int, help=argparse.SUPPRESS)
    parsed = ap.parse_args()
    if parsed.backend:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(serve_backend(parsed.backend))
    else:
        os.environ.setdefault("PYTHONHASHSEED", "0")
        main(parsed)
