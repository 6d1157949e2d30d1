"""A model server joins a taskgate route by itself: run this beside it when it starts.

It registers the server as an instance of the route (``POST /v1/routes/{route}/instances``),
sends a heartbeat every third of its time to live, registers again if taskgate has forgotten
it (a 404: it expired while the network was down, or the store was reset), and removes it on
SIGTERM or Ctrl-C, so that no new task is sent to a server going away. If this process dies
without removing it, its heartbeats stop: after ``--ttl`` seconds every taskgate process drops
the instance, and the tasks it was running go back to the queue to run on another instance.
This is service discovery without a registry service (AIFlow needs Consul for it).

    export TASKGATE_URL=http://taskgate.internal:8000 TASKGATE_KEY=tg_...   # an admin key
    python examples/register_instance.py --route local-llama --name gpu7 \\
        --endpoint http://10.0.0.7:8000/v1 --capacity 16 --ttl 30

It needs only httpx. In a Python model server, run ``keep_registered(...)`` as a task of its
own event loop instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
from typing import Any

import httpx

log = logging.getLogger("register_instance")


async def keep_registered(
    client: httpx.AsyncClient, route: str, instance: dict[str, Any], stop: asyncio.Event
) -> None:
    """Register ``instance`` on ``route`` and keep it until ``stop`` is set, then remove it."""
    base = f"/v1/routes/{route}/instances"
    name = instance["name"]
    every = float(instance["ttl"]) / 3
    registered = False
    while not stop.is_set():
        try:
            if registered:
                resp = await client.post(f"{base}/{name}/heartbeat")
                registered = resp.status_code != 404  # forgotten: register again, now
            if not registered:
                resp = await client.post(base, json=instance)
                registered = resp.status_code in (200, 201)
                log.info("registered %s on route %s: %s", name, route, resp.status_code)
            if resp.status_code >= 400 and resp.status_code != 404:
                log.error("taskgate answered %s: %s", resp.status_code, resp.text)
        except httpx.HTTPError as exc:  # taskgate unreachable: keep trying
            log.warning("cannot reach taskgate: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every if registered else min(every, 2.0))
    with contextlib.suppress(httpx.HTTPError):
        resp = await client.delete(f"{base}/{name}")
        log.info("removed %s from route %s: %s", name, route, resp.status_code)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Keep this model server registered in taskgate.")
    p.add_argument("--url", default=os.environ.get("TASKGATE_URL", "http://127.0.0.1:8000"))
    p.add_argument("--key", default=os.environ.get("TASKGATE_KEY"), help="an admin key")
    p.add_argument("--route", required=True)
    p.add_argument("--name", default=socket.gethostname())
    p.add_argument("--endpoint", help="this server's base URL, as taskgate reaches it")
    p.add_argument("--capacity", type=int, default=8, help="calls at once")
    p.add_argument("--weight", type=float, default=1.0)
    p.add_argument("--secret-env", help="taskgate's environment variable with the secret")
    p.add_argument("--ttl", type=float, default=30.0, help="seconds without a heartbeat")
    return p.parse_args()


async def main() -> None:
    args = parse_args()
    instance = {
        "name": args.name,
        "endpoint": args.endpoint,
        "max_concurrency": args.capacity,
        "weight": args.weight,
        "secret_env": args.secret_env,
        "ttl": args.ttl,
    }
    instance = {k: v for k, v in instance.items() if v is not None}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    async with httpx.AsyncClient(base_url=args.url, headers=headers, timeout=10) as client:
        await keep_registered(client, args.route, instance, stop)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    asyncio.run(main())
