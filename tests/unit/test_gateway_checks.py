"""Submissions the store could not keep are refused before anything is stored."""

from __future__ import annotations

from typing import Any

import pytest

from taskgate.errors import BadRequest
from taskgate.gateway import Submission, check_storable


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
