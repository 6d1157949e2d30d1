"""The hottest statements on the database driver directly, skipping SQLAlchemy's work per
execution. The statements stay SQLAlchemy Core, written once for both dialects; on SQLite
each is compiled once, and then run on the standard library's ``sqlite3`` connection under
the transaction's SQLAlchemy connection (same transaction), its parameters and rows passed
through the column types' own processors (JSON in and out). A statement through
SQLAlchemy costs about 20 µs here, the same statement on the driver about 1 µs, and a task
passes through a dozen of them (bench/README.md). On PostgreSQL they run through SQLAlchemy
as every other statement does.

Only statements whose SQL does not change with their parameters qualify (no expanding
``IN``): :func:`rows` and :func:`execute` compile on first use and keep the result by the
statement's identity, so they are for statements built once, at import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

Conn = sa.Connection
Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class Compiled:
    """A statement's SQL for sqlite3, and how to make its parameters and read its rows."""

    sql: str
    params: tuple[tuple[str, Any, Processor], ...]  # (name, fixed value, bind processor)
    results: dict[str, Processor]  # processors of the result columns that need one
    required: frozenset[str]  # parameters without a value of their own (SQLAlchemy's check)

    def values(self, given: Mapping[str, Any]) -> list[Any]:
        out = []
        for name, fixed, process in self.params:
            value = given.get(name, fixed)
            if name in self.required and name not in given:
                raise KeyError(f"a value is required for bind parameter {name!r}")
            # None too: a JSON column stores it as JSON null unless it is none_as_null
            out.append(value if process is None else process(value))
        return out

    def row(self, names: Sequence[str], raw: Sequence[Any]) -> dict[str, Any]:
        row = dict(zip(names, raw, strict=True))
        for name, process in self.results.items():
            if name in row and row[name] is not None and process is not None:
                row[name] = process(row[name])
        return row


_compiled: dict[tuple[int, tuple[str, ...]], Compiled] = {}
_keep: list[sa.Executable] = []  # the compiled statements stay alive, so ids stay theirs


def _compile(conn: Conn, stmt: sa.Executable, keys: tuple[str, ...]) -> Compiled:
    dialect = conn.dialect
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys) or None)  # type: ignore[attr-defined]
    fixed = compiled.construct_params(_check=False)
    order = list(compiled.positiontup or ())
    if isinstance(stmt, sa.Insert) and (unset := set(order) - set(keys)):
        raise ValueError(f"direct INSERT without values for {sorted(unset)}")  # a default
    params = tuple(
        (name, fixed.get(name), compiled.binds[name].type.bind_processor(dialect)) for name in order
    )
    columns = getattr(stmt, "selected_columns", None) or getattr(stmt, "_returning", None) or ()
    results = {
        c.key: p for c in columns if (p := c.type.result_processor(dialect, None)) is not None
    }
    _keep.append(stmt)
    required = frozenset(n for n in order if compiled.binds[n].required)
    return Compiled(str(compiled), params, results, required)


def _prepared(conn: Conn, stmt: sa.Executable, keys: tuple[str, ...] = ()) -> Compiled:
    found = _compiled.get((id(stmt), keys))
    if found is None:
        found = _compiled[(id(stmt), keys)] = _compile(conn, stmt, keys)
    return found


def direct(conn: Conn) -> bool:
    return conn.dialect.name == "sqlite"


def rows(conn: Conn, stmt: sa.Executable, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of a statement built once (a SELECT, or a write with RETURNING)."""
    if not direct(conn):
        return [dict(r) for r in conn.execute(stmt, dict(params)).mappings()]
    c = _prepared(conn, stmt)
    cursor = conn.connection.driver_connection.execute(c.sql, c.values(params))  # type: ignore[union-attr]
    names = [d[0] for d in cursor.description or ()]
    return [c.row(names, r) for r in cursor.fetchall()]


def scalar(conn: Conn, stmt: sa.Executable, params: Mapping[str, Any]) -> Any:
    """The first column of the first row, or None."""
    found = rows(conn, stmt, params)
    return next(iter(found[0].values())) if found else None


def execute(conn: Conn, stmt: sa.Executable, many: Sequence[Mapping[str, Any]]) -> None:
    """A write built once, for each parameter set of ``many`` (an INSERT's rows: all with
    the same keys)."""
    if not many:
        return
    if not direct(conn):
        conn.execute(stmt, [dict(p) for p in many])
        return
    keys = tuple(many[0]) if isinstance(stmt, sa.Insert) else ()
    if keys and any(p.keys() != many[0].keys() for p in many):  # (a set comparison, in C)
        raise ValueError("a direct INSERT's rows must all have the same keys")
    c = _prepared(conn, stmt, keys)
    values = [c.values(p) for p in many]
    conn.connection.driver_connection.executemany(c.sql, values)  # type: ignore[union-attr]
