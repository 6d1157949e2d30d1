"""Usage, cost and limits as pure arithmetic: prices of a call, the limits a key is held to,
and the counters' buckets, days and months."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from taskgate import config
from taskgate.budgets import DAY, Counter, Quota, day_of, month_of, month_start, quotas, span
from taskgate.config import Limits, Price
from taskgate.errors import LimitExceeded
from taskgate.models import ApiKey
from taskgate.pricing import Usage, cost, price_for, usage_of

GPT = Price(models=["gpt-4o*"], input_per_million=2.5, output_per_million=10)
IMAGES = Price(models=["dall-e-3", "gpt-image-*"], per_image=0.04, per_request=0.001)
WHISPER = Price(models=["whisper-1"], per_second=0.0001)
ANY = Price(models=["*"], per_request=0.5)
PRICES = [GPT, IMAGES, WHISPER, ANY]

# 2026-03-14 15:00:00 UTC
NOW = float(calendar.timegm((2026, 3, 14, 15, 0, 0)))


# --- pricing -----------------------------------------------------------------------------


def test_the_first_price_whose_models_match_is_the_price() -> None:
    assert price_for(PRICES, "gpt-4o-mini") is GPT
    assert price_for(PRICES, "gpt-image-1") is IMAGES
    assert price_for(PRICES, "llama-3") is ANY
    assert price_for(PRICES[:3], "llama-3") is None
    assert price_for([ANY, GPT], "gpt-4o") is ANY  # order decides, not how exact a glob is


def test_usage_counts_tokens_by_either_name_and_images_and_seconds() -> None:
    assert usage_of({"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}) == Usage(3, 5)
    assert usage_of({"input_tokens": 2, "output_tokens": 7}).tokens == 9
    assert usage_of({"images": 2, "input_tokens": 10}) == Usage(10, 0, 2)
    assert usage_of({"seconds": 12.5}) == Usage(seconds=12.5)
    assert usage_of(None) == usage_of({}) == Usage()


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": True, "images": False},
        {"input_tokens": -4, "seconds": -1},
        {"input_tokens": "12", "images": [1]},
        {"seconds": float("nan")},
        {"seconds": float("inf")},
    ],
)
def test_counts_that_are_not_counts_are_nothing(usage: dict[str, object]) -> None:
    assert usage_of(usage) == Usage()


def test_a_call_costs_its_tokens_images_seconds_and_request_at_its_price() -> None:
    tokens = Usage(input_tokens=1_000_000, output_tokens=500_000)
    assert cost(PRICES, "gpt-4o", tokens) == pytest.approx(2.5 + 5.0)
    assert cost(PRICES, "dall-e-3", Usage(images=3)) == pytest.approx(0.121)
    assert cost(PRICES, "whisper-1", Usage(seconds=60)) == pytest.approx(0.006)
    assert cost(PRICES, "llama-3", tokens) == 0.5  # a price per request only
    assert cost([], "gpt-4o", tokens) == 0.0


def test_prices_and_limits_are_read_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "taskgate.yaml"
    raw = {
        "prices": [{"models": ["gpt-4o*"], "input_per_million": 2.5}],
        "limits": {"tenants": {"acme": {"requests_per_minute": 60, "cost_per_month": 100}}},
    }
    path.write_text(yaml.safe_dump(raw))
    s = config.load(path, env={})
    assert s.prices == [Price(models=["gpt-4o*"], input_per_million=2.5)]
    assert s.limits.tenants["acme"] == Limits(requests_per_minute=60, cost_per_month=100)


@pytest.mark.parametrize(
    "raw",
    [
        {"prices": [{"models": []}]},
        {"prices": [{"models": ["m"], "per_image": -1}]},
        {"prices": [{"models": ["m"], "per_token": 1}]},
        {"limits": {"tenants": {"acme": {"requests_per_minute": 0}}}},
        {"limits": {"tenants": {"acme": {"cost_per_month": 0}}}},
        {"limits": {"keys": {}}},
    ],
)
def test_bad_prices_and_limits_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        config.Settings.model_validate(raw)


# --- which limits apply ------------------------------------------------------------------


def key(**limits: float) -> ApiKey:
    return ApiKey("key_1", "acme", "", False, 0.0, **limits)  # type: ignore[arg-type]


def test_a_key_without_limits_in_a_tenant_without_is_held_to_nothing() -> None:
    assert quotas(key(), None) == ()
    assert quotas(key(), Limits()) == ()


def test_a_key_is_held_to_its_own_limits_and_its_tenants() -> None:
    own, tenant = quotas(key(requests_per_minute=5), Limits(tokens_per_day=1000))
    assert own == Quota("key:key_1", "acme", "key_1", requests_per_minute=5)
    assert tenant == Quota("tenant:acme", "acme", None, tokens_per_day=1000)
    assert (own.who, tenant.who) == ("key key_1", "tenant acme")


# --- calendars ---------------------------------------------------------------------------


def test_days_and_months_are_utc() -> None:
    assert day_of(NOW) * DAY == calendar.timegm((2026, 3, 14, 0, 0, 0))
    assert month_start(month_of(NOW)) == calendar.timegm((2026, 3, 1, 0, 0, 0))
    december = month_of(calendar.timegm((2026, 12, 31, 23, 59, 59)))
    assert month_start(december + 1) == calendar.timegm((2027, 1, 1, 0, 0, 0))


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (1, "1 s"),
        (119, "119 s"),
        (150, "2 min"),
        (7199, "120 min"),
        (7200, "2 h"),
        (5 * DAY, "5 days"),
    ],
)
def test_waits_are_said_in_their_unit(seconds: int, said: str) -> None:
    assert span(seconds) == said


# --- requests per minute -----------------------------------------------------------------

RPM = Quota("key:key_1", "acme", "key_1", requests_per_minute=60)


def take_all(c: Counter, q: Quota, now: float, n: int) -> list[LimitExceeded | None]:
    out = []
    for _ in range(n):
        refusal = c.over(q, now)
        if refusal is None:
            c.take(q)
        out.append(refusal)
    return out


def test_a_new_bucket_holds_a_minutes_worth_then_refuses() -> None:
    c = Counter.fresh(NOW)
    assert take_all(c, RPM, NOW, 60) == [None] * 60
    refusal = c.over(RPM, NOW)
    assert isinstance(refusal, LimitExceeded)
    assert refusal.status_code == 429 and refusal.retry_after == 1
    assert refusal.headers == {"Retry-After": "1"}
    assert refusal.message == (
        "key key_1 is over its limit of 60 requests per minute; try again in 1 s"
    )
    assert refusal.as_dict()["limit"] == "requests_per_minute"


def test_the_bucket_refills_at_the_rate_and_retry_after_says_when() -> None:
    q = Quota("tenant:acme", "acme", None, requests_per_minute=5)  # one each 12 s
    c = Counter.fresh(NOW)
    take_all(c, q, NOW, 5)
    refusal = c.over(q, NOW + 3)
    assert refusal is not None and refusal.retry_after == 9
    assert "tenant acme is over its limit of 5 requests per minute" in refusal.message
    assert c.over(q, NOW + 12) is None
    c.take(q)
    assert c.over(q, NOW + 12) is not None
    assert c.over(q, NOW + 10_000) is None and c.requests == 5  # never more than a minute's


def test_a_limit_set_later_starts_full_and_a_lower_one_caps_the_bucket() -> None:
    c = Counter.fresh(NOW)
    take_all(c, Quota("k", "acme", "k", tokens_per_day=10), NOW, 3)  # no request limit yet
    assert take_all(c, RPM, NOW + 1, 60) == [None] * 60
    c = Counter.fresh(NOW)
    take_all(c, RPM, NOW, 10)  # 50 left
    lower = Quota("key:key_1", "acme", "key_1", requests_per_minute=2)
    assert [r is None for r in take_all(c, lower, NOW, 3)] == [True, True, False]


# --- tokens per day and cost per month ---------------------------------------------------


def test_tokens_over_the_day_are_refused_until_the_next_utc_day() -> None:
    q = Quota("key:key_1", "acme", "key_1", tokens_per_day=1000)
    c = Counter.fresh(NOW, day_tokens=999)
    assert c.over(q, NOW) is None
    c.charge(5, 0.0, NOW)
    refusal = c.over(q, NOW)
    assert refusal is not None and refusal.retry_after == 9 * 3600
    assert refusal.message.endswith("1000 tokens per day; try again in 9 h")
    assert c.over(q, (day_of(NOW) + 1) * DAY) is None


def test_cost_over_the_month_is_refused_until_the_next_utc_month() -> None:
    q = Quota("tenant:acme", "acme", None, cost_per_month=2.5)
    c = Counter.fresh(NOW, month_cost=2.5)
    refusal = c.over(q, NOW)
    next_month = calendar.timegm((2026, 4, 1, 0, 0, 0))
    assert refusal is not None and refusal.retry_after == next_month - NOW
    assert refusal.as_dict()["limit"] == "cost_per_month"
    assert "limit of 2.5 in cost per month; try again in 17 days" in refusal.message
    assert c.over(q, next_month) is None


def test_the_longest_wait_is_named_when_several_limits_are_passed() -> None:
    q = Quota("key:k", "acme", "k", requests_per_minute=1, tokens_per_day=10)
    c = Counter.fresh(NOW, day_tokens=10)
    c.take(q)
    c.requests = 0
    refusal = c.over(q, NOW)
    assert refusal is not None and refusal.as_dict()["limit"] == "tokens_per_day"


def test_a_charge_in_a_new_day_or_month_starts_its_count_again() -> None:
    c = Counter.fresh(NOW, day_tokens=500, month_cost=3.0)
    c.charge(10, 0.5, NOW)
    assert (c.day_tokens, c.month_cost) == (510, 3.5)
    tomorrow = NOW + DAY
    c.charge(7, 0.25, tomorrow)
    assert (c.day, c.day_tokens, c.month_cost) == (day_of(tomorrow), 7, 3.75)
    c.charge(1, 1.0, calendar.timegm((2026, 4, 2, 0, 0, 0)))
    assert (c.day_tokens, c.month_cost) == (1, 1.0)
    c.charge(4, 1.0, NOW)  # a late ending of an earlier day joins the current count
    assert (c.day_tokens, c.month_cost) == (5, 2.0)


def test_what_a_counter_has_used_is_read_as_of_now_without_changing_it() -> None:
    q = Quota("key:k", "acme", "k", requests_per_minute=6)  # one back each 10 s
    c = Counter.fresh(NOW, day_tokens=40, month_cost=1.5)
    take_all(c, q, NOW, 4)
    assert c.used(6, NOW) == (4, 40, 1.5)
    assert c.used(6, NOW + 15) == (3, 40, 1.5)  # 1.5 requests back: 2.5 of 4 still drawn
    assert c.requests == 2 and c.requests_at == NOW  # as stored
    assert c.used(None, NOW) == (None, 40, 1.5)
    assert c.used(6, NOW + 60) == (0, 40, 1.5)
    assert c.used(6, NOW + DAY) == (0, 0, 1.5)  # another day: none of today's tokens yet
    assert c.used(6, calendar.timegm((2026, 4, 1, 0, 0, 0))) == (0, 0, 0.0)
