"""What a call cost: the counts in a provider's usage (tokens in and out, images, seconds of
audio or video) at the first configured price whose models match the task's model. Pure
functions of the settings' ``prices`` and a result's usage; the worker prices each attempt
that answered when it ends (scheduling/outcome.py), with the prices of the settings in force
then, and the store adds it to the task and to the counters of its key's and tenant's limits.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskgate.config import Price


@dataclass(frozen=True, slots=True)
class Usage:
    """What one call used, as a provider counted it."""

    input_tokens: int = 0
    output_tokens: int = 0
    images: int = 0
    seconds: float = 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def _count(value: Any) -> float | None:
    """A count a provider gave: a finite number that is not negative (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _first(usage: Mapping[str, Any], *names: str) -> float:
    for name in names:
        if (value := _count(usage.get(name))) is not None:
            return value
    return 0.0


def tokens_in_out(usage: Mapping[str, Any]) -> tuple[int, int]:
    """Tokens in (prompt) and out (completion), by OpenAI's names or the input/output ones."""
    given = _first(usage, "prompt_tokens", "input_tokens")
    made = _first(usage, "completion_tokens", "output_tokens")
    return int(given), int(made)


def usage_of(usage: Mapping[str, Any] | None) -> Usage:
    """The counts in a result's usage: tokens, ``images`` and ``seconds`` (providers name
    them so; see providers/openai_media.py); anything else is ignored."""
    if not usage:
        return Usage()
    given, made = tokens_in_out(usage)
    return Usage(given, made, int(_first(usage, "images")), _first(usage, "seconds"))


def price_for(prices: Sequence[Price], model: str) -> Price | None:
    """The first price whose models name ``model`` (exactly or by a glob)."""
    for price in prices:
        if any(fnmatch.fnmatchcase(model, pattern) for pattern in price.models):
            return price
    return None


def cost(prices: Sequence[Price], model: str, usage: Usage) -> float:
    """What one call to ``model`` that answered with ``usage`` cost (0 with no price)."""
    p = price_for(prices, model)
    if p is None:
        return 0.0
    return (
        usage.input_tokens * p.input_per_million / 1e6
        + usage.output_tokens * p.output_per_million / 1e6
        + usage.images * p.per_image
        + usage.seconds * p.per_second
        + p.per_request
    )
