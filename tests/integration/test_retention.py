"""Retention on SQLite and PostgreSQL: what a purge removes (ended tasks past their cutoff,
with their attempts, logs, webhook deliveries, emptied batches and files) and what it keeps
(everything newer, every task not ended, every file a kept task or conversation names)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

from taskgate.callbacks import AIFLOW, Callback
from taskgate.config import RetentionSettings
from taskgate.files import Files, LocalBlobs, file_json
from taskgate.models import Batch, Priority, Status, StoredFile, Task, new_id
from taskgate.ops.retention import DAY, LOCK, Purger, scopes
from taskgate.store import NewTask, Outcome, Purged, Scope, SqlStore
from taskgate.store.database import MIGRATIONS
from taskgate.store.schema import (
    attempts,
    batches,
    conversations,
    file_refs,
    files,
    messages,
    task_callbacks,
    task_logs,
    tasks,
    webhook_deliveries,
)
from taskgate.store.task_logs import LogEntry
from taskgate.store.tasks import insert_in
from tests.integration.db import on_db

OLD = 40  # days: past the default 30 days of retention


@dataclass
class World:
    store: SqlStore
    files: Files
    root: Path

    def purger(self, **conf: Any) -> Purger:
        return Purger(RetentionSettings(**conf), self.store, self.files)

    def blob(self, f: StoredFile) -> Path:
        return self.root / f.id[:2] / f.id


@pytest.fixture
def w(store: SqlStore, tmp_path: Path) -> World:
    return World(store, Files(store, LocalBlobs(tmp_path / "files")), tmp_path / "files")


def new_task(**changes: Any) -> NewTask:
    fields: dict[str, Any] = {
        "tenant": "t1",
        "api_key_id": "key_a",
        "kind": "image",
        "model": "m",
        "route": f"r-{new_id()}",  # a lane of its own: claiming it claims this task only
        "priority": Priority.DEFAULT,
        "input": "a cat",
        "params": {},
        "max_attempts": 1,
    }
    return NewTask(**{**fields, **changes})


async def pending(w: World, **changes: Any) -> Task:
    task, created = await w.store.tasks.insert(new_task(**changes))
    assert created
    return task


async def claimed(w: World, **changes: Any) -> Task:
    task = await pending(w, **changes)
    got = await w.store.claims.claim(
        task.route, lambda *_: {Priority.DEFAULT: 1}, lambda c: [None] * len(c), "w1", 30
    )
    assert [t.id for t in got] == [task.id]
    return got[0]


async def ended(
    w: World, status: Status = Status.SUCCESS, outputs: int = 0, **changes: Any
) -> tuple[Task, list[StoredFile]]:
    """A task that ran once and ended in ``status``, with ``outputs`` files it made."""
    task = await claimed(w, **changes)
    made = [
        await w.files.save(task.tenant, b"png" * 10, "image/png", "out.png", task.id)
        for _ in range(outputs)
    ]
    result = {"output": {}, "files": [file_json(f) for f in made]} if made else None
    end = Outcome(
        task_id=task.id,
        worker="w1",
        attempt=task.attempts,
        status=status,
        label=status.value.lower(),
        instance="i1",
        route=task.route,
        started_at=time.time(),
        result=result,
        error=None if status is Status.SUCCESS else {"type": "x", "message": "no"},
    )
    done = await w.store.claims.finish(end)
    assert done is not None and done.status is status
    return done, made


async def upload(w: World, tenant: str = "t1") -> StoredFile:
    return await w.files.save(tenant, b"uploaded", "text/plain", "u.txt")


async def age(
    w: World, days: float, ts: Sequence[Task] = (), fs: Sequence[StoredFile] = ()
) -> None:
    """Move tasks (their times) and files (when made) ``days`` into the past."""
    back = days * DAY

    def move(conn: sa.Connection) -> None:
        if ts:
            conn.execute(
                tasks.update()
                .where(tasks.c.id.in_([t.id for t in ts]))
                .values(
                    created_at=tasks.c.created_at - back,
                    finished_at=tasks.c.finished_at - back,
                )
            )
        if fs:
            conn.execute(
                files.update()
                .where(files.c.id.in_([f.id for f in fs]))
                .values(created_at=files.c.created_at - back)
            )

    await on_db(w.store.url, move)


async def count(w: World, table: sa.Table, *where: Any) -> int:
    q = sa.select(sa.func.count()).select_from(table).where(*where)

    def counted(conn: sa.Connection) -> int:
        return int(conn.scalar(q) or 0)

    return await on_db(w.store.url, counted)


async def snapshot(w: World) -> dict[str, int]:
    tables = (attempts, batches, conversations, file_refs, files, messages, task_logs, tasks)
    return {t.name: await count(w, t) for t in (*tables, webhook_deliveries)}


async def exists(w: World, f: StoredFile) -> bool:
    """The file's row and its bytes are both there (or neither is: anything else fails)."""
    row = await w.store.file_records.get(f.id, None) is not None
    assert row == w.blob(f).exists(), f"row {row}, bytes {w.blob(f).exists()}"
    return row


# --- what goes and what stays -----------------------------------------------------------------


async def test_a_purge_removes_what_ended_before_the_cutoff_and_nothing_newer(w: World) -> None:
    hook: dict[str, Any] = {"webhook_url": "https://hooks.example/t"}
    old, old_out = await ended(w, outputs=2, **hook)
    failed, _ = await ended(w, Status.FAILED)
    await w.store.task_logs.add(LogEntry(old.id, time.time(), "note", message="kept a while"))
    new, new_out = await ended(w, outputs=1, **hook)
    waiting = await pending(w)  # made long ago, but not ended: never purged
    running = await claimed(w)
    lost = await upload(w)
    fresh = await upload(w)
    await age(w, OLD, [old, failed, waiting, running], [*old_out, lost])

    purged = await w.purger().purge(scopes(RetentionSettings(), time.time()))

    assert purged == Purged(
        tasks=2, attempts=2, logs=1, webhook_deliveries=1, files=3, bytes=2 * 30 + 8
    )
    assert [await w.store.tasks.get(t.id) for t in (old, failed)] == [None, None]
    for gone in (old, failed):
        for table in (attempts, task_logs, webhook_deliveries):
            assert await count(w, table, table.c.task_id == gone.id) == 0
    assert [await exists(w, f) for f in [*old_out, lost]] == [False] * 3
    for kept in (new, waiting, running):
        assert await w.store.tasks.get(kept.id) is not None
    assert await count(w, attempts, attempts.c.task_id == new.id) == 1
    assert await count(w, webhook_deliveries, webhook_deliveries.c.task_id == new.id) == 1
    assert [await exists(w, f) for f in [*new_out, fresh]] == [True, True]


async def test_a_tasks_callback_headers_go_with_the_task(w: World) -> None:
    def callback(secret: str) -> dict[str, Any]:
        return {
            "webhook_url": "https://hooks.example/t",
            "callback": Callback(AIFLOW, {"X-K": secret}),
        }

    old, _ = await ended(w, **callback("old"))
    new, _ = await ended(w, **callback("new"))
    await age(w, OLD, [old])
    purged = await w.purger().purge(scopes(RetentionSettings(), time.time()))
    assert purged.tasks == 1
    assert await count(w, task_callbacks, task_callbacks.c.task_id == old.id) == 0
    assert await count(w, task_callbacks, task_callbacks.c.task_id == new.id) == 1


async def test_files_a_kept_task_names_are_kept_until_it_goes(w: World) -> None:
    """A newer task may name an older task's output, or an old upload, as its input."""
    maker, (made,) = await ended(w, outputs=1)
    named_upload, lone_upload = await upload(w), await upload(w)
    await age(w, OLD, [maker], [made, named_upload, lone_upload])
    reader, _ = await ended(
        w,
        kind="image_edit",
        input={"prompt": "p", "image": {"file_id": made.id}},
        params={"mask": {"file_id": named_upload.id}},
    )
    purger = w.purger()

    first = await purger.purge(scopes(purger.conf, time.time()))

    assert (first.tasks, first.files) == (1, 1)
    assert await w.store.tasks.get(maker.id) is None
    assert not await exists(w, lone_upload)
    assert await exists(w, made) and await exists(w, named_upload)

    await age(w, OLD, [reader])
    second = await purger.purge(scopes(purger.conf, time.time()))

    assert (second.tasks, second.files) == (1, 2)
    assert not await exists(w, made) and not await exists(w, named_upload)
    assert await snapshot(w) == dict.fromkeys(await snapshot(w), 0)


async def test_references_are_recorded_only_for_tasks_that_name_files(w: World) -> None:
    plain = await pending(w, input={"messages": [{"role": "user", "content": "hi"}]})
    part = {"type": "image_url", "image_url": {"file_id": "f1"}}
    naming = await pending(
        w, input={"messages": [{"role": "user", "content": [part, {"file_id": "f2"}]}]}
    )
    assert await count(w, file_refs, file_refs.c.task_id == plain.id) == 0
    q = sa.select(file_refs.c.file_id).where(file_refs.c.task_id == naming.id)
    named = await on_db(w.store.url, lambda conn: sorted(conn.scalars(q)))
    assert named == ["f1", "f2"]


async def test_the_migration_records_the_files_tasks_stored_before_it_name(w: World) -> None:
    part = {"type": "image_url", "image_url": {"file_id": "f1"}}
    naming = await pending(
        w,
        input={"messages": [{"role": "user", "content": [part]}], "image": {"file_id": "f2"}},
        params={"mask": {"file_id": "f3"}, "n": 2, "again": [{"file_id": "f2"}]},
    )
    await pending(w, input={"prompt": "the word file_id", "x": {"file_id": 5}})
    await pending(w, input=[{"file_id": "f4"}])
    q = sa.select(file_refs.c.task_id, file_refs.c.file_id)

    def refs(conn: sa.Connection) -> set[tuple[str, str]]:
        return {(t, f) for t, f in conn.execute(q)}

    recorded = await on_db(w.store.url, refs)

    def migrate_again(conn: sa.Connection) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0010")
        assert "file_refs" not in sa.inspect(conn).get_table_names()
        command.upgrade(cfg, "head")

    await on_db(w.store.url, migrate_again)

    assert await on_db(w.store.url, refs) == recorded
    assert {f for _, f in recorded} == {"f1", "f2", "f3", "f4"}
    assert {t for t, f in recorded if f != "f4"} == {naming.id}


async def test_each_tenant_has_its_own_days_and_null_keeps_forever(w: World) -> None:
    conf = {"days": 30, "tenants": {"brief": 1, "forever": None}}
    brief, _ = await ended(w, tenant="brief")
    other, _ = await ended(w, tenant="other")
    await age(w, 2, [brief, other])
    forever, _ = await ended(w, tenant="forever")
    ancient, _ = await ended(w, tenant="other")
    await age(w, 1000, [forever, ancient])
    purger = w.purger(**conf)

    purged = await purger.purge(scopes(purger.conf, time.time()))

    assert purged.tasks == 2
    assert await w.store.tasks.get(brief.id) is None and await w.store.tasks.get(ancient.id) is None
    assert await w.store.tasks.get(other.id) and await w.store.tasks.get(forever.id)


async def test_no_retention_at_all_purges_nothing(w: World) -> None:
    task, _ = await ended(w)
    await age(w, 10_000, [task])
    assert await w.purger(days=None).run_configured() is None
    assert await w.store.tasks.get(task.id) is not None


async def test_a_purge_of_one_tenant_leaves_the_others(w: World) -> None:
    mine, (my_file,) = await ended(w, tenant="a", outputs=1)
    theirs, (their_file,) = await ended(w, tenant="b", outputs=1)
    purged = await w.purger().purge([Scope(time.time(), "a")])
    assert (purged.tasks, purged.files) == (1, 1)
    assert not await exists(w, my_file) and await exists(w, their_file)
    assert await w.store.tasks.get(mine.id) is None
    assert await w.store.tasks.get(theirs.id) is not None


# --- dry runs and batches ----------------------------------------------------------------------


async def busy_world(w: World) -> None:
    """Old and new tasks, files, a batch wholly old and one half old, a conversation."""
    old: list[Task] = []
    old_files: list[StoredFile] = []
    for status in (Status.SUCCESS, Status.FAILED, Status.CANCELLED):
        task, made = await ended(w, status, outputs=1, webhook_url="https://h.example/x")
        old.append(task)
        old_files += made
    uploads = [await upload(w) for _ in range(3)]
    for batch_id, both_old in (("b-old", True), ("b-half", False)):
        await w.store.batches.insert(
            Batch(batch_id, "t1", "key_a", "image", False, ["m", "m"], time.time()), []
        )
        first, _ = await ended(w, batch_id=batch_id)
        second, _ = await ended(w, batch_id=batch_id)
        old += [first, second] if both_old else [first]
    talk = await w.store.conversations.create("t1")
    (turn,) = await w.store.conversations.add_turn(
        talk.id, "draw", [new_task(conversation_id=talk.id, route="r-talk")]
    )
    old.append(turn)  # pending: aged, but never purged
    await age(w, OLD, old, [*old_files, *uploads[:2]])
    await ended(w, outputs=1, input={"image": {"file_id": uploads[0].id}})  # new, names one


async def test_a_dry_run_counts_what_a_purge_then_removes_and_changes_nothing(w: World) -> None:
    await busy_world(w)
    before = await snapshot(w)
    purger = w.purger()
    found = scopes(purger.conf, time.time())

    dry = await purger.purge(found, dry_run=True)

    assert await snapshot(w) == before
    assert (dry.tasks, dry.batches, dry.files) == (6, 1, 4)  # 3 outputs, 1 upload nobody names
    assert await purger.purge(found) == dry
    assert await purger.purge(found, dry_run=True) == Purged()


async def test_batches_of_the_configured_size_until_nothing_is_due(w: World) -> None:
    old = [(await ended(w))[0] for _ in range(5)]
    uploads = [await upload(w) for _ in range(3)]
    await age(w, OLD, old, uploads)
    scope = Scope(time.time())

    done, more = await w.store.retention.purge_tasks(scope, 2)
    assert (done.tasks, more) == (2, True)
    assert await count(w, tasks) == 3

    purged = await w.purger(batch=2).purge([scope])
    assert (purged.tasks, purged.files) == (3, 3)
    assert await count(w, tasks) == 0
    assert await w.store.retention.purge_tasks(scope, 2) == (Purged(), False)


async def test_a_batch_goes_with_its_last_task_and_its_webhook(w: World) -> None:
    hook = "https://h.example/batch"
    await w.store.batches.insert(
        Batch("b1", "t1", "key_a", "image", False, ["m", "m"], time.time(), webhook_url=hook), []
    )
    first, _ = await ended(w, batch_id="b1")
    second, _ = await ended(w, batch_id="b1")
    assert await count(w, webhook_deliveries, webhook_deliveries.c.batch_id == "b1") == 1
    await age(w, OLD, [first])

    assert (await w.purger().purge([Scope(time.time() - DAY)])).batches == 0
    assert await w.store.batches.get("b1", None) is not None

    purged = await w.purger().purge([Scope(time.time())])
    assert (purged.tasks, purged.batches, purged.webhook_deliveries) == (1, 1, 1)
    assert await w.store.batches.get("b1", None) is None
    assert await w.store.tasks.get(second.id) is None


# --- conversations ------------------------------------------------------------------------------


async def test_a_conversation_keeps_the_files_of_its_purged_turns_until_deleted(
    w: World,
) -> None:
    """A conversation is its user's history: it stays when its turns' tasks are purged,
    and so do the files it shows (the turn's input image, the answer's output)."""
    picture = await upload(w)
    talk = await w.store.conversations.create("t1")
    prompt = {"prompt": "make it blue", "image": {"file_id": picture.id}}
    turn = new_task(conversation_id=talk.id, kind="image_edit", input=prompt)
    (task,) = await w.store.conversations.add_turn(talk.id, prompt, [turn])
    got = await w.store.claims.claim(
        task.route, lambda *_: {Priority.DEFAULT: 1}, lambda c: [None] * len(c), "w1", 30
    )
    made = await w.files.save("t1", b"blue", "image/png", "blue.png", task.id)
    end = Outcome(
        task_id=task.id,
        worker="w1",
        attempt=got[0].attempts,
        status=Status.SUCCESS,
        label="success",
        instance="i1",
        route=task.route,
        started_at=time.time(),
        result={"output": {}, "files": [file_json(made)]},
    )
    assert await w.store.claims.finish(end) is not None
    await age(w, OLD, [task], [picture, made])
    purger = w.purger()

    purged = await purger.purge(scopes(purger.conf, time.time()))

    assert (purged.tasks, purged.files) == (1, 0)
    assert await w.store.conversations.get(talk.id, "t1") is not None
    assert len(await w.store.conversations.messages(talk.id)) == 2
    assert await exists(w, picture) and await exists(w, made)

    assert await w.store.conversations.delete(talk.id, "t1")
    assert (await purger.purge(scopes(purger.conf, time.time()))).files == 2
    assert not await exists(w, picture) and not await exists(w, made)


async def test_a_file_named_by_a_task_being_accepted_is_skipped_not_purged(w: World) -> None:
    """The purge and the insert of a task that names an old upload meet: the purge skips
    the file while the insert is under way, and sees the reference once it is committed."""
    if w.store.dialect != "postgresql":
        pytest.skip("SQLite runs one writer at a time")
    old = await upload(w)
    await age(w, OLD, fs=[old])
    naming = new_task(input={"image": {"file_id": old.id}})
    engine = create_async_engine(w.store.url.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        async with engine.begin() as accepting:
            await accepting.run_sync(insert_in, [naming])
            found = w.store.retention.purge_files(Scope(time.time()), 10)
            assert await asyncio.wait_for(found, 10) == ([], Purged(), False)
        assert (await w.purger().purge([Scope(time.time())])).files == 0
        assert await exists(w, old)
    finally:
        await engine.dispose()


# --- the background purge -----------------------------------------------------------------------


async def test_the_background_purge_runs_in_one_process_at_a_time(w: World) -> None:
    if w.store.dialect != "postgresql":
        pytest.skip("on SQLite one process runs the scheduler, and its writers take turns")
    task, _ = await ended(w)
    await age(w, OLD, [task])
    other = SqlStore(w.store.url)  # another process's store
    await other.open()
    try:
        async with other.db.exclusive(LOCK) as held:
            assert held
            assert await w.purger().run_configured() is None
            assert await w.store.tasks.get(task.id) is not None
        assert await w.purger().run_configured() == Purged(tasks=1, attempts=1)
    finally:
        await other.close()
