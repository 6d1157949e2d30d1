"""Polling a backend's job: failed poll requests are retried, a job that ended is not."""

from __future__ import annotations

import random

import pytest

from taskgate import errors
from taskgate.config import Instance, PollPolicy, Route
from taskgate.polling import poll_until_done
from taskgate.providers import Call, Job, Pending, Provider, Result

ROUTE = Route(name="r", models=["*"], provider="mock", instances=[Instance(name="i")])
FAST = PollPolicy(interval=0.001, max_interval=0.002, max_errors=3)


class Scripted(Provider):
    """Answers each poll with the next item: a Pending, a Result or an error to raise."""

    def __init__(self, *answers: Result | Pending | errors.ProviderError) -> None:
        super().__init__(ROUTE)
        self.answers = list(answers)
        self.polls = 0
        self.progress: list[dict[str, object]] = []

    async def run(self, call: Call) -> Result:
        raise AssertionError("not called")

    async def poll(self, call: Call, job: Job) -> Result | Pending:
        self.polls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, errors.ProviderError):
            raise answer
        return answer

    def call(self) -> Call:
        async def emit(data: dict[str, object]) -> None:
            self.progress.append(data)

        return Call("t", "video", "m", "x", {}, 1, ROUTE.instances[0], ROUTE, emit=emit)


async def poll(p: Scripted) -> Result:
    return await poll_until_done(p, p.call(), Job("j1"), FAST, random.Random(0))


async def test_pending_then_result_forwards_progress() -> None:
    p = Scripted(Pending(progress={"percent": 50}), Pending(), Result({"ok": True}))
    assert (await poll(p)).output == {"ok": True}
    assert p.polls == 3 and p.progress == [{"percent": 50}]


async def test_failed_poll_requests_are_retried_up_to_max_errors() -> None:
    p = Scripted(errors.Overloaded("503"), errors.RateLimited("429"), Result({"ok": 1}))
    assert (await poll(p)).output == {"ok": 1}
    stuck = Scripted(*(errors.ConnectionFailed("down") for _ in range(5)))
    with pytest.raises(errors.ConnectionFailed):
        await poll(stuck)
    assert stuck.polls == FAST.max_errors


async def test_a_job_that_ended_in_error_is_not_polled_again() -> None:
    p = Scripted(Pending(), errors.job_ended(errors.Overloaded("job failed")), Result({}))
    with pytest.raises(errors.Overloaded) as caught:
        await poll(p)
    assert caught.value.job_ended and p.polls == 2


async def test_a_permanent_error_ends_polling_at_once() -> None:
    p = Scripted(errors.ContentRefused("refused"), Result({}))
    with pytest.raises(errors.ContentRefused):
        await poll(p)
    assert p.polls == 1
