"""Usage as the store keeps it: the counters of keys' and tenants' limits (``usage_counters``,
a row per key or tenant with a limit, made at its first request), taken from in the
transaction that accepts tasks and charged in the one that ends attempts; and the usage
report (``GET /v1/usage``) summed from the tasks' own tokens and cost.

:func:`take_requests` and :func:`charge` are synchronous functions of a ``Connection``, run
inside the insert's (``tasks.insert_in``) and the finish's (``ops.finish_batch``)
transactions, so that limits hold across every gateway and worker. On PostgreSQL the
counters are locked (in one order everywhere) until that transaction ends.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from taskgate.budgets import DAY, Counter, Quota, day_of, month_of, month_start
from taskgate.errors import LimitExceeded
from taskgate.store import direct
from taskgate.store.base import NewTask
from taskgate.store.database import Conn, Database
from taskgate.store.schema import tasks
from taskgate.store.schema import usage_counters as table

GroupBy = Literal["tenant", "key", "model", "day"]

_COUNTERS = (
    sa.select(table)
    .where(table.c.subject.in_(sa.bindparam("u_subjects", expanding=True)))
    .order_by(table.c.subject)  # rows locked in one order everywhere: no deadlock
    .with_for_update()
)
_KEEP = (
    table.update()
    .where(table.c.subject == sa.bindparam("u_subject"))
    .values(requests=sa.bindparam("u_requests"), requests_at=sa.bindparam("u_at"))
)
# An attempt's usage joins the day and month it ended in; a counter of an earlier day or
# month starts again from it (as budgets.Counter.charge). Only counters that exist change:
# a key or tenant without limits has none.
_DAY: sa.BindParameter[int] = sa.bindparam("u_day", type_=sa.Integer)
_MONTH: sa.BindParameter[int] = sa.bindparam("u_month", type_=sa.Integer)
CHARGE = (
    table.update()
    .where(table.c.subject == sa.bindparam("u_subject"))
    .values(
        day_tokens=sa.case(
            (table.c.day >= _DAY, table.c.day_tokens + sa.bindparam("u_tokens")),
            else_=sa.bindparam("u_tokens"),
        ),
        day=sa.case((table.c.day >= _DAY, table.c.day), else_=_DAY),
        month_cost=sa.case(
            (table.c.month >= _MONTH, table.c.month_cost + sa.bindparam("u_cost")),
            else_=sa.bindparam("u_cost"),
        ),
        month=sa.case((table.c.month >= _MONTH, table.c.month), else_=_MONTH),
    )
)


def take_requests(conn: Conn, news: Sequence[NewTask], now: float) -> list[LimitExceeded | None]:
    """Take a request from the counters of the limits each new task is held to, in order;
    a task that a limit refuses takes nothing and gets its refusal."""
    quotas = {q.subject: q for n in news for q in n.quotas}
    if not quotas:
        return [None] * len(news)
    counters = _load(conn, quotas, now)
    out: list[LimitExceeded | None] = []
    for new in news:
        refusal = next(
            (r for q in new.quotas if (r := counters[q.subject].over(q, now)) is not None), None
        )
        if refusal is None:
            for q in new.quotas:
                counters[q.subject].take(q)
        out.append(refusal)
    keep = [
        {"u_subject": s, "u_requests": c.requests, "u_at": c.requests_at}
        for s, c in sorted(counters.items())
    ]
    conn.execute(_KEEP, keep)
    return out


def _load(conn: Conn, quotas: dict[str, Quota], now: float) -> dict[str, Counter]:
    """The counters of ``quotas``, locked; those missing made first, with what their key or
    tenant used so far today and this month (as their tasks recorded it)."""
    found = _read(conn, sorted(quotas))
    missing = sorted(set(quotas) - set(found))
    if missing:
        rows = [_new_row(s, _fresh(conn, quotas[s], now)) for s in missing]
        conn.execute(_insert_ignoring(conn), rows)  # another gateway's may be there first
        found.update(_read(conn, missing))
    return found


def _read(conn: Conn, subjects: list[str]) -> dict[str, Counter]:
    rows = conn.execute(_COUNTERS, {"u_subjects": subjects}).mappings()
    return {r["subject"]: Counter(**{k: v for k, v in r.items() if k != "subject"}) for r in rows}


def _new_row(subject: str, c: Counter) -> dict[str, Any]:
    return {
        "subject": subject,
        "requests": c.requests,
        "requests_at": c.requests_at,
        "day": c.day,
        "day_tokens": c.day_tokens,
        "month": c.month,
        "month_cost": c.month_cost,
    }


def _insert_ignoring(conn: Conn) -> sa.Executable:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=["subject"])


def _fresh(conn: Conn, q: Quota, now: float) -> Counter:
    """A new counter, with the tokens the quota's tasks used today and their cost this
    month, when it limits them (a limit set mid-month counts the month from its start)."""
    tokens, cost = 0, 0.0
    if q.tokens_per_day is not None:
        used = tasks.c.input_tokens + tasks.c.output_tokens
        tokens = int(conn.scalar(_used(q, used, day_of(now) * DAY)) or 0)
    if q.cost_per_month is not None:
        cost = float(conn.scalar(_used(q, tasks.c.cost, month_start(month_of(now)))) or 0.0)
    return Counter.fresh(now, tokens, cost)


def _used(q: Quota, column: sa.ColumnElement[Any], since: float) -> sa.Select[Any]:
    q_ = sa.select(sa.func.sum(column)).where(
        tasks.c.tenant == q.tenant, tasks.c.id >= id_floor(since)
    )
    return q_.where(tasks.c.api_key_id == q.api_key_id) if q.api_key_id else q_


def id_floor(ts: float) -> str:
    """The smallest task id made at ``ts`` or later (ids begin with their milliseconds;
    see models.new_id), so that a time range is a range of the tenant's index."""
    return f"{max(0, int(ts * 1000)):012x}"


@dataclass(frozen=True, slots=True)
class Charge:
    """What an attempt of a key's task used and cost."""

    api_key_id: str
    tenant: str
    tokens: int
    cost: float


def charge(conn: Conn, charges: Sequence[Charge], now: float) -> None:
    """Count ended attempts' tokens and cost on the counters of their keys and tenants
    (those that have one), in one statement."""
    summed: dict[str, tuple[int, float]] = {}
    for c in charges:
        for subject in (f"key:{c.api_key_id}", f"tenant:{c.tenant}"):
            tokens, cost = summed.get(subject, (0, 0.0))
            summed[subject] = (tokens + c.tokens, cost + c.cost)
    if summed:
        day, month = day_of(now), month_of(now)
        rows = [
            {"u_subject": s, "u_tokens": t, "u_cost": c, "u_day": day, "u_month": month}
            for s, (t, c) in sorted(summed.items())  # in the order takes lock them
        ]
        direct.execute(conn, CHARGE, rows)


class Usage:
    """The usage report, and the limits' counters as they stand."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def report(
        self, group_by: GroupBy, start: float, end: float, tenant: str | None = None
    ) -> list[dict[str, Any]]:
        """Tasks created in [start, end) (of ``tenant``, if given) grouped by tenant, key
        id, model or UTC day (``YYYY-MM-DD``): how many, their tokens in and out and their
        cost, in the order of the groups."""
        group = self._group(group_by).label("group")
        q = (
            sa.select(
                group,
                sa.func.count().label("tasks"),
                sa.func.coalesce(sa.func.sum(tasks.c.input_tokens), 0).label("input_tokens"),
                sa.func.coalesce(sa.func.sum(tasks.c.output_tokens), 0).label("output_tokens"),
                sa.func.coalesce(sa.func.sum(tasks.c.cost), 0.0).label("cost"),
            )
            .where(tasks.c.id >= id_floor(start), tasks.c.id < id_floor(end))
            .group_by(group)
            .order_by(group)
        )
        if tenant is not None:
            q = q.where(tasks.c.tenant == tenant)
        rows = await self._db.read(_rows, q)
        return [
            _sums(r, _date(int(r["group"]) * DAY) if group_by == "day" else r["group"])
            for r in rows
        ]

    async def counters(self, subjects: Sequence[str]) -> dict[str, Counter]:
        """The counters of these keys and tenants (``key:ID``, ``tenant:NAME``) that exist,
        read without a lock (a look, not a take)."""
        if not subjects:
            return {}
        q = sa.select(table).where(table.c.subject.in_(sorted(set(subjects))))
        rows = await self._db.read(_rows, q)
        return {r.pop("subject"): Counter(**r) for r in rows}

    def _group(self, group_by: GroupBy) -> sa.ColumnElement[Any]:
        if group_by == "day":  # floor: a cast rounds on PostgreSQL and truncates on SQLite
            days = tasks.c.created_at / DAY
            if self._db.dialect == "postgresql":
                return sa.func.floor(days)
            return sa.cast(days, sa.Integer)
        columns = {"tenant": tasks.c.tenant, "key": tasks.c.api_key_id, "model": tasks.c.model}
        return columns[group_by]


def _sums(row: dict[str, Any], group: Any) -> dict[str, Any]:
    """A group's row with its sums as plain numbers (PostgreSQL sums integers as decimals)."""
    return {
        "group": group,
        "tasks": int(row["tasks"]),
        "input_tokens": int(row["input_tokens"]),
        "output_tokens": int(row["output_tokens"]),
        "cost": float(row["cost"]),
    }


def _rows(conn: Conn, stmt: sa.Executable) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(stmt).mappings()]


def _date(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))
