"""Provider-side jobs through the scheduler on the real store: the job is kept on the task, the
slot is freed while it runs, polling resumes after a hand-back, a timeout still collects a
late result, and a cancel reaches the backend's job."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from taskgate import Call, register_provider
from taskgate.config import Settings
from taskgate.events import MemoryEvents
from taskgate.files import Files, LocalBlobs
from taskgate.gateway import Gateway
from taskgate.models import ApiKey, Priority, Status, Task
from taskgate.providers.mock import MockProvider
from taskgate.scheduling import Scheduler
from taskgate.store import SqlStore
from taskgate.submission import Submission
from tests.conftest import reset_postgres, store_url

KEY = ApiKey(id="k", tenant="t", name="k", admin=False, created_at=0)


def settings(**route: Any) -> Settings:
    base = {
        "name": "video",
        "models": ["vid"],
        "provider": "mock",
        "kinds": ["video", "chat"],
        "instances": [{"name": "v1", "max_concurrency": 1}],
        "timeout": 30,
        "retry": {"max_attempts": 3, "backoff_base": 0.01, "backoff_max": 0.05},
        "poll": {"interval": 0.02, "max_interval": 0.05, "late_results_for": 10},
    }
    return Settings.model_validate(
        {"routes": [{**base, **route}], "scheduler": {"poll_interval": 0.05}}
    )


@dataclass
class Rig:
    store: SqlStore
    conf: Settings
    events: MemoryEvents
    files: Files
    schedulers: list[Scheduler] = field(default_factory=list)

    @property
    def gateway(self) -> Gateway:
        return Gateway(self.conf, self.store, self.events)

    async def scheduler(self, start: bool = True) -> Scheduler:
        s = Scheduler(self.conf, self.store, self.events, self.files)
        self.schedulers.append(s)
        if start:
            await s.start()
        return s

    async def submit(self, kind: str = "video", **params: Any) -> str:
        task, _ = await self.gateway.submit(KEY, Submission(kind, "vid", "a cat", params))
        return task.id

    async def until(self, task_id: str, check: Callable[[Task], bool], timeout: float = 10) -> Task:
        end = time.monotonic() + timeout
        while True:
            task = await self.store.tasks.get(task_id)
            assert task is not None
            if check(task):
                return task
            assert time.monotonic() < end, f"task {task_id} stuck at {task.status}"
            await asyncio.sleep(0.01)

    async def ended(self, task_id: str) -> Task:
        return await self.until(task_id, lambda t: t.terminal)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def rig_for(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[Settings], Rig]]:
    if request.param == "postgresql":
        await reset_postgres()
    store = SqlStore(store_url(request.param, tmp_path))
    await store.open()
    rigs: list[Rig] = []

    def make(conf: Settings) -> Rig:
        rig = Rig(store, conf, MemoryEvents(), Files(store, LocalBlobs(tmp_path / "files")))
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        for s in rig.schedulers:
            await s.stop(grace=1)
    await store.close()


def has_job(task: Task) -> bool:
    return task.provider_job is not None


def mock(s: Scheduler) -> MockProvider:
    provider = s.lanes["video"].provider
    assert isinstance(provider, MockProvider)
    return provider


async def test_a_job_frees_its_slot_and_ends_with_the_polled_result(rig_for: Any) -> None:
    rig = rig_for(settings())
    await rig.scheduler()
    videos = [await rig.submit(mock_job_seconds=1.0) for _ in range(3)]
    # one slot, yet all three jobs are submitted while the first still runs
    jobs = [(await rig.until(v, has_job)).provider_job for v in videos]
    chat = await rig.submit("chat")
    assert (await rig.ended(chat)).status is Status.SUCCESS
    for v in videos:
        assert (await rig.until(v, has_job)).status is Status.PROCESSING
    for video, job in zip(videos, jobs, strict=True):
        done = await rig.ended(video)
        assert done.status is Status.SUCCESS, done.error
        assert done.result["output"]["kind"] == "video"
        assert done.provider_job == job
        assert job is not None and job["id"] == f"mockjob-{video}-1"
        assert job["instance"] == "v1" and job["route"] == "video"


async def test_a_handed_back_job_is_resumed_not_submitted_again(rig_for: Any) -> None:
    rig = rig_for(settings())
    first = await rig.scheduler()
    video = await rig.submit(mock_job_seconds=1.0)
    job = (await rig.until(video, has_job)).provider_job
    await first.stop(grace=5)  # a job only being polled is handed back at once
    handed = await rig.store.tasks.get(video)
    assert handed is not None and handed.status is Status.PENDING
    assert handed.provider_job == job
    await rig.scheduler()
    done = await rig.ended(video)
    assert done.status is Status.SUCCESS, done.error
    assert done.provider_job == job  # the same backend job, polled to its end
    history = [a.outcome for a in await rig.store.tasks.history(video)]
    assert history == ["interrupted", "success"]


async def test_a_lost_worker_with_a_job_is_resumed_even_out_of_attempts(rig_for: Any) -> None:
    rig = rig_for(settings(retry={"max_attempts": 1}))
    await rig.submit(mock_job_seconds=0.2)
    [claimed] = await rig.store.claims.claim(
        "video", lambda *_: {Priority.DEFAULT: 1}, lambda ts: [None] * len(ts), "gone:1:x", 30
    )
    assert await rig.store.claims.set_provider_job(claimed, "gone:1:x", {"id": "j1", "data": {}})
    await rig.store.claims.expire_leases(["gone:1:x"])
    [requeued] = await rig.store.claims.sweep()
    assert requeued.status is Status.PENDING and requeued.provider_job is not None
    assert claimed.attempts == requeued.max_attempts == 1


async def test_a_job_past_the_run_timeout_times_out_but_keeps_its_late_result(
    rig_for: Any,
) -> None:
    rig = rig_for(settings(timeout=0.3))
    await rig.scheduler()
    video = await rig.submit(mock_job_seconds=0.8)
    timed_out = await rig.ended(video)
    assert timed_out.status is Status.TIMEOUT and timed_out.result is None
    assert timed_out.error is not None and timed_out.error["provider_job"].startswith("mockjob-")
    assert [a.outcome for a in await rig.store.tasks.history(video)] == ["timeout"]  # no resubmit
    late = await rig.until(video, lambda t: t.result is not None)
    assert late.status is Status.TIMEOUT
    assert late.result["output"]["kind"] == "video"
    logged = [(e.event, e.message) for e in await rig.store.task_logs.of(video, 200)]
    assert logged == [
        ("job_submitted", f"the backend took job {timed_out.error['provider_job']}"),
        ("job_finished", "the job failed: the run timeout passed"),
        ("late_result", "the backend job's late result was kept"),
    ]


async def test_cancelling_a_polled_task_cancels_the_backend_job(rig_for: Any) -> None:
    rig = rig_for(settings())
    s = await rig.scheduler()
    video = await rig.submit(mock_job_seconds=5)
    job = (await rig.until(video, has_job)).provider_job
    assert job is not None
    await rig.gateway.cancel(KEY, video)
    await rig.until(video, lambda t: t.status is Status.CANCELLED)
    for _ in range(3000):  # the run lets go once the job is cancelled and the attempt kept
        if video not in s.attempts.running:
            break
        await asyncio.sleep(0.01)
    assert mock(s).cancelled == [job["id"]]
    assert [a.outcome for a in await rig.store.tasks.history(video)] == ["cancelled"]


async def test_cancelling_a_queued_resumable_task_cancels_its_job(rig_for: Any) -> None:
    rig = rig_for(settings())
    first = await rig.scheduler()
    video = await rig.submit(mock_job_seconds=5)
    job = (await rig.until(video, has_job)).provider_job
    await first.stop(grace=1)
    listener = await rig.scheduler(start=False)  # listens for cancels; claims nothing
    listening = asyncio.create_task(listener._listen("cancel", listener.attempts.cancel))
    try:
        await asyncio.sleep(0.05)
        await rig.gateway.cancel(KEY, video)
        for _ in range(200):
            if mock(listener).cancelled:
                break
            await asyncio.sleep(0.01)
        assert job is not None and mock(listener).cancelled == [job["id"]]
    finally:
        listening.cancel()


async def test_a_job_that_fails_on_the_backend_is_retried_with_a_new_job(rig_for: Any) -> None:
    rig = rig_for(settings())
    await rig.scheduler()
    video = await rig.submit(mock_job_seconds=0.05, mock_job_error="overloaded")
    done = await rig.ended(video)
    assert done.status is Status.FAILED and done.error is not None
    assert done.error["type"] == "overloaded"
    assert [a.outcome for a in await rig.store.tasks.history(video)] == ["retry", "retry", "failed"]
    assert done.provider_job is not None and done.provider_job["id"].endswith("-3")


async def test_a_refused_job_fails_at_once(rig_for: Any) -> None:
    rig = rig_for(settings())
    await rig.scheduler()
    video = await rig.submit(mock_job_seconds=0.05, mock_job_error="content_refused")
    done = await rig.ended(video)
    assert done.status is Status.FAILED and done.error is not None
    assert done.error["type"] == "content_refused"
    assert [a.outcome for a in await rig.store.tasks.history(video)] == ["failed"]


async def test_failed_polls_retry_the_same_job_instead_of_a_new_one(rig_for: Any) -> None:
    rig = rig_for(settings(poll={"interval": 0.01, "max_interval": 0.02, "max_errors": 2}))
    await rig.scheduler()
    video = await rig.submit(mock_job_seconds=0.05, mock_poll_failures=2)
    done = await rig.ended(video)
    assert done.status is Status.SUCCESS, done.error
    assert [a.outcome for a in await rig.store.tasks.history(video)] == ["retry", "success"]
    assert done.provider_job is not None
    assert done.provider_job["id"] == f"mockjob-{video}-1"  # resumed, not submitted again


async def test_a_lost_lease_stops_polling_without_cancelling_the_job(rig_for: Any) -> None:
    conf = settings()
    # this scheduler's own sweeps (one at its start, then a minute apart) must not requeue
    # the task before the sweep below, as another worker's sweeper does
    slow_sweeps = conf.scheduler.model_copy(update={"poll_interval": 60.0})
    rig = rig_for(conf.model_copy(update={"scheduler": slow_sweeps}))
    s = await rig.scheduler()
    video = await rig.submit(mock_job_seconds=5)
    await rig.until(video, has_job)
    await rig.store.claims.expire_leases([s.worker_id])
    [requeued] = await rig.store.claims.sweep()  # another worker's sweeper requeued it
    assert requeued.status is Status.PENDING
    await s.leases.renew()  # we notice we no longer hold it
    for _ in range(100):
        if video not in s.attempts.running:
            break
        await asyncio.sleep(0.01)
    assert (
        video not in s.attempts.running or s.attempts.running[video].task.attempts == 2
    )  # resumed by us
    assert mock(s).cancelled == []  # the job goes on for whoever holds the task now


async def test_a_backend_job_joins_its_task_s_log_with_its_polls_summed_up(rig_for: Any) -> None:
    rig = rig_for(settings())
    await rig.scheduler()
    video = await rig.submit(mock_job_seconds=0.15)
    await rig.ended(video)
    entries = await rig.store.task_logs.of(video, 200)
    assert [e.event for e in entries] == ["job_submitted", "job_finished"]
    submitted, finished = entries
    assert submitted.attempt == finished.attempt == 1 and finished.instance == "v1"
    assert finished.data is not None and finished.data["polls"] >= 1
    assert finished.message == "the job finished"


@register_provider("buggy")
async def _buggy(call: Call) -> Any:
    secret = call.instance.secret.get_secret_value() if call.instance.secret else ""
    raise RuntimeError(f"a bug that quotes {secret}")


@pytest.mark.parametrize("keep", [True, False])
async def test_an_unexpected_error_s_traceback_joins_the_task_s_log_only_when_asked(
    rig_for: Any, keep: bool
) -> None:
    conf = settings(provider="buggy", instances=[{"name": "v1", "secret": "sk-BUGGY-42"}])
    rig = rig_for(conf.model_copy(update={"log_errors_to_store": keep}))
    await rig.scheduler()
    task = await rig.ended(await rig.submit("chat"))
    assert task.status is Status.FAILED
    errors_logged = [e for e in await rig.store.task_logs.of(task.id, 200) if e.event == "error"]
    if not keep:
        assert errors_logged == []
        return
    [entry] = errors_logged
    assert entry.message and "RuntimeError: a bug that quotes" in entry.message
    assert "sk-BUGGY-42" not in entry.message and entry.attempt == 1
