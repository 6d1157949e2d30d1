"""Pure scheduling policy: backoff, retry decisions, priority shares, fairness, instances."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from taskgate import errors
from taskgate.config import HealthPolicy, PollPolicy, RetryPolicy
from taskgate.models import Priority, Status
from taskgate.policy import (
    MAX_HINT,
    Action,
    InstanceState,
    SmoothWeightedRoundRobin,
    abort_call,
    backoff,
    choose_instance,
    decide,
    fair_seq,
    free_slots,
    poll_delay,
    record_failure,
    record_success,
    start_call,
    strict_plan,
)

C, D, L = Priority.CRITICAL, Priority.DEFAULT, Priority.LOW
ALL = (C, D, L)
WEIGHTS = {C: 6, D: 3, L: 1}
NO_JITTER = RetryPolicy(backoff_base=1.0, backoff_max=60.0, jitter=0.0)


class FixedRandom(random.Random):
    """A random source whose ``random()`` always returns ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


# --- backoff -------------------------------------------------------------------------------


def test_backoff_grows_exponentially() -> None:
    delays = [backoff(a, NO_JITTER, random.Random(0)) for a in range(1, 6)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0]


def test_backoff_is_capped_at_backoff_max() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_max=10.0, jitter=0.0)
    assert backoff(4, policy, random.Random(0)) == 8.0
    assert backoff(5, policy, random.Random(0)) == 10.0
    assert backoff(50, policy, random.Random(0)) == 10.0


@pytest.mark.parametrize("attempt", [1, 3, 7])
def test_backoff_jitter_stays_within_bounds(attempt: int) -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_max=60.0, jitter=0.25)
    full = min(60.0, 2.0 ** (attempt - 1))
    rng = random.Random(42)
    delays = [backoff(attempt, policy, rng) for _ in range(500)]
    assert all(full * 0.75 <= d <= full for d in delays)
    assert len(set(delays)) > 100  # jitter actually varies the delay
    assert backoff(attempt, policy, FixedRandom(0.0)) == full
    assert backoff(attempt, policy, FixedRandom(0.999999)) == pytest.approx(full * 0.75, rel=1e-5)


def test_polls_back_off_from_the_interval_up_to_the_cap_honouring_the_hint() -> None:
    conf = PollPolicy(interval=2.0, max_interval=30.0, jitter=0.0)
    rng = random.Random(0)
    assert [poll_delay(n, conf, rng) for n in range(6)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert poll_delay(0, conf, rng, retry_after=10.0) == 10.0  # the backend asked for later
    assert poll_delay(5, conf, rng, retry_after=0.0) == 30.0  # a hint never shortens it
    jittered = PollPolicy(interval=2.0, max_interval=30.0, jitter=0.5)
    assert poll_delay(1, jittered, FixedRandom(0.999999)) == pytest.approx(2.0, rel=1e-5)


@pytest.mark.parametrize("hint", [1e20, float("inf")])
def test_a_backends_hint_cannot_put_a_task_off_for_good(hint: float) -> None:
    assert backoff(1, NO_JITTER, random.Random(0), retry_after=hint) == MAX_HINT
    assert backoff(1, NO_JITTER, random.Random(0), retry_after=float("nan")) == 1.0  # ignored


def test_retry_after_is_a_floor_not_a_ceiling() -> None:
    assert backoff(1, NO_JITTER, random.Random(0), retry_after=30.0) == 30.0
    assert backoff(5, NO_JITTER, random.Random(0), retry_after=3.0) == 16.0
    # the floor even beats the cap: never come back sooner than the provider asked
    capped = RetryPolicy(backoff_base=1.0, backoff_max=5.0, jitter=0.0)
    assert backoff(9, capped, random.Random(0), retry_after=120.0) == 120.0


# --- decide --------------------------------------------------------------------------------


def run_decide(error: errors.ProviderError, **overrides: object):
    kwargs: dict[str, object] = {
        "attempts": 1,
        "max_attempts": 3,
        "route": "main",
        "fallbacks": (),
        "tried_routes": (),
        "policy": NO_JITTER,
        "rng": random.Random(0),
    }
    kwargs.update(overrides)
    return decide(error, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error", [errors.InvalidInput("bad"), errors.AuthFailed("key"), errors.ContentRefused("no")]
)
def test_permanent_errors_fail_at_once(error: errors.ProviderError) -> None:
    d = run_decide(error, attempts=1, max_attempts=5, fallbacks=["backup"])
    assert d.action is Action.FAIL
    assert d.status is Status.FAILED
    assert d.route is None


def test_retryable_error_is_retried_with_backoff_while_attempts_remain() -> None:
    d = run_decide(errors.Overloaded("busy"), attempts=2, max_attempts=3)
    assert d.action is Action.RETRY
    assert d.delay == 2.0
    assert d.route is None
    assert d.status is None


def test_retry_delay_honours_retry_after() -> None:
    d = run_decide(errors.RateLimited("slow down", retry_after=17.0), attempts=1)
    assert (d.action, d.delay) == (Action.RETRY, 17.0)


def test_spent_attempts_move_to_an_untried_fallback() -> None:
    d = run_decide(errors.Overloaded("busy"), attempts=3, max_attempts=3, fallbacks=["b", "c"])
    assert d.action is Action.RETRY
    assert d.route == "b"
    assert d.delay == 0.0


def test_already_tried_fallbacks_are_skipped() -> None:
    d = run_decide(
        errors.Overloaded("busy"),
        attempts=3,
        max_attempts=3,
        route="b",
        fallbacks=["main", "b", "c"],
        tried_routes=["main"],
    )
    assert (d.action, d.route) == (Action.RETRY, "c")


def test_no_untried_fallback_left_fails() -> None:
    d = run_decide(
        errors.Overloaded("busy"),
        attempts=3,
        max_attempts=3,
        fallbacks=["b"],
        tried_routes=["b"],
    )
    assert (d.action, d.status) == (Action.FAIL, Status.FAILED)


def test_exhausted_timeout_ends_as_timeout() -> None:
    d = run_decide(errors.ProviderTimeout("too slow"), attempts=3, max_attempts=3)
    assert (d.action, d.status) == (Action.FAIL, Status.TIMEOUT)


def test_exhausted_other_retryable_ends_as_failed() -> None:
    d = run_decide(errors.ConnectionFailed("down"), attempts=3, max_attempts=3)
    assert (d.action, d.status) == (Action.FAIL, Status.FAILED)


def test_delay_past_the_deadline_fails_instead_of_retrying() -> None:
    d = run_decide(errors.Overloaded("busy"), attempts=2, deadline_left=1.5)
    assert (d.action, d.status) == (Action.FAIL, Status.FAILED)
    d = run_decide(errors.ProviderTimeout("slow"), attempts=2, deadline_left=1.5)
    assert (d.action, d.status) == (Action.FAIL, Status.TIMEOUT)
    d = run_decide(errors.Overloaded("busy"), attempts=2, deadline_left=2.5)
    assert (d.action, d.delay) == (Action.RETRY, 2.0)


# --- priorities ------------------------------------------------------------------------------


def picks(wrr: SmoothWeightedRoundRobin, n: int, candidates=ALL) -> list[Priority]:
    return [wrr.pick(candidates) for _ in range(n)]  # type: ignore[misc]


def longest_run(seq: list[Priority]) -> int:
    return max(len(list(group)) for _, group in itertools.groupby(seq))


def test_wrr_shares_are_exact_when_all_lanes_are_live() -> None:
    plan = SmoothWeightedRoundRobin(WEIGHTS).plan(100, ALL)
    assert plan == {C: 60, D: 30, L: 10}


def test_wrr_shares_hold_one_slot_at_a_time() -> None:
    wrr = SmoothWeightedRoundRobin(WEIGHTS)
    total: Counter[Priority] = Counter()
    for _ in range(100):
        plan = wrr.plan(1, ALL)
        assert sum(plan.values()) == 1
        total.update(plan)
    assert total == {C: 60, D: 30, L: 10}


def test_wrr_skips_empty_lanes() -> None:
    wrr = SmoothWeightedRoundRobin(WEIGHTS)
    assert wrr.plan(100, [D, L]) == {D: 75, L: 25}
    assert wrr.plan(5, [L]) == {L: 5}
    assert wrr.plan(5, []) == {}
    assert wrr.pick([]) is None


def test_wrr_spreads_picks_instead_of_runs() -> None:
    seq = picks(SmoothWeightedRoundRobin(WEIGHTS), 100)
    assert longest_run(seq) <= 3
    # low gets its one pick in every window of ten
    assert all(L in seq[i : i + 10] for i in range(0, 100, 10))


def test_wrr_ties_go_to_the_more_urgent_lane() -> None:
    wrr = SmoothWeightedRoundRobin({C: 1, D: 1, L: 1})
    assert picks(wrr, 6) == [C, D, L, C, D, L]


def test_wrr_returning_lane_gets_no_burst() -> None:
    wrr = SmoothWeightedRoundRobin(WEIGHTS)
    picks(wrr, 37, candidates=(D, L))
    seq = picks(wrr, 100)
    assert longest_run(seq) <= 3
    assert Counter(seq[-90:]) == {C: 54, D: 27, L: 9}


def test_strict_plan_gives_everything_to_the_most_urgent_lane() -> None:
    assert strict_plan(7, [L, D]) == {D: 7}
    assert strict_plan(3, [L, C, D]) == {C: 3}
    assert strict_plan(3, []) == {}
    assert strict_plan(0, [C]) == {}


# --- fairness --------------------------------------------------------------------------------


def test_fair_seq_new_key_joins_at_the_lane_front() -> None:
    assert fair_seq(lane_front=500, key_last=None) == 500
    assert fair_seq(lane_front=None, key_last=None) == 0


def test_fair_seq_backlog_continues_from_the_key_last() -> None:
    assert fair_seq(lane_front=10, key_last=40) == 41
    # a key whose backlog is all behind the front restarts at the front
    assert fair_seq(lane_front=10, key_last=3) == 10


def test_fair_seq_of_an_empty_lane_is_zero() -> None:
    assert fair_seq(None, None) == 0


class Lane:
    """The store's numbering and claim order, in memory: pending tasks ordered by
    (fair_seq, insertion order), which is what ``ORDER BY fair_seq, id`` gives."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, int, str]] = []  # (fair_seq, arrival, key)
        self.arrivals = itertools.count()

    def submit(self, key: str) -> None:
        front = min((s for s, _, _ in self.pending), default=None)
        last = max((s for s, _, k in self.pending if k == key), default=None)
        self.pending.append((fair_seq(front, last), next(self.arrivals), key))

    def claim(self) -> str:
        self.pending.sort()
        return self.pending.pop(0)[2]


@pytest.mark.parametrize("claimed_before", [0, 1, 500])
def test_a_lone_task_is_not_stuck_behind_another_keys_backlog(claimed_before: int) -> None:
    lane = Lane()
    for _ in range(1000):
        lane.submit("A")
    for _ in range(claimed_before):
        assert lane.claim() == "A"
    lane.submit("B")
    assert "B" in [lane.claim(), lane.claim()]


def test_two_busy_keys_alternate() -> None:
    lane = Lane()
    for _ in range(100):
        lane.submit("A")
    for _ in range(100):
        lane.submit("B")
    first = [lane.claim() for _ in range(20)]
    assert Counter(first) == {"A": 10, "B": 10}


# --- instances -------------------------------------------------------------------------------

NOW = 1000.0
HEALTH = HealthPolicy(failure_threshold=3, cooldown=10.0)


def inst(name: str, capacity: int = 4, **kw: object) -> InstanceState:
    return InstanceState(name=name, capacity=capacity, **kw)  # type: ignore[arg-type]


def trip(i: InstanceState, now: float = NOW) -> None:
    for _ in range(HEALTH.failure_threshold):
        record_failure(i, HEALTH, now)


def test_choose_least_in_flight() -> None:
    chosen = choose_instance([inst("a", in_flight=3), inst("b", in_flight=1)], NOW)
    assert chosen is not None and chosen.name == "b"


def test_choose_counts_load_per_weight() -> None:
    a, b = inst("a", in_flight=2), inst("b", in_flight=3, weight=2.0)
    assert choose_instance([a, b], NOW) is b  # (2+1)/1 = 3 > (3+1)/2 = 2


def test_choose_breaks_ties_towards_the_heavier_instance() -> None:
    light, heavy = inst("light"), inst("heavy", in_flight=1, weight=2.0)
    assert choose_instance([light, heavy], NOW) is heavy  # (0+1)/1 == (1+1)/2


def test_choose_spreads_by_weight() -> None:
    pool = [inst("a", capacity=100), inst("b", capacity=100, weight=3.0)]
    counts: Counter[str] = Counter()
    for _ in range(80):
        chosen = choose_instance(pool, NOW)
        assert chosen is not None
        start_call(chosen, NOW)
        counts[chosen.name] += 1
    assert counts == {"a": 20, "b": 60}


def test_avoid_is_honoured_when_another_choice_exists() -> None:
    a, b = inst("a"), inst("b", in_flight=3)
    assert choose_instance([a, b], NOW, avoid=["a"]) is b
    assert choose_instance([a, b], NOW, avoid=["a", "b"]) is a  # nothing else: use one anyway
    b.in_flight = b.capacity
    assert choose_instance([a, b], NOW, avoid=["a"]) is a  # the other one is full


def test_unhealthy_and_full_instances_are_excluded() -> None:
    sick, full, ok = inst("sick"), inst("full", in_flight=4), inst("ok", in_flight=3)
    trip(sick)
    assert choose_instance([sick, full, ok], NOW + 1) is ok


def test_choose_returns_none_when_nothing_is_usable() -> None:
    sick, full = inst("sick"), inst("full", in_flight=4)
    trip(sick)
    assert choose_instance([sick, full], NOW + 1) is None
    assert choose_instance([], NOW) is None


def test_instance_trips_after_threshold_consecutive_failures() -> None:
    i = inst("a")
    for _ in range(HEALTH.failure_threshold - 1):
        record_failure(i, HEALTH, NOW)
    assert i.healthy(NOW) and not i.tripped
    record_failure(i, HEALTH, NOW)
    assert i.tripped
    assert not i.healthy(NOW + HEALTH.cooldown - 0.01)
    assert free_slots([i], NOW + 1) == 0


def test_success_between_failures_resets_the_count() -> None:
    i = inst("a")
    for _ in range(5):
        record_failure(i, HEALTH, NOW)
        record_failure(i, HEALTH, NOW)
        record_success(i)
    assert not i.tripped and i.consecutive_failures == 0


def test_after_cooldown_exactly_one_probe_runs() -> None:
    i = inst("a", capacity=8)
    trip(i)
    later = NOW + HEALTH.cooldown
    assert free_slots([i], later) == 1
    assert choose_instance([i], later) is i
    start_call(i, later)
    assert i.probing
    assert free_slots([i], later) == 0
    assert choose_instance([i], later) is None


def test_failed_probe_cools_down_again() -> None:
    i = inst("a")
    trip(i)
    later = NOW + HEALTH.cooldown
    start_call(i, later)
    i.in_flight -= 1
    record_failure(i, HEALTH, later)
    assert not i.probing
    assert free_slots([i], later + 1) == 0
    assert free_slots([i], later + HEALTH.cooldown) == 1


def test_successful_probe_restores_full_capacity() -> None:
    i = inst("a", capacity=8)
    trip(i)
    later = NOW + HEALTH.cooldown
    start_call(i, later)
    i.in_flight -= 1
    record_success(i)
    assert not i.tripped and not i.probing
    assert free_slots([i], later) == 8


def test_free_slots_sums_healthy_free_capacity() -> None:
    sick = inst("sick", capacity=5)
    trip(sick)
    pool = [inst("a", capacity=4, in_flight=1), inst("b", capacity=2, in_flight=5), sick]
    assert free_slots(pool, NOW + 1) == 3
    assert free_slots(pool, NOW + HEALTH.cooldown) == 4  # plus one probe slot
    assert free_slots([], NOW) == 0


def test_a_cancelled_probe_lets_another_probe_run() -> None:
    health = HealthPolicy(failure_threshold=1, cooldown=5)
    inst = InstanceState("a", capacity=4)
    record_failure(inst, health, now=0)
    start_call(inst, now=10)  # the probe
    assert inst.probing and free_slots([inst], now=10) == 0
    abort_call(inst)
    assert inst.in_flight == 0 and not inst.probing
    assert free_slots([inst], now=10) == 1  # the next call probes again


def test_a_rate_bucket_starts_full_refills_by_the_minute_and_caps() -> None:
    from taskgate.policy import Bucket

    b = Bucket.full(60, None, NOW)
    assert b.allowed(60, None) == 60
    b.requests -= 60
    b.refill(60, None, NOW + 10)
    assert b.allowed(60, None) == 10  # one a second
    b.refill(60, None, NOW + 1000)
    assert b.requests == 60  # never more than a minute's worth


def test_a_spent_token_bucket_allows_nothing_until_it_refills_above_zero() -> None:
    from taskgate.policy import Bucket

    b = Bucket.full(None, 600, NOW)
    assert b.allowed(None, 600) is None  # tokens left, and no request limit
    b.tokens -= 700  # a call used more than was left
    assert b.allowed(None, 600) == 0
    b.refill(None, 600, NOW + 10)  # +100: back to zero, still nothing
    assert b.allowed(None, 600) == 0
    b.refill(None, 600, NOW + 11)
    assert b.allowed(None, 600) is None


def test_tokens_used_reads_either_naming() -> None:
    from taskgate.policy import tokens_used

    assert tokens_used({"total_tokens": 7, "prompt_tokens": 3}) == 7
    assert tokens_used({"input_tokens": 3, "output_tokens": 4}) == 7
    assert tokens_used({}) == 0
