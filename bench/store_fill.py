"""A store filled with many tasks spread as a busy deployment's would be, fast: rows made in
Python from a seeded random generator and written by bulk INSERTs (SQLAlchemy Core,
executemany, ``CHUNK`` rows a transaction) into the tables the real migrations made
(``SqlStore.open``), in the order a real store would have received them (by id, which is
time-ordered).

The spreads (the shares are of all tasks):

- six tenants, from 45% down to 0.1% (``tiny``), each with two or three keys;
- six routes serving eleven models of six kinds; the ``deepseek`` route and its one model
  take 0.1%, ``video`` 2.9%;
- created evenly over the 30 days before the fill;
- ended mostly: SUCCESS about 99%, CANCELLED 0.6%, TIMEOUT 0.3%, FAILED 0.1% (finished
  a few seconds to minutes after they were created, as their kind runs); the tasks of the
  last 12 hours on the slow routes (``video``, ``images``) still wait (PENDING, about 0.2%),
  and those of the last 10 minutes on the other routes run (PROCESSING);
- 20% of ``acme``'s tasks carry a label (one of 1,000 users);
- small inputs, parameters and results (a few hundred bytes a row; no files).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

from taskgate.store import SqlStore
from taskgate.store.database import Conn
from taskgate.store.schema import rate_buckets, route_states, tasks, workers

DAY = 86_400.0
SPAN = 30 * DAY
CHUNK = 10_000

TENANTS = [
    ("acme", 45.0),
    ("globex", 25.0),
    ("initech", 15.0),
    ("umbrella", 10.0),
    ("hooli", 4.9),
    ("tiny", 0.1),
]
# route, model, kind, share (%)
MODELS = [
    ("openai", "gpt-4o", "chat", 25.0),
    ("openai", "gpt-4o-mini", "chat", 20.0),
    ("openai", "text-embedding-3-small", "embedding", 10.0),
    ("ollama", "llama3", "chat", 15.0),
    ("ollama", "qwen2.5", "chat", 8.0),
    ("images", "flux", "image", 8.0),
    ("images", "sdxl", "image", 4.0),
    ("images", "flux-edit", "image_edit", 2.0),
    ("speech", "tts-1", "speech", 5.0),
    ("video", "seedance", "video", 2.9),
    ("deepseek", "deepseek-r1", "chat", 0.1),
]
ENDINGS = [("SUCCESS", 99.0), ("CANCELLED", 0.6), ("TIMEOUT", 0.3), ("FAILED", 0.1)]
SLOW_ROUTES = ("video", "images")  # their newest tasks wait
BACKLOG = 12 * 3600.0  # how far back the slow routes' tasks still wait
RUNNING = 600.0  # how far back the other routes' tasks still run
# seconds a task of each kind runs: (least, most)
RUN_TIME = {
    "chat": (0.5, 8.0),
    "embedding": (0.05, 0.3),
    "image": (5.0, 20.0),
    "image_edit": (5.0, 20.0),
    "speech": (1.0, 5.0),
    "video": (60.0, 300.0),
}
ROUTES = sorted({m[0] for m in MODELS})
INSTANCES = {r: [f"{r}-{i}" for i in range(2)] for r in ROUTES}


class Spread:
    """Draws a task's tenant, model, status and times."""

    def __init__(self, seed: int, now: float) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.tenants = [t for t, _ in TENANTS]
        self.tenant_w = [w for _, w in TENANTS]
        self.models = MODELS
        self.model_w = [m[3] for m in MODELS]
        self.endings = [s for s, _ in ENDINGS]
        self.ending_w = [w for _, w in ENDINGS]

    def row(self, seq: int, created: float) -> dict[str, Any]:
        rng = self.rng
        tenant = rng.choices(self.tenants, self.tenant_w)[0]
        route, model, kind, _ = rng.choices(self.models, self.model_w)[0]
        status = self._status(route, created)
        ms = int(created * 1000)
        row: dict[str, Any] = {
            "id": f"{ms:012x}{rng.getrandbits(80):020x}",
            "tenant": tenant,
            "api_key_id": f"key_{tenant}_{rng.randrange(3)}",
            "kind": kind,
            "model": model,
            "route": route,
            "priority": rng.choices((0, 1, 2), (5, 85, 10))[0],
            "fair_seq": seq,
            "status": status,
            "input": _input(kind, seq),
            "params": {"temperature": 0.7} if kind == "chat" else {},
            "provider_job": None,
            "batch_id": None,
            "conversation_id": None,
            "turn_id": None,
            "webhook_url": None,
            "label": f"user-{rng.randrange(1000)}"
            if tenant == "acme" and rng.random() < 0.2
            else None,
            "trace": None,
            "attempts": 0,
            "max_attempts": 3,
            "retries": 0,
            "run_timeout": None,
            "deadline": None,
            "run_after": 0.0,
            "idempotency_key": None,
            "request_hash": None,
            "created_at": created,
            "input_tokens": 0,
            "output_tokens": 0,
            "cost": 0.0,
        }
        row.update(self._progress(row, status, created))
        return row

    def _status(self, route: str, created: float) -> str:
        age = self.now - created
        if route in SLOW_ROUTES and age < BACKLOG:
            return "PENDING"
        if route not in SLOW_ROUTES and age < RUNNING:
            return "PROCESSING"
        return self.rng.choices(self.endings, self.ending_w)[0]

    def _progress(self, row: dict[str, Any], status: str, created: float) -> dict[str, Any]:
        """The columns a task's claim and ending wrote."""
        none = {"worker": None, "instance": None, "lease_until": None, "claimed_at": None}
        if status == "PENDING":
            return {
                **none,
                "result": None,
                "error": None,
                "updated_at": created,
                "started_at": None,
                "finished_at": None,
            }
        if status == "CANCELLED" and self.rng.random() < 0.5:  # cancelled while it waited
            return {
                **none,
                "result": None,
                "updated_at": created + 30,
                "started_at": None,
                "finished_at": created + 30,
                "error": {"type": "cancelled"},
            }
        rng = self.rng
        started = created + rng.uniform(0.0, 3.0)
        least, most = RUN_TIME[row["kind"]]
        ran = rng.uniform(least, most)
        out: dict[str, Any] = {
            "worker": f"worker-{rng.randrange(4)}",
            "instance": rng.choice(INSTANCES[row["route"]]),
            "claimed_at": started,
            "started_at": started,
            "attempts": 1 if status == "SUCCESS" else rng.randint(1, 3),
            "lease_until": None,
            "result": None,
            "error": None,
        }
        if status == "PROCESSING":
            return {**out, "lease_until": self.now + 30, "updated_at": started, "finished_at": None}
        finished = min(started + ran, self.now)
        out.update(updated_at=finished, finished_at=finished)
        if status == "SUCCESS":
            out["result"] = _result(row["kind"], row["id"])
            if row["kind"] == "chat":
                out.update(input_tokens=rng.randint(20, 2000), output_tokens=rng.randint(10, 800))
                out["cost"] = (out["input_tokens"] * 2.5 + out["output_tokens"] * 10) / 1e6
        else:
            message = "the backend answered 503" if status == "FAILED" else "ran out of time"
            out["error"] = {"type": status.lower(), "message": message}
        return out


def _input(kind: str, seq: int) -> Any:
    text = f"Summarise support ticket #{seq} for the on-call engineer, in three short lines."
    if kind == "chat":
        return {"messages": [{"role": "user", "content": text}]}
    if kind == "embedding":
        return {"input": text}
    return {"prompt": f"A watercolour of lighthouse number {seq} at dusk, gulls overhead"}


def _result(kind: str, task_id: str) -> Any:
    if kind == "chat":
        return {
            "text": "1. Customer cannot log in since the upgrade.\n2. Reset tokens fail with "
            "a 500.\n3. Workaround given; fix scheduled.",
            "finish_reason": "stop",
        }
    if kind == "embedding":
        return {"embeddings": [[0.0123, -0.0456, 0.0789, 0.0012, -0.0345, 0.0678, 0.0901]]}
    return {"files": [{"file_id": f"file_{task_id[:24]}", "content_type": "image/png"}]}


def rows(n: int, seed: int, now: float) -> Iterator[list[dict[str, Any]]]:
    """``n`` task rows created evenly over ``SPAN`` before ``now``, oldest first, in chunks."""
    spread = Spread(seed, now)
    step = SPAN / n
    start = now - SPAN
    chunk: list[dict[str, Any]] = []
    for i in range(n):
        created = start + i * step + spread.rng.uniform(0.0, step)
        chunk.append(spread.row(i + 1, created))
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _insert(conn: Conn, chunk: list[dict[str, Any]]) -> None:
    conn.execute(tasks.insert(), chunk)


def _extras(conn: Conn, now: float) -> None:
    """A few worker processes, a paused route and rate buckets: the rest of the overview."""
    conn.execute(
        workers.insert(),
        [
            {
                "id": f"worker-{i}",
                "host": f"host-{i // 2}",
                "pid": 1000 + i,
                "routes": ROUTES,
                "in_flight": 10 + i,
                "started_at": now - DAY,
                "last_seen": now - i,
                "drain": False,
                "stopped_at": None,
            }
            for i in range(4)
        ],
    )
    conn.execute(
        route_states.insert(),
        [{"route": "deepseek", "paused": True, "updated_at": now - 3600, "updated_by": "k"}],
    )
    conn.execute(
        rate_buckets.insert(),
        [
            {
                "route": "openai",
                "instance": i,
                "requests": 100.0,
                "tokens": 1e5,
                "tokens_spent": 0.0,
                "updated_at": now,
            }
            for i in INSTANCES["openai"]
        ],
    )


async def fill(store: SqlStore, n: int, seed: int = 1, report: bool = True) -> float:
    """Write ``n`` tasks (and the extras) to an empty, migrated store; return the fill's
    "now": the newest task was created just before it."""
    now = time.time()
    t0 = time.perf_counter()
    done = 0
    for chunk in rows(n, seed, now):
        await store.db.write(_insert, chunk)
        done += len(chunk)
        if report and done % (CHUNK * 20) == 0:
            rate = done / (time.perf_counter() - t0)
            print(f"  {done:,} tasks written ({rate:,.0f}/s)", flush=True)
    await store.db.write(_extras, now)
    if report:
        print(f"  filled {n:,} tasks in {time.perf_counter() - t0:.0f} s", flush=True)
    return now
