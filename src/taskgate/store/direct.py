"""The hottest statements on the database driver directly, skipping SQLAlchemy's work per
execution. The statements stay SQLAlchemy Core, written once for both dialects, and are
compiled once per dialect; then they run on the driver's connection under the
transaction's SQLAlchemy connection (same transaction), their parameters passed through the
column types' own bind processors (JSON out) and their rows through the result processors
SQLAlchemy would use (JSON in). A statement through SQLAlchemy costs about 20 µs here, the
same statement on the driver a few µs, and a task passes through a dozen of them
(bench/README.md).

- SQLite: the standard library's ``sqlite3`` connection, inline on the event loop.
- PostgreSQL: the ``asyncpg`` connection, awaited from inside ``AsyncConnection.run_sync``
  (SQLAlchemy's greenlet: ``await_only``). asyncpg prepares each statement on first use on
  a connection and keeps it (its statement cache, per connection); JSON goes through the
  codecs SQLAlchemy set on that connection. SQLAlchemy begins its transaction lazily, with
  its first statement: a direct statement that comes first begins it the same way. An
  asyncpg error goes through SQLAlchemy's own handling, so callers see what they would
  have seen (``IntegrityError``; a lost connection invalidated, and ``Unavailable`` from
  ``Database``).

Only statements whose SQL does not change with their parameters qualify (no expanding
``IN``): :func:`rows` and :func:`execute` compile on first use and keep the result by the
statement's identity, so they are for statements built once, at import.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.util import await_only

Conn = sa.Connection
Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class Compiled:
    """A statement's SQL for the driver, and how to make its parameters and read its rows."""

    sql: str
    params: tuple[tuple[str, Any, Processor], ...]  # (name, fixed value, bind processor)
    results: dict[str, Processor]  # processors of the result columns that need one
    required: frozenset[str]  # parameters without a value of their own (SQLAlchemy's check)
    # PostgreSQL: the result's column names, and each one's processor (None: none needed)
    names: tuple[str, ...] = ()
    processors: tuple[Processor, ...] = ()
    _all: frozenset[str] = field(init=False, repr=False, compare=False)
    _take_all: Callable[[Mapping[str, Any]], list[Any]] = field(
        init=False, repr=False, compare=False
    )
    _processed: tuple[tuple[int, Callable[[Any], Any]], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        names = [name for name, _, _ in self.params]
        processed = tuple((i, p) for i, (_, _, p) in enumerate(self.params) if p is not None)
        # every parameter given (an INSERT's rows, and most statements): one C call takes
        # them all in order, then the few that need it go through their processor
        object.__setattr__(self, "_all", frozenset(names))
        object.__setattr__(self, "_take_all", _getter(names))
        object.__setattr__(self, "_processed", processed)

    def values(self, given: Mapping[str, Any]) -> list[Any]:
        if self._all <= given.keys():
            out = self._take_all(given)
            for i, convert in self._processed:
                out[i] = convert(out[i])
            return out
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

    def pg_row(self, raw: Sequence[Any]) -> dict[str, Any]:
        if not any(self.processors):
            return dict(zip(self.names, raw, strict=True))
        return {
            name: value if process is None or value is None else process(value)
            for name, value, process in zip(self.names, raw, self.processors, strict=True)
        }


def _getter(names: Sequence[str]) -> Callable[[Mapping[str, Any]], list[Any]]:
    """The values of ``names`` in a mapping, as a list in their order."""
    if not names:
        return lambda given: []
    if len(names) == 1:
        name = names[0]
        return lambda given: [given[name]]
    take = operator.itemgetter(*names)
    return lambda given: list(take(given))


_compiled: dict[tuple[str, int, tuple[str, ...]], Compiled] = {}
_keep: list[sa.Executable] = []  # the compiled statements stay alive, so ids stay theirs


def _compile(conn: Conn, stmt: sa.Executable, keys: tuple[str, ...]) -> Compiled:
    dialect = conn.dialect
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys) or None)  # type: ignore[attr-defined]
    fixed = compiled.construct_params(_check=False)
    order = list(compiled.positiontup or ())
    if isinstance(stmt, sa.Insert) and (unset := set(order) - set(keys)):
        raise ValueError(f"direct INSERT without values for {sorted(unset)}")  # a default
    params = tuple(
        (name, fixed.get(name), compiled.binds[name].type._cached_bind_processor(dialect))
        for name in order
    )
    required = frozenset(n for n in order if compiled.binds[n].required)
    columns = getattr(stmt, "selected_columns", None) or getattr(stmt, "_returning", None) or ()
    _keep.append(stmt)
    if dialect.name == "postgresql":
        names, processors = _pg_results(conn, str(compiled), list(columns))
        return Compiled(str(compiled), params, {}, required, names, processors)
    results = {
        c.key: p for c in columns if (p := c.type.result_processor(dialect, None)) is not None
    }
    return Compiled(str(compiled), params, results, required)


def _pg_results(
    conn: Conn, sql: str, columns: list[Any]
) -> tuple[tuple[str, ...], tuple[Processor, ...]]:
    """The names of a statement's result columns as PostgreSQL gives them, and the result
    processor SQLAlchemy would pick for each, given the column's type and the type the
    server says it returns (asyncpg's codecs already turn most into Python values)."""
    if not columns:
        return (), ()
    prepared = _pg_call(conn, sql, (), lambda driver: driver.prepare(sql))
    attributes = prepared.get_attributes()
    names = tuple(a.name for a in attributes)
    processors = tuple(
        c.type._cached_result_processor(conn.dialect, a.type.oid)
        for c, a in zip(columns, attributes, strict=True)
    )
    return names, processors


def _prepared(conn: Conn, stmt: sa.Executable, keys: tuple[str, ...] = ()) -> Compiled:
    found = _compiled.get((conn.dialect.name, id(stmt), keys))
    if found is None:
        found = _compiled[(conn.dialect.name, id(stmt), keys)] = _compile(conn, stmt, keys)
    return found


def rows(conn: Conn, stmt: sa.Executable, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows of a statement built once (a SELECT, or a write with RETURNING)."""
    c = _prepared(conn, stmt)
    values = c.values(params)
    if conn.dialect.name == "postgresql":
        found = _pg_call(conn, c.sql, values, lambda driver: driver.fetch(c.sql, *values))
        return [c.pg_row(r) for r in found]
    cursor = conn.connection.driver_connection.execute(c.sql, values)  # type: ignore[union-attr]
    names = [d[0] for d in cursor.description or ()]
    return [c.row(names, r) for r in cursor.fetchall()]


def scalar(conn: Conn, stmt: sa.Executable, params: Mapping[str, Any]) -> Any:
    """The first column of the first row, or None."""
    found = rows(conn, stmt, params)
    return next(iter(found[0].values())) if found else None


def execute(conn: Conn, stmt: sa.Executable, many: Sequence[Mapping[str, Any]]) -> int | None:
    """A write built once, for each parameter set of ``many`` (an INSERT's rows: all with
    the same keys). Returns the rows it changed on SQLite; None on PostgreSQL (asyncpg's
    ``executemany`` does not tell)."""
    if not many:
        return 0
    keys = tuple(many[0]) if isinstance(stmt, sa.Insert) else ()
    if keys and any(p.keys() != many[0].keys() for p in many):  # (a set comparison, in C)
        raise ValueError("a direct INSERT's rows must all have the same keys")
    c = _prepared(conn, stmt, keys)
    values = [c.values(p) for p in many]
    if conn.dialect.name == "postgresql":
        if len(values) == 1:
            _pg_call(conn, c.sql, values[0], lambda driver: driver.execute(c.sql, *values[0]))
        else:  # one round trip for all (asyncpg pipelines them)
            _pg_call(conn, c.sql, values, lambda driver: driver.executemany(c.sql, values))
        return None
    cursor = conn.connection.driver_connection.executemany(c.sql, values)  # type: ignore[union-attr]
    return int(cursor.rowcount)


def _pg_call(conn: Conn, sql: str, params: Any, call: Callable[[Any], Any]) -> Any:
    """Await ``call(asyncpg connection)`` in the transaction of ``conn``, beginning it as
    SQLAlchemy would have (it begins lazily, on its first statement)."""
    adapted = conn.connection.dbapi_connection
    try:
        if adapted._transaction is None:  # type: ignore[union-attr]
            await_only(adapted._start_transaction())  # type: ignore[union-attr]
        return await_only(call(conn.connection.driver_connection))
    except Exception as exc:
        _raise_as_sqlalchemy(conn, exc, sql, params)


def _raise_as_sqlalchemy(conn: Conn, exc: Exception, sql: str, params: Any) -> NoReturn:
    """Raise what SQLAlchemy would have raised had it run the statement: the driver's error
    as the adapter's DBAPI error, wrapped in SQLAlchemy's (``IntegrityError``, ...), the
    connection invalidated if the error means it is lost."""
    adapted = conn.connection.dbapi_connection
    try:
        adapted._handle_exception(exc)  # type: ignore[union-attr]  # raises, translated
    except Exception as translated:
        conn._handle_dbapi_exception(translated, sql, params, None, None)
    raise AssertionError("unreachable: the handlers above raise")  # pragma: no cover
