"""10,000 tasks on a backend that sleeps 10 s, with capacity 10,000: all must run at once.
Reports wall time from the first submit until all are SUCCESS, and peak RSS."""

from __future__ import annotations

import argparse
import asyncio
import time

from harness import server, submit_all, wait_done


async def main(n: int, sleep_s: float, concurrency: int) -> None:
    route = {
        "name": "sleepy",
        "models": ["sleepy"],
        "provider": "mock",
        "instances": [{"name": "s", "max_concurrency": n}],
        "options": {"latency_ms": sleep_s * 1000},
    }
    with server([route], scheduler={"claim_batch": 1000}) as srv:
        body = {"kind": "chat", "model": "sleepy", "input": "zzz"}
        t0 = time.perf_counter()
        await submit_all(srv, n, concurrency, body)
        t_submitted = time.perf_counter()
        t_done = await wait_done(srv, n)
        rss = srv.peak_rss_mb()
    print(f"tasks: {n}, each sleeping {sleep_s:g} s, capacity {n}")
    print(f"all submitted after {t_submitted - t0:.2f} s; all SUCCESS after {t_done - t0:.2f} s")
    print(f"server peak RSS: {rss:.0f} MB")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--sleep", type=float, default=10.0)
    ap.add_argument("-c", "--concurrency", type=int, default=64)
    args = ap.parse_args()
    asyncio.run(main(args.n, args.sleep, args.concurrency))
