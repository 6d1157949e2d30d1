"""The task list on a big store: a page of the tasks a :class:`TaskFilter` takes, newest
first, read by walks down indexes that stop after ``limit`` matches.

Every filter has an index that leads with it and ends with the id: ``(tenant, id)``,
``(tenant, label, id)`` (labelled tasks), ``(status, id)``, and ``(kind, id)``,
``(model, id)``, ``(route, id)``, these three of ended tasks only (an entry written once,
when the task ends, rather than at each change of status: on PostgreSQL every change writes
a new entry in every index). With no filter the primary key is walked. Ids are time-ordered
(their first twelve hex digits are the milliseconds of ``created_at``, taken together at
insert), so the cursor and the time bounds are bounds on the id: a page starts where the
last one ended, and a window of time is a range of the index, however old.

A page is a walk per status asked for, merged (an index on ``(status, id)`` gives one
status's tasks in id order, not several's). With a kind, model or route and no status, it
is three: the waiting tasks, the running ones (through ``(status, id)``), and the ended
ones (through the index of ended tasks). With neither, it is one walk.

A walk is quick when its index is short or most of its entries match; it is slow when it
follows a long index whose entries rarely match (the million SUCCESS tasks, looking for the
FAILED ones of one route). So the index each walk follows is chosen by what the filter's
values match:

- PostgreSQL's planner chooses from its statistics, as long as it plans the statement for
  its values: asyncpg prepares statements, and after five runs PostgreSQL may switch to a
  generic plan, chosen for no value in particular (walking the whole primary key for a rare
  one). The list runs under ``plan_cache_mode = force_custom_plan``.
- SQLite keeps no statistics (taskgate never runs ``ANALYZE``) and would take any index.
  Where a walk could follow two or more, the list first counts, up to ``PROBE``, the
  entries each holds within the bounds, and follows the smallest; the walk's other terms
  are written ``+column``, SQLite's way of keeping a term from choosing an index. A walk
  whose count is nought is not made.

What stays slow: two filters that each take a large share of the tasks but never meet (a
model and a route that does not serve it), whose walk reads the smaller to its end (and
PostgreSQL, taking them as independent, the primary key); and a walk through the waiting
tasks, which reads them all when none matches (a backlog of 100,000: a tenth of a second).
Figures in ``bench/README.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnElement, UnaryExpression

from taskgate.models import Status, Task
from taskgate.store.base import TaskFilter
from taskgate.store.database import Conn
from taskgate.store.schema import tasks

PROBE = 10_000  # entries counted, at most, in each index a walk could follow (SQLite)
# how far the id's milliseconds may stray from created_at (a few are usual; the clock may
# step): the time bounds on the id are widened by as much, and created_at checked exactly
SLACK = 60.0
LIVE = (Status.PENDING.value, Status.PROCESSING.value)  # the rest have ended (finished_at)


@dataclass(frozen=True, slots=True)
class Driver:
    """An index a walk may follow: the columns it leads with, and whether it holds ended
    tasks only."""

    index: str
    columns: tuple[str, ...]
    ended_only: bool = False


# by filter, in the order SQLite's counts break ties in
DRIVERS = {
    "label": Driver("ix_tasks_tenant_label", ("tenant", "label")),
    "model": Driver("ix_tasks_model_id", ("model",), ended_only=True),
    "route": Driver("ix_tasks_route_id", ("route",), ended_only=True),
    "status": Driver("ix_tasks_status_id", ("status",)),
    "kind": Driver("ix_tasks_kind_id", ("kind",), ended_only=True),
    "tenant": Driver("ix_tasks_tenant_id", ("tenant",)),
}
_FORCE_CUSTOM_PLAN = "SET LOCAL plan_cache_mode = force_custom_plan"


@dataclass(frozen=True, slots=True)
class Walk:
    """One walk of a page: the tasks of one status (None: any), or ended ones only; and
    the filter whose index it follows (None: the planner's choice)."""

    status: str | None
    ended: bool
    driver: str | None = None


def find_in(conn: Conn, f: TaskFilter) -> list[Task]:
    """The page ``f`` asks for, in the caller's transaction (a read)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(_FORCE_CUSTOM_PLAN)
    stmt = page_statement(conn, f)
    if stmt is None:
        return []
    return [Task.from_row(r) for r in conn.execute(stmt).mappings()]


def page_statement(conn: Conn, f: TaskFilter) -> sa.Select[Any] | None:
    """The statement that reads the page on this connection's database; on SQLite after
    counting what each walk's indexes hold (None: no walk can find a task)."""
    found = walks_of(f)
    if conn.dialect.name == "sqlite":
        found = [w for w in (_with_driver(conn, f, w) for w in found) if w is not None]
    return statement(f, found) if found else None


def walks_of(f: TaskFilter) -> list[Walk]:
    """The walks of a page, before their indexes are chosen."""
    if f.statuses:
        named = dict.fromkeys(s.value for s in f.statuses)
        return [Walk(s, s not in LIVE) for s in named]
    if any(DRIVERS[d].ended_only for d in filter_values(f)):
        return [Walk(LIVE[0], False), Walk(LIVE[1], False), Walk(None, True)]
    return [Walk(None, False)]


def statement(f: TaskFilter, walks: list[Walk]) -> sa.Select[Any]:
    """The page's statement: the one walk, or the walks merged."""
    if len(walks) == 1:
        return _walk(f, walks[0])
    parts = [_walk(f, w).subquery() for w in walks]
    page = sa.union_all(*(sa.select(p) for p in parts)).subquery("page")
    return sa.select(page).order_by(page.c.id.desc()).limit(f.limit)


def _walk(f: TaskFilter, w: Walk) -> sa.Select[Any]:
    driver = DRIVERS[w.driver] if w.driver else None
    usable = (*driver.columns, *(["finished_at"] if driver.ended_only else [])) if driver else ()

    def col(name: str) -> ColumnElement[Any]:
        c = tasks.c[name]
        if w.driver is None or name in usable:
            return c
        return UnaryExpression(c, operator=operators.custom_op("+"), type_=c.type)

    conds = [*id_bounds(f), *(col(k) == v for k, v in filter_values(f).items())]
    if w.status is not None:
        conds.append(col("status") == w.status)
    if w.ended:
        conds.append(col("finished_at").is_not(None))
    if f.created_after is not None:
        conds.append(tasks.c.created_at >= f.created_after)
    if f.created_before is not None:
        conds.append(tasks.c.created_at < f.created_before)
    return sa.select(tasks).where(*conds).order_by(tasks.c.id.desc()).limit(f.limit)


def filter_values(f: TaskFilter) -> dict[str, str]:
    """The filter's equalities but its statuses, by column."""
    out = {"tenant": f.tenant} if f.tenant is not None else {}
    out |= {name: v for name, v in (("kind", f.kind), ("model", f.model), ("route", f.route)) if v}
    if f.label is not None:
        out["label"] = f.label
    return out


def id_bounds(f: TaskFilter) -> list[ColumnElement[bool]]:
    """The cursor and the time bounds, as bounds on the (time-ordered) id."""
    out = []
    if f.before_id:
        out.append(tasks.c.id < f.before_id)
    if f.created_after is not None:
        out.append(tasks.c.id >= _id_at(f.created_after - SLACK))
    if f.created_before is not None:
        out.append(tasks.c.id < _id_at(f.created_before + SLACK))
    return out


def _id_at(t: float) -> str:
    """The smallest id of a task created at ``t`` (seconds): its milliseconds, in hex."""
    ms = min(max(0, math.ceil(t * 1000)), 16**12 - 1)
    return f"{ms:012x}"


# --- SQLite: which index each walk follows ---------------------------------------------------


def drivers_of(f: TaskFilter, w: Walk) -> list[str]:
    """The indexes ``w`` could follow, in ``DRIVERS``' order."""
    values = filter_values(f)
    present = set(values) & {"kind", "model", "route"} if w.ended else set()
    if w.status is not None:
        present.add("status")
    if "tenant" in values:  # (tenant, label, id) is the better walk of the two
        present.add("label" if "label" in values else "tenant")
    return [d for d in DRIVERS if d in present]


def _with_driver(conn: Conn, f: TaskFilter, w: Walk) -> Walk | None:
    """``w`` following the index that holds the fewest entries within the bounds (none,
    if no index helps: the primary key is walked); None when that index holds none."""
    candidates = drivers_of(f, w)
    if len(candidates) < 2:
        return Walk(w.status, w.ended, candidates[0] if candidates else None)
    counts = {d: _count(conn, f, w, d) for d in candidates}
    best = min(candidates, key=lambda d: counts[d])  # the first of the fewest
    return Walk(w.status, w.ended, best) if counts[best] else None


def _count(conn: Conn, f: TaskFilter, w: Walk, driver: str) -> int:
    """Entries of ``driver``'s index within ``f``'s bounds for ``w``, up to ``PROBE``."""
    d = DRIVERS[driver]
    values = {**filter_values(f), "status": w.status}
    where = [tasks.c[c] == values[c] for c in d.columns]
    if d.ended_only:
        where.append(tasks.c.finished_at.is_not(None))
    inner = sa.select(sa.literal(1)).where(*where, *id_bounds(f)).limit(PROBE).subquery()
    return int(conn.execute(sa.select(sa.func.count()).select_from(inner)).scalar_one())
