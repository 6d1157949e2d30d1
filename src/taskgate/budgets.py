"""Limits per key and per tenant: tasks accepted per minute, tokens per UTC day, cost per
UTC calendar month. Which of them a request is held to (:func:`quotas`), and the arithmetic
of the counter the store keeps for each key or tenant with a limit (:class:`Counter`).
Pure: callers pass ``now``.

Requests per minute are a token bucket, as the backends' rate limits are (policy.Bucket):
it holds a minute's worth and refills at the per-minute rate; each task accepted takes one.
Tokens and cost are counted when attempts end (their usage is known only then), so a key
may go over by what its tasks in flight use; once over, its requests are refused until the
day or month is out.
"""

from __future__ import annotations

import calendar
import math
import time
from dataclasses import dataclass, replace

from taskgate.config import Limits
from taskgate.errors import LimitExceeded
from taskgate.models import ApiKey

DAY = 86_400
NO_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Quota:
    """The limits of one key or tenant a request is held to, and its counter's name."""

    subject: str  # key:ID | tenant:NAME
    tenant: str
    api_key_id: str | None  # a key's quota: the key
    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    cost_per_month: float | None = None

    @property
    def who(self) -> str:
        """How a refusal names it."""
        return f"key {self.api_key_id}" if self.api_key_id else f"tenant {self.tenant}"


def quotas(key: ApiKey, tenant: Limits | None) -> tuple[Quota, ...]:
    """The limits a request with ``key`` is held to: the key's own and its tenant's
    (``tenant``: the settings' limits of the key's tenant). Empty with none, which costs
    the request nothing more in the store."""
    out = []
    rpm, tpd, cpm = key.requests_per_minute, key.tokens_per_day, key.cost_per_month
    if rpm is not None or tpd is not None or cpm is not None:
        out.append(Quota(f"key:{key.id}", key.tenant, key.id, rpm, tpd, cpm))
    if tenant is not None and tenant != NO_LIMITS:
        out.append(
            Quota(
                f"tenant:{key.tenant}",
                key.tenant,
                None,
                tenant.requests_per_minute,
                tenant.tokens_per_day,
                tenant.cost_per_month,
            )
        )
    return tuple(out)


def day_of(now: float) -> int:
    """The UTC day ``now`` falls in, counted from the epoch."""
    return int(now // DAY)


def month_of(now: float) -> int:
    """The UTC month ``now`` falls in, as year * 12 + month - 1."""
    t = time.gmtime(now)
    return t.tm_year * 12 + t.tm_mon - 1


def month_start(month: int) -> float:
    """When a month (as :func:`month_of` counts) begins."""
    return float(calendar.timegm((month // 12, month % 12 + 1, 1, 0, 0, 0)))


def span(seconds: int) -> str:
    """A wait as people say it: ``12 s``, ``5 min``, ``3 h``, ``9 days``."""
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    if seconds < 2 * DAY:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / DAY)} days"


@dataclass(slots=True)
class Counter:
    """What a key or tenant has used, as stored: its request bucket (``requests`` left as
    of ``requests_at``), its tokens on UTC day ``day`` and its cost in UTC month ``month``."""

    requests: float
    requests_at: float
    day: int
    day_tokens: int
    month: int
    month_cost: float

    @classmethod
    def fresh(cls, now: float, day_tokens: int = 0, month_cost: float = 0.0) -> Counter:
        """A new counter: a full bucket, and what was used so far today and this month."""
        return cls(0.0, 0.0, day_of(now), day_tokens, month_of(now), month_cost)

    def refill(self, rpm: int | None, now: float) -> None:
        """The bucket as of ``now``. Without a limit it is kept empty as of long ago, so
        that a limit set later starts full."""
        if rpm is None:
            self.requests, self.requests_at = 0.0, 0.0
            return
        elapsed = max(0.0, now - self.requests_at)
        self.requests = min(float(rpm), self.requests + rpm * elapsed / 60)
        self.requests_at = max(now, self.requests_at)

    def over(self, q: Quota, now: float) -> LimitExceeded | None:
        """Refill the bucket to ``now``; the refusal if ``q`` allows no request now (naming
        the limit with the longest wait, if several are passed), else None."""
        self.refill(q.requests_per_minute, now)
        waits: list[tuple[float, str, str]] = []
        cpm, tpd, rpm = q.cost_per_month, q.tokens_per_day, q.requests_per_minute
        if cpm is not None and self.month == month_of(now) and self.month_cost >= cpm:
            wait = month_start(self.month + 1) - now
            waits.append((wait, "cost_per_month", f"{cpm:g} in cost per month"))
        if tpd is not None and self.day == day_of(now) and self.day_tokens >= tpd:
            waits.append(((self.day + 1) * DAY - now, "tokens_per_day", f"{tpd} tokens per day"))
        if rpm is not None and self.requests < 1:
            wait = (1 - self.requests) * 60 / rpm
            waits.append((wait, "requests_per_minute", f"{rpm} requests per minute"))
        if not waits:
            return None
        wait, limit, what = max(waits)
        retry = max(1, math.ceil(wait))
        return LimitExceeded(
            f"{q.who} is over its limit of {what}; try again in {span(retry)}",
            limit=limit,
            retry_after=retry,
        )

    def used(self, rpm: int | None, now: float) -> tuple[int | None, int, float]:
        """What is used as of ``now`` (the counter unchanged): requests of the last minute's
        bucket (None without ``rpm``), tokens today and cost this month."""
        bucket = replace(self)
        bucket.refill(rpm, now)
        requests = None if rpm is None else max(0, math.ceil(rpm - bucket.requests - 1e-9))
        tokens = self.day_tokens if self.day == day_of(now) else 0
        cost = self.month_cost if self.month == month_of(now) else 0.0
        return requests, tokens, cost

    def take(self, q: Quota) -> None:
        """One request accepted."""
        if q.requests_per_minute is not None:
            self.requests -= 1

    def charge(self, tokens: int, cost: float, now: float) -> None:
        """An attempt's usage, counted in the day and month it ended in (as the store's
        ``usage.CHARGE`` counts it)."""
        day, month = day_of(now), month_of(now)
        self.day_tokens = self.day_tokens + tokens if self.day >= day else tokens
        self.day = max(self.day, day)
        self.month_cost = self.month_cost + cost if self.month >= month else cost
        self.month = max(self.month, month)
