"""Throughput of the embedded server: 10,000 tasks on a zero-latency mock backend, submitted
over HTTP until all are SUCCESS. Reports tasks/s end to end, submit latency, the server's CPU
time per task (steadier than throughput: the client shares the two cores), the client's own
CPU time per task, and peak RSS.

``--observe-cost R`` runs R rounds, each once with metrics and logging off (level warning,
no metrics) and once with them on as by default (level info: a JSON line per task ended, to
a pipe; metrics on), in alternating order, and reports the ratio of the medians."""

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


QUIET = {"log_level": "warning", "access_log": False, "metrics": {"enabled": False}}
OBSERVED = {"log_level": "info"}  # the defaults otherwise: metrics on, no access log


async def main(n: int, concurrency: int, **settings: object) -> float:
    with server([ROUTE], **settings) as srv:
        body = {"kind": "chat", "model": "mock", "input": "hello"}
        t0, cpu0, ours0 = time.perf_counter(), srv.cpu_seconds(), time.process_time()
        lat = await submit_all(srv, n, concurrency, body)
        t_submitted = time.perf_counter()
        t_done = await wait_done(srv, n)
        cpu, ours = srv.cpu_seconds() - cpu0, time.process_time() - ours0
        rss = srv.peak_rss_mb()
    print(f"tasks: {n}, client concurrency: {concurrency}")
    rate = n / (t_submitted - t0)
    print(f"submit: {rate:.0f}/s, p50 {pct(lat, 50):.2f} ms, p99 {pct(lat, 99):.2f} ms")
    print(f"end to end: {n / (t_done - t0):.0f} tasks/s ({t_done - t0:.2f} s)")
    print(f"server CPU per task: {cpu / n * 1e6:.0f} us")
    print(f"client CPU per task: {ours / n * 1e6:.0f} us (this process, on the same cores)")
    print(f"server peak RSS: {rss:.0f} MB")
    return n / (t_done - t0)


async def observe_cost(n: int, concurrency: int, rounds: int) -> None:
    rates: dict[str, list[float]] = {"off": [], "on": []}
    modes = [("off", QUIET), ("on", OBSERVED)]
    for i in range(rounds):
        for mode, settings in modes if i % 2 == 0 else modes[::-1]:  # neither always first
            print(f"--- metrics and logging {mode}")
            rates[mode].append(await main(n, concurrency, **settings))
    off, on = (sorted(rates[m])[len(rates[m]) // 2] for m in ("off", "on"))
    print(f"median end to end: off {off:.0f} tasks/s, on {on:.0f} tasks/s: {on / off:.1%} kept")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("-c", "--concurrency", type=int, default=32)
    ap.add_argument("--observe-cost", type=int, metavar="ROUNDS", default=0)
    args = ap.parse_args()
    if args.observe_cost:
        asyncio.run(observe_cost(args.n, args.concurrency, args.observe_cost))
    else:
        asyncio.run(main(args.n, args.concurrency))
