"""A provider (a plugin, or a backend it quotes) that hands back the instance's secret: the
scheduler keeps it out of the stored task, its attempts, its events and the logs, on every
path: a result, a streamed answer, a backend job, an error, a crash."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from taskgate import errors
from taskgate.config import Settings
from taskgate.events import MemoryEvents
from taskgate.files import Files, LocalBlobs
from taskgate.gateway import Gateway
from taskgate.models import ApiKey, Status, Task
from taskgate.providers import Call, Job, Pending, Provider, Result, register_provider
from taskgate.scheduling import Scheduler
from taskgate.store import SqlStore
from taskgate.submission import Submission
from taskgate.views import task_json

SECRET = "sk-LEAKY-4d9e1f7a2b8c6e0d3a5f"


@register_provider("leaky")
class LeakyProvider(Provider):
    """Echoes its instance's secret wherever the task's ``how`` param says."""

    failed_polls: set[str] = set()

    async def run(self, call: Call) -> Result | Job:
        secret = call.instance.secret.get_secret_value() if call.instance.secret else ""
        how = call.params["how"]
        if how in ("job", "flaky poll"):
            return Job(f"job-{secret}", {"token": secret, "n": 1}, poll_after=0.0)
        if how == "error":
            raise errors.AuthFailed(f"key {secret} refused", provider_code=f"bad-{secret}")
        if how == "crash":
            raise RuntimeError(f"could not call with {secret}")
        for piece in ("your key is ", secret[:7], f"{secret[7:]} and ", f"{secret}!"):
            await call.emit({"delta": piece})
        await call.emit({"status": f"sent {secret}"})
        return self._answer(secret)

    async def poll(self, call: Call, job: Job) -> Result | Pending:
        assert job.data == {"token": "***", "n": 1}  # polled from the job as kept
        if call.params["how"] == "flaky poll" and call.task_id not in self.failed_polls:
            self.failed_polls.add(call.task_id)  # the first poll request fails, quoting it
            secret = call.instance.secret.get_secret_value() if call.instance.secret else ""
            raise errors.Overloaded(f"backend says: bad auth {secret}")
        return self._answer("***")

    @staticmethod
    def _answer(secret: str) -> Result:
        output = {"text": f"Bearer {secret}", secret: [secret, {"k": secret}], "n": 1}
        return Result(output, {"output_tokens": 2, "note": secret})


class RecordedEvents(MemoryEvents):
    def __init__(self) -> None:
        super().__init__()
        self.published: list[tuple[str, Any]] = []

    async def publish(self, topic: str, message: Any) -> None:
        self.published.append((topic, message))
        await super().publish(topic, message)


@dataclass
class Rig:
    store: SqlStore
    events: RecordedEvents
    gateway: Gateway

    async def run(self, how: str) -> Task:
        key = ApiKey(id="k", tenant="t", name="k", admin=False, created_at=0)
        task, _ = await self.gateway.submit(key, Submission("chat", "leaky", "hi", {"how": how}))
        async with self.events.subscribe(f"task:{task.id}") as sub:
            while not (ended := await self.store.tasks.get(task.id)) or not ended.terminal:
                message = await sub.get(timeout=20)
                assert message is not None, "the task did not end"
        return ended


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    settings = Settings.model_validate(
        {
            "routes": [
                {
                    "name": "leaky",
                    "models": ["leaky"],
                    "provider": "leaky",
                    "instances": [{"name": "l1", "secret": SECRET}],
                    "retry": {"max_attempts": 1},
                    "poll": {"interval": 0.01, "max_interval": 0.01, "jitter": 0},
                }
            ],
            "scheduler": {"poll_interval": 0.05},
        }
    )
    store = SqlStore(f"sqlite:///{tmp_path}/taskgate.db")
    await store.open()
    events = RecordedEvents()
    gateway = Gateway(settings, store, events)
    scheduler = Scheduler(settings, store, events, Files(store, LocalBlobs(tmp_path / "files")))
    await scheduler.start()
    try:
        yield Rig(store, events, gateway)
    finally:
        await scheduler.stop(grace=1)
        await store.close()


def leaked(rig: Rig, task: Task, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Where the secret shows: the task as stored and shown, its events, the logs."""
    places = {
        "task": orjson.dumps(task_json(task)),
        "provider_job": orjson.dumps(task.provider_job),
        "events": orjson.dumps(rig.events.published, default=str),
        "logs": caplog.text.encode(),
    }
    return [name for name, text in places.items() if SECRET.encode() in text]


EXPECTED_OUTPUT = {"text": "Bearer ***", "***": ["***", {"k": "***"}], "n": 1}


async def test_a_result_and_a_stream_quoting_the_secret(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    task = await rig.run("stream")
    assert task.status is Status.SUCCESS, task.error
    assert task.result == {"output": EXPECTED_OUTPUT, "usage": {"output_tokens": 2, "note": "***"}}
    progress = [m["data"] for t, m in rig.events.published if m.get("type") == "progress"]
    assert "".join(p.get("delta", "") for p in progress) == "your key is *** and ***!"
    assert {"status": "sent ***"} in progress
    assert not any(SECRET[:4] in p.get("delta", "") for p in progress)  # not even its start
    assert leaked(rig, task, caplog) == []


@pytest.mark.parametrize("how", ["job", "flaky poll"])
async def test_a_job_and_its_polled_result(
    rig: Rig, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """Also when a poll request fails quoting the secret: it is logged, without it."""
    with caplog.at_level(logging.INFO):
        task = await rig.run(how)
    assert task.status is Status.SUCCESS, task.error
    assert task.provider_job is not None and task.provider_job["id"] == "job-***"
    assert task.result is not None and task.result["output"] == EXPECTED_OUTPUT
    assert leaked(rig, task, caplog) == []


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("error", "key *** refused"),
        ("crash", "provider error: RuntimeError: could not call with ***"),
    ],
)
async def test_an_error_or_a_crash_quoting_the_secret(
    rig: Rig, caplog: pytest.LogCaptureFixture, how: str, message: str
) -> None:
    with caplog.at_level(logging.INFO):
        task = await rig.run(how)
    assert task.status is Status.FAILED
    assert task.error is not None and task.error["message"] == message
    assert [a.error for a in await rig.store.tasks.history(task.id)] == [task.error]
    assert leaked(rig, task, caplog) == []
