"""Submissions the store could not keep are refused before anything is stored."""

from __future__ import annotations

from typing import Any

import pytest

from taskgate.errors import BadRequest
from taskgate.submission import Submission, check_storable


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


def test_deep_nesting_and_huge_integers_are_a_400_not_a_crash() -> None:
    assert check_storable(Submission("chat", "m", nested(100), {})).input == nested(100)
    with pytest.raises(BadRequest, match="storable JSON"):
        check_storable(Submission("chat", "m", nested(900), {}))  # deeper than recursion allows
    with pytest.raises(BadRequest, match="storable JSON"):
        check_storable(Submission("chat", "m", "x", {"seed": 2**70}))


class NoStore:
    """A store that must not be reached: the submission is refused before it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was used ({name}) for a refused submission")


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"timeout": 1e20}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"queue_timeout": float("inf")}, "queue_timeout"),
        ({"queue_timeout": 0}, "queue_timeout"),
        ({"params": {"temperature": 1e20}}, "temperature"),
        ({"params": {"deep": [{"x": float("nan")}]}}, "finite"),
        ({"params": {"mock_size": 100_000}}, "mock_size"),  # the mock provider's own bound
    ],
)
async def test_every_api_s_submission_is_bounded_before_the_store(
    changes: dict[str, Any], needle: str
) -> None:
    from taskgate.config import load
    from taskgate.events import MemoryEvents
    from taskgate.gateway import Gateway
    from taskgate.models import ApiKey

    gw = Gateway(load(None, {}), NoStore(), MemoryEvents())  # type: ignore[arg-type]
    key = ApiKey(id="k", tenant="t", name="k", admin=False, created_at=0)
    sub = Submission(**{"kind": "chat", "model": "mock", "input": "hi", "params": {}, **changes})
    with pytest.raises(BadRequest, match=needle):
        await gw.submit(key, sub)
    with pytest.raises(BadRequest, match=needle):
        await gw.submit_batch(key, sub, ["mock"])
