"""The hot statements run on asyncpg directly (taskgate.store.direct) on the real PostgreSQL
store and read exactly what SQLAlchemy would: the same text in every column (JSON null where
the column keeps it, SQL NULL where it is none_as_null), the same values read back; in the
transaction of the SQLAlchemy connection they run under; and their errors are SQLAlchemy's
(an IntegrityError; a lost connection is ``Unavailable`` and the next write works)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.util import await_only

from taskgate.errors import Unavailable
from taskgate.store import SqlStore, direct, ops
from taskgate.store.database import Conn, Database
from taskgate.store.schema import tasks
from tests.conftest import PG_URL, drop_postgres_connections
from tests.integration.test_direct import BY_ID, INSERT, ROW, SET_RESULT

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("store", ["postgresql"], indirect=True)]

AS_TEXT = sa.text(
    "SELECT "
    + ", ".join(f"{c.name}::text" for c in tasks.c if c.name != "id")
    + " FROM tasks WHERE id = :id"
)
PID = sa.select(sa.func.pg_backend_pid())


class Rollback(Exception):
    pass


@pytest.fixture
def db(store: SqlStore) -> Database:
    return store.db


def stored(conn: Conn, task_id: str) -> tuple[Any, ...]:
    """The row as PostgreSQL shows it in text, NULL as None."""
    return tuple(conn.execute(AS_TEXT, {"id": task_id}).one())


async def test_an_insert_stores_what_sqlalchemy_stores(db: Database) -> None:
    def both(conn: Conn) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        direct.execute(conn, INSERT, [{**ROW, "id": "direct"}])
        conn.execute(INSERT, [{**ROW, "id": "sqlalchemy"}])
        return stored(conn, "direct"), stored(conn, "sqlalchemy")

    mine, theirs = await db.write(both)
    assert mine == theirs
    names = [c.name for c in tasks.c if c.name != "id"]
    assert mine[names.index("result")] == "null"  # JSON null in a Json column
    assert mine[names.index("provider_job")] is None  # SQL NULL: none_as_null
    assert mine[names.index("input")] == '{"messages": [{"role": "user", "content": "héllo"}]}'


async def test_several_rows_in_one_call_are_all_written(db: Database) -> None:
    rows = [{**ROW, "id": f"r{i}", "fair_seq": i} for i in range(3)]
    await db.write(direct.execute, INSERT, rows)
    q = sa.select(tasks.c.id, tasks.c.fair_seq).order_by(tasks.c.id)
    assert [tuple(r) for r in await db.read(lambda c: c.execute(q).all())] == [
        ("r0", 0),
        ("r1", 1),
        ("r2", 2),
    ]


async def test_rows_read_back_as_sqlalchemy_reads_them(db: Database) -> None:
    await db.write(lambda c: c.execute(INSERT, [{**ROW, "id": "a"}]))

    def both(conn: Conn) -> tuple[dict[str, Any], dict[str, Any], Any]:
        [mine] = direct.rows(conn, BY_ID, {"x_id": "a"})
        theirs = dict(conn.execute(BY_ID, {"x_id": "a"}).mappings().one())
        return mine, theirs, direct.scalar(conn, BY_ID, {"x_id": "missing"})

    mine, theirs, missing = await db.read(both)
    assert mine == theirs
    assert mine["input"] == ROW["input"] and mine["result"] is None
    assert mine["provider_job"] is None and mine["created_at"] == 1.5
    assert missing is None


async def test_a_write_with_returning_processes_its_parameters_and_rows(db: Database) -> None:
    await db.write(lambda c: c.execute(INSERT, [{**ROW, "id": "a"}]))
    returning = SET_RESULT.returning(tasks.c.id, tasks.c.result, tasks.c.attempts)
    got = await db.write(direct.rows, returning, {"x_id": "a", "x_result": {"output": [1, "2"]}})
    assert got == [{"id": "a", "result": {"output": [1, "2"]}, "attempts": 1}]
    await db.write(direct.execute, SET_RESULT, [{"x_id": "a", "x_result": None}])
    assert (await db.read(stored, "a"))[[c.name for c in tasks.c][1:].index("result")] == "null"
    with pytest.raises(KeyError, match="x_result"):  # as SQLAlchemy, never a silent NULL
        await db.write(direct.execute, SET_RESULT, [{"x_id": "a"}])


async def test_a_direct_statement_first_in_a_transaction_is_part_of_it(db: Database) -> None:
    def insert_then_fail(conn: Conn) -> None:
        direct.execute(conn, INSERT, [{**ROW, "id": "gone"}])  # the transaction's first
        raise Rollback

    with pytest.raises(Rollback):
        await db.write(insert_then_fail)
    assert await db.read(direct.rows, BY_ID, {"x_id": "gone"}) == []


async def test_a_unique_violation_is_sqlalchemys_integrity_error(db: Database) -> None:
    await db.write(direct.execute, INSERT, [{**ROW, "id": "twice"}])
    with pytest.raises(sa.exc.IntegrityError) as caught:
        await db.write(direct.execute, INSERT, [{**ROW, "id": "twice"}])
    assert isinstance(caught.value.orig.__cause__, asyncpg.UniqueViolationError)  # type: ignore[union-attr]
    assert await db.read(direct.rows, BY_ID, {"x_id": "twice"})  # and the store goes on


async def test_a_connection_lost_under_a_direct_statement_is_unavailable(db: Database) -> None:
    """The server ends this transaction's connection (as a restart does): the statement is
    ``Unavailable`` (503), SQLAlchemy drops the connection, and the next write works."""

    async def terminate(pid: int) -> None:
        other = await asyncpg.connect(PG_URL)
        try:
            await other.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await other.close()

    def lose_connection(conn: Conn) -> None:
        # the server ends this very connection (from another one), then it is used
        await_only(terminate(direct.scalar(conn, PID, {})))
        direct.rows(conn, BY_ID, {"x_id": "a"})

    with pytest.raises(Unavailable) as caught:
        await db.write(lose_connection)
    assert isinstance(caught.value.__cause__, sa.exc.DBAPIError)
    assert caught.value.__cause__.connection_invalidated
    await db.write(direct.execute, INSERT, [{**ROW, "id": "after"}])
    assert await db.read(direct.rows, BY_ID, {"x_id": "after"})


async def test_a_pooled_connection_the_server_closed_is_never_handed_out(db: Database) -> None:
    """What a restart leaves in the pool: connections the server has closed. The next write
    gets a live connection (no round trip asked the old one first)."""
    first = await db.write(lambda conn: conn.connection.driver_connection)
    await drop_postgres_connections()
    for _ in range(500):  # asyncpg sees the end of the socket once the event loop reads it
        if first.is_closed():
            break
        await asyncio.sleep(0.01)
    assert first.is_closed()
    used = await db.write(lambda conn: conn.connection.driver_connection)
    assert used is not first and not used.is_closed()


NOW = 1_800_000_000.0
HOT = [
    pytest.param(
        ops.claim_statement(skip_locked=True),
        {"lane_route": "r", "lane_priority": 1, "c_limit": 32, "c_worker": "w", "c_now": NOW}
        | {"c_lease_until": NOW + 30},
        "ix_tasks_claim",
        id="claim",
    ),
    pytest.param(ops.ROUTE_STATE, {"r_route": "r", "r_now": NOW}, "ix_tasks_busy", id="busy"),
    pytest.param(ops.ROUTE_STATE, {"r_route": "r", "r_now": NOW}, "ix_tasks_pinned", id="pinned"),
    pytest.param(ops._FRONT, {"lane_route": "r", "lane_priority": 1}, "ix_tasks_claim", id="front"),
    pytest.param(
        ops._LAST,
        {"lane_route": "r", "lane_priority": 1, "lane_key": "k"},
        "ix_tasks_key_lane",
        id="last",
    ),
]


def literal(value: Any) -> str:
    return "NULL" if value is None else f"'{value}'" if isinstance(value, str) else repr(value)


@pytest.mark.parametrize(("stmt", "values", "index"), HOT)
async def test_a_hot_statements_generic_plan_uses_the_queues_partial_index(
    db: Database, stmt: sa.Executable, values: dict[str, Any], index: str
) -> None:
    """PostgreSQL may run a prepared statement (asyncpg prepares each) on a generic plan
    from its sixth run on: the plan must still use the partial index of the tasks in that
    status, which it can only if the statement names the status rather than binding it."""
    compiled = stmt.compile(dialect=postgresql.asyncpg.dialect())  # type: ignore[attr-defined]
    params = {**compiled.construct_params(_check=False), **values}
    args = ", ".join(literal(params[name]) for name in compiled.positiontup)

    def generic_plan(conn: Conn) -> str:
        driver = conn.connection.driver_connection
        await_only(driver.execute(f"PREPARE hot AS {compiled}"))
        await_only(driver.execute("SET plan_cache_mode = force_generic_plan"))
        try:
            plan = await_only(driver.fetch(f"EXPLAIN EXECUTE hot({args})"))
        finally:
            await_only(driver.execute("RESET plan_cache_mode; DEALLOCATE hot"))
        return "\n".join(r[0] for r in plan)

    plan = await db.write(generic_plan)
    assert f"using {index} on tasks" in plan.lower(), plan
