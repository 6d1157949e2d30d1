"""The instances' rate buckets as stored (one row per route and instance): a claim refills
and takes requests from them, an attempt's ending notes the tokens its call spent.

Synchronous functions of a ``Connection``, run inside the claim's and the finish's
transactions (see ``claims.py`` and ``ops.finish_batch``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sqlalchemy as sa

from taskgate.policy import Bucket
from taskgate.store.base import Outcome
from taskgate.store.schema import rate_buckets as table

Conn = sa.Connection
RateLimit = tuple[int | None, int | None]  # requests and tokens per minute

_BUCKETS = (
    sa.select(table)
    .where(table.c.route == sa.bindparam("r_route"))
    .order_by(table.c.instance)  # rows locked in one order everywhere: no deadlock
    .with_for_update()  # a finish taking tokens meanwhile waits, and is not overwritten
)
_KEEP_BUCKET = (
    table.update()
    .where(
        table.c.route == sa.bindparam("r_route"),
        table.c.instance == sa.bindparam("r_instance"),
    )
    .values(
        requests=sa.bindparam("r_requests"),
        tokens=sa.bindparam("r_tokens"),
        tokens_spent=0.0,
        updated_at=sa.bindparam("r_now"),
    )
)
# A call's tokens are noted as spent; the next claim refills the bucket up to its own time
# and then takes them, so the time before a call ended is never counted after it.
_SPEND_TOKENS = (
    table.update()
    .where(
        table.c.route == sa.bindparam("r_route"),
        table.c.instance == sa.bindparam("r_instance"),
    )
    .values(tokens_spent=table.c.tokens_spent + sa.bindparam("r_tokens"))
)


def load(conn: Conn, route: str, limits: Mapping[str, RateLimit], now: float) -> dict[str, Bucket]:
    """The route's rate buckets of the instances in ``limits``, refilled to ``now`` (made
    full on first use). Locked until the transaction ends (on PostgreSQL)."""
    if not limits:
        return {}
    stored = {r["instance"]: r for r in conn.execute(_BUCKETS, {"r_route": route}).mappings()}
    out: dict[str, Bucket] = {}
    for name, (rpm, tpm) in limits.items():
        row = stored.get(name)
        if row is None:
            out[name] = b = Bucket.full(rpm, tpm, now)
            new = {"route": route, "instance": name, "requests": b.requests, "tokens": b.tokens}
            conn.execute(table.insert(), [{**new, "tokens_spent": 0.0, "updated_at": now}])
        else:
            out[name] = b = Bucket(row["requests"], row["tokens"], row["updated_at"])
            b.refill(rpm, tpm, now)
            b.tokens -= row["tokens_spent"]
    return out


def take(
    conn: Conn,
    route: str,
    buckets: dict[str, Bucket],
    limits: Mapping[str, RateLimit],
    picks: Sequence[str | None],
) -> None:
    """Take one request from the bucket of each instance picked (that limits requests), and
    keep the buckets as they now are."""
    for name in picks:
        if name in buckets and limits[name][0] is not None:
            buckets[name].requests -= 1
    conn.execute(
        _KEEP_BUCKET,
        [
            {
                "r_route": route,
                "r_instance": name,
                "r_requests": b.requests,
                "r_tokens": b.tokens,
                "r_now": b.updated_at,
            }
            for name, b in buckets.items()
        ],
    )


def spend_tokens(conn: Conn, batch: Sequence[Outcome]) -> None:
    """Note the tokens the calls of ``batch`` spent, whatever became of their endings (the
    calls happened)."""
    spent: dict[tuple[str, str], int] = {}
    for o in batch:
        if o.tokens:
            spent[(o.route, o.instance)] = spent.get((o.route, o.instance), 0) + o.tokens
    if spent:  # one row each, in the order claims lock them
        rows = [
            {"r_route": r, "r_instance": i, "r_tokens": n} for (r, i), n in sorted(spent.items())
        ]
        conn.execute(_SPEND_TOKENS, rows)
