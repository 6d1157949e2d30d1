"""The numbers a client may give in a task's params, and the one check every API runs on
them before anything is stored.

``COMMON`` bounds the names most backends read (OpenAI's, which the other providers and
the compatible APIs share); a provider adds the names it reads itself in its
``Provider.param_bounds`` (the mock's ``mock_*``). Any number that is not finite, anywhere
in the params, is refused too. So a 1e20 never becomes a call that asks a backend (or the
mock) for the impossible, and a request with one gets a 400 that names it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from taskgate.errors import BadRequest

MAX_INT64 = 2**63 - 1

Bounds = tuple[float, float, bool]  # least, most, whole numbers only

COMMON: Mapping[str, Bounds] = {
    "n": (1, 10, True),
    "max_tokens": (1, 1_000_000, True),
    "max_completion_tokens": (1, 1_000_000, True),
    "temperature": (0, 2, False),
    "top_p": (0, 1, False),
    "top_k": (0, 100_000, True),
    "presence_penalty": (-2, 2, False),
    "frequency_penalty": (-2, 2, False),
    "top_logprobs": (0, 20, True),
    "seed": (-MAX_INT64 - 1, MAX_INT64, True),
    "dimensions": (1, 65_536, True),
    "speed": (0.25, 4, False),
    "duration": (0, 86_400, False),  # seconds of video
    "fps": (1, 240, True),
    "width": (1, 16_384, True),
    "height": (1, 16_384, True),
    "guidance_scale": (0, 100, False),
    "scale": (0, 100, False),
}


def check(params: Mapping[str, Any], bounds: Mapping[str, Bounds] = COMMON) -> None:
    """Refuse (400) params with a number that cannot be meant: one that is not finite,
    anywhere in them, and a bounded one (by name) that is not a number in its range.
    ``None`` is "not given", as OpenAI's clients send it."""
    for name, value in params.items():
        if value is not None and (limits := bounds.get(name)) is not None:
            check_number(name, value, *limits)
    if not finite(params):
        raise BadRequest("Invalid params: numbers must be finite (no NaN or Infinity).")


def check_number(name: str, value: Any, least: float, most: float, whole: bool) -> None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (number and least <= value <= most and (not whole or float(value).is_integer())):
        what = "an integer" if whole else "a number"
        raise BadRequest(
            f"Invalid '{name}': expected {what} from {_shown(least)} to {_shown(most)}.",
            field=name,
        )


def _shown(bound: float) -> str:
    return f"{int(bound):,}" if float(bound).is_integer() else str(bound)


def finite(value: Any) -> bool:
    """Whether every number in a JSON value is finite. Not recursive: a value nested as
    deep as a parser allows cannot exhaust the stack."""
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list | tuple):
            todo.extend(item)
    return True
