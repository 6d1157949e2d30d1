"""The statements of a task's path name the statuses they look for in their SQL, never as a
bound parameter (``schema.status_is``): the queue's partial indexes are for those statuses,
and a bound one made SQLite compile the claim again at every run (114 µs against 13 µs) and
kept PostgreSQL's generic plans off those indexes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from taskgate.store import direct
from tests.integration import test_scheduler
from tests.integration.test_scheduler import key, rig_factory, settings

__all__ = ["rig_factory"]  # the fixture, on both stores

# ``tasks.status = ?`` / ``= $1`` / ``IN (?, ...)`` in a WHERE (a SET writes ``status=?``)
BOUND_STATUS = re.compile(r"\.status (=|IN \() ?(\?|\$\d)")


@contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL of every statement run meanwhile, through SQLAlchemy or on the driver."""
    seen: list[str] = []

    def through_sqlalchemy(_conn: Any, _cur: Any, sql: str, *_: Any) -> None:
        seen.append(sql)

    prepared = direct._prepared

    def on_the_driver(conn: Any, stmt: Any, keys: tuple[str, ...] = ()) -> direct.Compiled:
        found = prepared(conn, stmt, keys)
        seen.append(found.sql)
        return found

    event.listen(sa.Engine, "before_cursor_execute", through_sqlalchemy)
    direct._prepared = on_the_driver  # type: ignore[assignment]
    try:
        yield seen
    finally:
        direct._prepared = prepared  # type: ignore[assignment]
        event.remove(sa.Engine, "before_cursor_execute", through_sqlalchemy)


def test_the_pattern_finds_a_bound_status() -> None:
    assert BOUND_STATUS.search("WHERE tasks.id = ? AND tasks.status = ? RETURNING")
    assert BOUND_STATUS.search("WHERE tasks.status IN ($1, $2)")
    assert not BOUND_STATUS.search("WHERE tasks.status = 'PENDING' AND tasks.route = ?")
    assert not BOUND_STATUS.search("UPDATE tasks SET status=? WHERE tasks.id = ?")


async def test_a_task_s_path_binds_no_status(rig_factory: Any) -> None:
    rig = rig_factory(settings([{"name": "one", "max_concurrency": 1}]))
    recorder = test_scheduler.RECORDER
    recorder.gate = asyncio.Event()
    scheduler = rig.make_scheduler()
    await scheduler.start()
    with statements() as seen:
        a = await rig.submit(key("a"), "rides")  # claimed as it is accepted
        b = await rig.submit(key("a"), "waits")  # claimed by the dispatch loop
        recorder.gate.set()
        await rig.wait_all([a, b])
        await rig.store.tasks.get(a)
    assert any("UPDATE tasks" in sql for sql in seen)  # the claims and endings were seen
    bound = sorted({sql for sql in seen if BOUND_STATUS.search(sql)})
    assert not bound, "\n\n".join(bound)
