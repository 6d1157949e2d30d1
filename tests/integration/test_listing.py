"""The task list on SQLite and PostgreSQL (``store/listing.py``): whichever index a page
follows, every filter and combination of filters answers what a plain reading of it would,
newest first, a page at a time; and on SQLite a filtered page is a search of an index, never
a scan of the whole table."""

from __future__ import annotations

import dataclasses
import itertools
import random
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from taskgate.models import Status
from taskgate.store import SqlStore, TaskFilter, listing
from taskgate.store.schema import tasks
from tests.integration.db import on_db
from tests.integration.test_store import add_one

BASE = 1_800_000_000.0  # when the first made task was created
ST = Status


async def made(store: SqlStore, n: int = 72) -> list[dict[str, Any]]:
    """``n`` tasks ten seconds apart, spread over three tenants, two routes, three models,
    two kinds, a label and five statuses, written as rows (ids made from their times and
    ended ones finished, as the store makes them); returned newest first."""
    task = await add_one(store)
    template = {c.name: getattr(task, c.name) for c in tasks.columns}
    await on_db(store.url, lambda c: c.execute(tasks.delete()))
    rng = random.Random(14)
    rows = []
    for i in range(n):
        created = BASE + 10 * i
        route, model, kind = rng.choice(
            [("r1", "m1", "chat"), ("r1", "m2", "chat"), ("r2", "m3", "image")]
        )
        status = rng.choice(["SUCCESS"] * 4 + ["FAILED", "TIMEOUT", "PENDING", "PROCESSING"])
        row = {
            **template,
            "id": f"{int(created * 1000):012x}{rng.getrandbits(80):020x}",
            "tenant": rng.choice(["t1", "t1", "t2", "t3"]),
            "route": route,
            "model": model,
            "kind": kind,
            "status": status,
            "label": rng.choice([None, None, "u1"]),
            "created_at": created,
            "finished_at": None if status in listing.LIVE else created + 1,
        }
        row["priority"] = int(task.priority)
        rows.append(row)
    await on_db(store.url, lambda c: c.execute(tasks.insert(), rows))
    return sorted(rows, key=lambda r: r["id"], reverse=True)


def matches(row: dict[str, Any], f: TaskFilter) -> bool:
    return (
        (f.tenant is None or row["tenant"] == f.tenant)
        and (not f.statuses or row["status"] in {s.value for s in f.statuses})
        and (not f.kind or row["kind"] == f.kind)
        and (not f.model or row["model"] == f.model)
        and (not f.route or row["route"] == f.route)
        and (f.label is None or row["label"] == f.label)
        and (f.created_after is None or row["created_at"] >= f.created_after)
        and (f.created_before is None or row["created_at"] < f.created_before)
    )


FILTERS: list[dict[str, Any]] = [
    {},
    {"statuses": (ST.FAILED,)},
    {"statuses": (ST.SUCCESS,)},
    {"statuses": (ST.PENDING, ST.PROCESSING)},
    {"statuses": (ST.CANCELLED,)},  # none
    {"kind": "image"},
    {"kind": "video"},  # none
    {"model": "m2"},
    {"route": "r2"},
    {"route": "r9"},  # none
    {"tenant": "t2"},
    {"tenant": "t1", "label": "u1"},
    {"label": "u1"},  # every tenant's: no index leads with the label alone
    {"created_after": BASE + 200},
    {"created_before": BASE + 300},
    {"created_after": BASE + 100, "created_before": BASE + 400.5},
    {"tenant": "t1", "statuses": (ST.FAILED,)},
    {"tenant": "t1", "statuses": (ST.SUCCESS, ST.FAILED, ST.TIMEOUT)},
    {"route": "r1", "statuses": (ST.FAILED,)},
    {"route": "r1", "statuses": (ST.PENDING, ST.PROCESSING), "tenant": "t3"},
    {"tenant": "t3", "model": "m3", "statuses": (ST.TIMEOUT,)},
    {"tenant": "t2", "kind": "image", "created_after": BASE + 150},
    {"model": "m1", "route": "r2"},  # none: m1 runs on r1
]


async def walk(store: SqlStore, f: TaskFilter) -> list[str]:
    """Every page of ``f``, following the cursor."""
    seen: list[str] = []
    while True:
        page = await store.tasks.find(dataclasses.replace(f, before_id=seen[-1] if seen else None))
        assert len(page) <= f.limit
        seen += [t.id for t in page]
        if len(page) < f.limit:
            return seen


@pytest.mark.parametrize("probe", [listing.PROBE, 3])  # 3: counts that stop short, and tie
async def test_every_filter_answers_what_a_plain_reading_would(
    store: SqlStore, probe: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing, "PROBE", probe)
    rows = await made(store)
    for where in FILTERS:
        f = TaskFilter(**{"tenant": None, **where, "limit": 5})
        wanted = [r["id"] for r in rows if matches(r, f)]
        assert await walk(store, f) == wanted, where
        first = await store.tasks.find(dataclasses.replace(f, limit=50))
        assert [t.id for t in first] == wanted[:50], where


async def test_the_route_filter_takes_a_routes_tasks_only(store: SqlStore) -> None:
    r1 = [await add_one(store, route="r1", model="a") for _ in range(2)]
    r2 = await add_one(store, route="r2", model="a")
    await store.tasks.cancel(r1[0].id, tenant=None)

    async def listed(**kw: Any) -> list[str]:
        return [t.id for t in await store.tasks.find(TaskFilter(tenant="t1", **kw))]

    assert await listed(route="r1") == [r1[1].id, r1[0].id]
    assert await listed(route="r2") == [r2.id]
    assert await listed(route="r1", statuses=(ST.CANCELLED,)) == [r1[0].id]
    assert await listed(route="r2", statuses=(ST.CANCELLED,)) == []
    assert await listed(route="r3") == []
    assert await store.tasks.find(TaskFilter(tenant="t2", route="r1")) == []


def test_time_bounds_on_the_id_are_widened_by_the_slack() -> None:
    assert listing._id_at(BASE) == f"{int(BASE * 1000):012x}"
    assert listing._id_at(-5.0) == "000000000000"  # no id is smaller
    f = TaskFilter(tenant=None, created_after=BASE, created_before=BASE + 1)
    low, high = (b.right.value for b in listing.id_bounds(f))
    assert low == listing._id_at(BASE - listing.SLACK)
    assert high == listing._id_at(BASE + 1 + listing.SLACK)


# --- SQLite: a filtered page searches an index -------------------------------------------------


def plan_lines(conn: sa.Connection, stmt: sa.Select[Any]) -> list[str]:
    sql = stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    return [str(r[3]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> Any:
    s = SqlStore(f"sqlite:///{tmp_path}/taskgate.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_sqlite_searches_an_index_for_every_filtered_page(sqlite_store: SqlStore) -> None:
    await made(sqlite_store, 24)
    indexed = [w for w in FILTERS if w and set(w) != {"label"}]
    pages = [{**w, "before_id": "0" * 32} for w in indexed[:4]]  # and from a cursor
    found: dict[str, list[str]] = {}

    def explain(conn: sa.Connection) -> None:
        for where in [*indexed, *pages, {"label": "u1", "statuses": (ST.FAILED,)}]:
            f = TaskFilter(**{"tenant": None, **where, "limit": 51})
            stmt = listing.page_statement(conn, f)
            if stmt is not None:
                found[repr(where)] = plan_lines(conn, stmt)

    await on_db(sqlite_store.url, explain)
    assert len(found) >= len(indexed)  # most filters match something; an empty one is skipped
    for where, lines in found.items():
        on_tasks = [ln for ln in lines if " tasks " in f"{ln} "]
        assert on_tasks, (where, lines)
        for ln in on_tasks:  # never a walk of the whole table or of a whole index
            assert ln.startswith("SEARCH tasks USING "), (where, lines)


async def test_sqlite_walks_follow_the_index_with_fewest_entries(sqlite_store: SqlStore) -> None:
    await made(sqlite_store, 24)
    combos = [
        TaskFilter(tenant=tenant, statuses=statuses, route=route, kind=kind)
        for tenant, statuses, route, kind in itertools.product(
            ["t1", "t3", "t4"],  # t4 has no task
            [(), (ST.SUCCESS,), (ST.FAILED,), (ST.PENDING, ST.TIMEOUT)],
            [None, "r2"],
            [None, "chat"],
        )
    ]
    order = list(listing.DRIVERS)

    def chosen(conn: sa.Connection) -> list[tuple[Any, ...]]:
        out = []
        for f in combos:
            for w in listing.walks_of(f):
                counts = {d: listing._count(conn, f, w, d) for d in listing.drivers_of(f, w)}
                fewest = min(counts, key=lambda d: (counts[d], order.index(d)))
                walk = listing._with_driver(conn, f, w)
                lines = plan_lines(conn, listing.statement(f, [walk])) if walk else []
                out.append((f, w, counts, fewest, walk, lines))
        return out

    followed, skipped = set(), 0
    for f, w, counts, fewest, walk, lines in await on_db(sqlite_store.url, chosen):
        if counts[fewest] == 0 and len(counts) > 1:  # counted, and nothing to find: no walk
            assert walk is None, (f, w)
            skipped += 1
            continue
        assert walk is not None and walk.driver == fewest, (f, w, counts)
        used = {ln.split(" INDEX ")[1].split()[0] for ln in lines if " INDEX " in ln}
        assert used == {listing.DRIVERS[fewest].index}, (f, w, lines)  # that index, only
        followed.add(fewest)
    assert followed == {"tenant", "status", "route", "kind"} and skipped


async def test_postgresql_plans_each_page_for_its_values(store: SqlStore) -> None:
    """A prepared statement's generic plan is made for no value in particular: the list's
    transaction asks for plans made for its values, and only it."""
    if store.dialect != "postgresql":
        pytest.skip("SQLite plans every statement for its values")
    show = sa.text("SHOW plan_cache_mode")

    def listed_then_shown(conn: sa.Connection) -> str:
        listing.find_in(conn, TaskFilter(tenant="t1", kind="chat"))
        return str(conn.execute(show).scalar())

    assert await store.db.read(listed_then_shown) == "force_custom_plan"
    assert await store.db.read(lambda conn: str(conn.execute(show).scalar())) == "auto"
