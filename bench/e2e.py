"""Throughput of the embedded server: 10,000 tasks on a zero-latency mock backend, submitted
over HTTP until all are SUCCESS. Reports tasks/s end to end, submit latency, the server's CPU
time per task (steadier than throughput: the client shares the two cores) and peak RSS."""

from __future__ import annotations

import argparse
import asyncio
import time

from harness import pct, server, submit_all, wait_done

ROUTE = {
    "name": "mock",
    "models": ["mock"],
    "provider": "mock",
    "instances": [{"name": "m", "max_concurrency": 512}],
    "options": {"latency_ms": 0},
}


async def main(n: int, concurrency: int) -> None:
    with server([ROUTE]) as srv:
        body = {"kind": "chat", "model": "mock", "input": "hello"}
        t0, cpu0 = time.perf_counter(), srv.cpu_seconds()
        lat = await submit_all(srv, n, concurrency, body)
        t_submitted = time.perf_counter()
        t_done = await wait_done(srv, n)
        cpu = srv.cpu_seconds() - cpu0
        rss = srv.peak_rss_mb()
    print(f"tasks: {n}, client concurrency: {concurrency}")
    rate = n / (t_submitted - t0)
    print(f"submit: {rate:.0f}/s, p50 {pct(lat, 50):.2f} ms, p99 {pct(lat, 99):.2f} ms")
    print(f"end to end: {n / (t_done - t0):.0f} tasks/s ({t_done - t0:.2f} s)")
    print(f"server CPU per task: {cpu / n * 1e6:.0f} us")
    print(f"server peak RSS: {rss:.0f} MB")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("-c", "--concurrency", type=int, default=32)
    args = ap.parse_args()
    asyncio.run(main(args.n, args.concurrency))
