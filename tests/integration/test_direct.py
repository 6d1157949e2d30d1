"""The hot statements run on sqlite3 directly (taskgate.store.direct) store and read exactly
what SQLAlchemy would: the same bytes in every column (JSON null where the column keeps it,
SQL NULL where it is none_as_null), the same values read back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from taskgate.store import direct
from taskgate.store.database import _sqlite_setup
from taskgate.store.schema import metadata, tasks

ROW: dict[str, Any] = {
    "tenant": "t1",
    "api_key_id": "k1",
    "kind": "chat",
    "model": "m",
    "route": "r",
    "priority": 1,
    "fair_seq": 7,
    "status": "PENDING",
    "input": {"messages": [{"role": "user", "content": "héllo"}]},
    "params": {"temperature": 0.5},
    "result": None,  # JSON null in a Json column
    "error": None,
    "provider_job": None,  # SQL NULL: the column is none_as_null
    "attempts": 0,
    "max_attempts": 3,
    "run_after": 0.0,
    "created_at": 1.5,
    "updated_at": 1.5,
}
INSERT = tasks.insert()
BY_ID = sa.select(tasks).where(tasks.c.id == sa.bindparam("x_id"))
SET_RESULT = (
    tasks.update()
    .where(tasks.c.id == sa.bindparam("x_id"))
    .values(
        result=sa.bindparam("x_result", type_=tasks.c.result.type), attempts=tasks.c.attempts + 1
    )
)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sa.Connection]:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/t.db", poolclass=sa.StaticPool)
    _sqlite_setup(engine)
    metadata.create_all(engine)
    with engine.begin() as c:
        yield c
    engine.dispose()


def stored(conn: sa.Connection, task_id: str) -> tuple[Any, ...]:
    """The row as SQLite holds it, without any type processing."""
    raw = conn.exec_driver_sql("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
    assert raw is not None
    return tuple(raw)


def test_an_insert_stores_what_sqlalchemy_stores(conn: sa.Connection) -> None:
    direct.execute(conn, INSERT, [{**ROW, "id": "direct"}])
    conn.execute(INSERT, [{**ROW, "id": "sqlalchemy"}])
    assert stored(conn, "direct")[1:] == stored(conn, "sqlalchemy")[1:]
    kept = conn.exec_driver_sql("SELECT result, provider_job FROM tasks WHERE id = 'direct'")
    assert tuple(kept.one()) == ("null", None)


def test_rows_read_back_as_sqlalchemy_reads_them(conn: sa.Connection) -> None:
    conn.execute(INSERT, [{**ROW, "id": "a"}])
    [mine] = direct.rows(conn, BY_ID, {"x_id": "a"})
    theirs = dict(conn.execute(BY_ID, {"x_id": "a"}).mappings().one())
    assert mine == theirs
    assert mine["input"] == ROW["input"] and mine["result"] is None
    assert direct.scalar(conn, BY_ID, {"x_id": "missing"}) is None


def test_a_write_with_returning_processes_its_parameters_and_rows(conn: sa.Connection) -> None:
    conn.execute(INSERT, [{**ROW, "id": "a"}])
    returning = SET_RESULT.returning(tasks.c.id, tasks.c.result, tasks.c.attempts)
    rows = direct.rows(conn, returning, {"x_id": "a", "x_result": {"output": [1, "two"]}})
    assert rows == [{"id": "a", "result": {"output": [1, "two"]}, "attempts": 1}]
    direct.execute(conn, SET_RESULT, [{"x_id": "a", "x_result": None}])
    assert stored(conn, "a")[tasks.c.keys().index("result")] == "null"
    with pytest.raises(KeyError, match="x_result"):  # as SQLAlchemy, never a silent NULL
        direct.execute(conn, SET_RESULT, [{"x_id": "a"}])


def test_an_insert_missing_a_column_sqlalchemy_would_default_is_refused(
    conn: sa.Connection,
) -> None:
    table = sa.Table(
        "defaulted",
        sa.MetaData(),
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("n", sa.Integer, default=5),
    )
    table.create(conn)
    with pytest.raises(ValueError, match=r"without values for \['n'\]"):
        direct.execute(conn, table.insert(), [{"id": "x"}])


def test_an_insert_s_rows_must_share_their_keys(conn: sa.Connection) -> None:
    rows = [{**ROW, "id": "a"}, {**ROW, "id": "b", "label": "extra"}]
    with pytest.raises(ValueError, match="same keys"):
        direct.execute(conn, INSERT, rows)
