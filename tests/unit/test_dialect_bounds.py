"""The bounds every API puts on the numbers a client sends in a task's params (the common
ones, and those the mock provider reads), and on the OpenAI API's queue-timeout header."""

from __future__ import annotations

import math
from typing import Any

import pytest

from taskgate.api import openai_wire as wire
from taskgate.errors import BadRequest
from taskgate.params import check, finite
from taskgate.providers.mock import MockProvider
from taskgate.submission import MAX_QUEUE_TIMEOUT


def check_params(params: dict[str, Any]) -> None:
    """As the gateway checks a task's params for a route of the mock provider."""
    check(params)
    check(params, MockProvider.param_bounds)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"temperature": 0, "top_p": 1, "max_tokens": 1_000_000, "seed": -1},
        {"temperature": 2.0, "max_tokens": 256.0, "n": 1, "dimensions": 3},
        {"seed": 2**63 - 1, "presence_penalty": -2, "mock_latency_ms": 0},
        {"temperature": None, "max_tokens": None},  # OpenAI clients send null for "not given"
        {"tools": [{"type": "function"}], "stop": ["\n"], "anything_else": 1e300},
    ],
)
def test_numbers_in_their_ranges_pass(params: dict[str, Any]) -> None:
    check_params(params)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_tokens", 1e20),
        ("max_tokens", -1),
        ("max_tokens", 0),
        ("max_tokens", 1.5),
        ("temperature", 1e20),
        ("temperature", -0.1),
        ("temperature", math.nan),
        ("temperature", math.inf),
        ("temperature", True),  # a bool is no number here
        ("temperature", "0.7"),
        ("n", 11),
        ("seed", 2**63),
        ("dimensions", 10**9),
        ("mock_latency_ms", 1e20),
        ("mock_job_seconds", -1),
        ("mock_size", 100_000),
    ],
)
def test_a_known_number_out_of_its_range_is_a_400_naming_it(name: str, value: Any) -> None:
    with pytest.raises(BadRequest) as refused:
        check_params({name: value})
    assert refused.value.details["field"] == name and name in refused.value.message


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, [1, [2, {"x": math.nan}]]])
def test_a_number_that_is_not_finite_is_refused_anywhere_in_the_params(value: Any) -> None:
    with pytest.raises(BadRequest, match="finite"):
        check_params({"nested": {"deeper": value}})


def test_the_finite_check_walks_any_depth_without_recursing() -> None:
    deep: Any = math.nan
    for _ in range(100_000):
        deep = [deep]
    assert not finite(deep)
    assert finite({"a": [1, 2.5, {"b": "c"}], "d": None})


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "1e400", "1e20", "-1", "0", "soon", ""])
def test_the_queue_timeout_header_is_seconds_within_the_native_bound(raw: str) -> None:
    with pytest.raises(BadRequest) as refused:
        wire.queue_timeout_of({"x-taskgate-queue-timeout": raw})
    assert refused.value.details["field"] == "X-Taskgate-Queue-Timeout"


def test_the_queue_timeout_header_takes_up_to_the_native_bound() -> None:
    assert wire.queue_timeout_of({}) == wire.DEFAULT_QUEUE_TIMEOUT
    assert wire.queue_timeout_of({"x-taskgate-queue-timeout": "0.5"}) == 0.5
    limit = {"x-taskgate-queue-timeout": str(MAX_QUEUE_TIMEOUT)}
    assert wire.queue_timeout_of(limit) == MAX_QUEUE_TIMEOUT
