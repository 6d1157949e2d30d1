"""Pure scheduling decisions: retry and backoff, priority shares, fairness, instance choice,
instance health. No I/O and no clock reads: callers pass ``now`` and a random source, so every
function here is tested without an event loop.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from taskgate.config import HealthPolicy, PollPolicy, RetryPolicy
from taskgate.errors import ProviderError, ProviderTimeout
from taskgate.models import Priority, Status

# --- retry -------------------------------------------------------------------------------


def backoff(
    attempt: int, policy: RetryPolicy, rng: random.Random, retry_after: float | None = None
) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential, capped, with jitter.

    A provider's ``Retry-After`` is a floor: we never come back sooner than it asked.
    """
    return _exponential(
        attempt, policy.backoff_base, policy.backoff_max, policy.jitter, rng, retry_after
    )


def poll_delay(
    polls: int, policy: PollPolicy, rng: random.Random, retry_after: float | None = None
) -> float:
    """Seconds before the next poll of a backend's job, after ``polls`` polls: from
    ``interval`` doubling up to ``max_interval``, with jitter; the backend's hint a floor."""
    return _exponential(
        polls + 1, policy.interval, policy.max_interval, policy.jitter, rng, retry_after
    )


# The longest wait a backend's hint (Retry-After) can impose: a longer one, or one that is
# not a finite number, is read as this (a task must never be put off for good).
MAX_HINT = 3600.0


def _exponential(
    n: int, base: float, cap: float, jitter: float, rng: random.Random, floor: float | None
) -> float:
    delay = min(cap, base * 2 ** max(0, n - 1)) * (1 - jitter * rng.random())
    if floor is None or math.isnan(floor):
        return delay
    return max(delay, min(floor, MAX_HINT))


class Action(enum.Enum):
    RETRY = "retry"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    status: Status | None = None  # the terminal status when action is FAIL
    delay: float = 0.0
    route: str | None = None  # a fallback route to move to, when retrying there


def decide(
    error: ProviderError,
    *,
    attempts: int,
    max_attempts: int,
    route: str,
    fallbacks: Sequence[str],
    tried_routes: Iterable[str],
    policy: RetryPolicy,
    rng: random.Random,
    deadline_left: float | None = None,
) -> Decision:
    """What to do after attempt number ``attempts`` failed with ``error``.

    Permanent errors fail at once. Retryable ones are retried with backoff while attempts
    remain; once the route's attempts are spent, an untried fallback route gets a fresh try.
    A run timeout that is not retried ends the task as TIMEOUT rather than FAILED.
    """
    final = Status.TIMEOUT if isinstance(error, ProviderTimeout) else Status.FAILED
    if not error.retryable:
        return Decision(Action.FAIL, Status.FAILED)
    tried = set(tried_routes) | {route}
    if attempts < max_attempts:
        delay = backoff(attempts, policy, rng, error.retry_after)
        if deadline_left is not None and delay > deadline_left:
            return Decision(Action.FAIL, final)
        return Decision(Action.RETRY, delay=delay)
    for fb in fallbacks:
        if fb not in tried:
            return Decision(Action.RETRY, delay=0.0, route=fb)
    return Decision(Action.FAIL, final)


# --- priorities ----------------------------------------------------------------------------


class SmoothWeightedRoundRobin:
    """Nginx's smooth weighted round-robin over priorities, skipping empty ones.

    With weights 6:3:1 and all lanes busy, out of every ten picks six are critical, three
    default and one low, spread out rather than in runs. State carries across calls, so the
    shares hold even when the scheduler has one free slot at a time.
    """

    def __init__(self, weights: Mapping[Priority, int]) -> None:
        self.weights = dict(weights)
        self.current = {p: 0 for p in self.weights}

    def pick(self, candidates: Iterable[Priority]) -> Priority | None:
        live = [p for p in candidates if p in self.weights]
        if not live:
            return None
        total = sum(self.weights[p] for p in live)
        for p in live:
            self.current[p] += self.weights[p]
        best = max(live, key=lambda p: (self.current[p], -p))
        self.current[best] -= total
        return best

    def plan(self, slots: int, candidates: Iterable[Priority]) -> dict[Priority, int]:
        """How many of ``slots`` each non-empty priority gets.

        Whole rounds of the weights are shared out at once; only the remainder is picked one
        by one, so a plan costs at most one round of picks however many slots are free.
        """
        live = [p for p in candidates if p in self.weights]
        total = sum(self.weights[p] for p in live)
        rounds = slots // total if total else 0
        out: dict[Priority, int] = {p: rounds * self.weights[p] for p in live if rounds}
        for _ in range(slots - rounds * total):
            p = self.pick(live)
            if p is None:
                break
            out[p] = out.get(p, 0) + 1
        return out


def strict_plan(slots: int, candidates: Iterable[Priority]) -> dict[Priority, int]:
    """Strict priorities: every slot to the most urgent non-empty lane first."""
    live = sorted(candidates)
    return {live[0]: slots} if live and slots > 0 else {}


# --- fairness -------------------------------------------------------------------------------


def fair_seq(lane_front: int | None, key_last: int | None) -> int:
    """Position of a new task within its lane (route + priority), for fairness across keys.

    Tasks are claimed in ``fair_seq`` order. Each key's tasks are numbered one after another,
    but a key never starts behind the lane's front: a key with one task queued behind another
    key's 10,000 gets the front's number and is served next, while a key's own backlog only
    competes with itself. This is start-time fair queueing with the lane's front as virtual time.
    """
    front = lane_front or 0
    return front if key_last is None else max(front, key_last + 1)


# --- backend instances ----------------------------------------------------------------------


@dataclass(slots=True)
class InstanceState:
    """What the scheduler knows of one backend instance: load and health."""

    name: str
    capacity: int
    weight: float = 1.0
    in_flight: int = 0  # this worker's calls
    # in a claim's plan only (scheduling/dispatch.LaneClaim): other workers' calls as the store
    # counted them, and the calls the instance's rate limits allow now
    elsewhere: int = 0
    allowed: int | None = None
    consecutive_failures: int = 0
    cooled_until: float = 0.0
    probing: bool = False
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def tripped(self) -> bool:
        return self.cooled_until > 0

    def healthy(self, now: float) -> bool:
        return not self.tripped or (now >= self.cooled_until and not self.probing)

    def free(self) -> int:
        free = max(0, self.capacity - self.in_flight - self.elsewhere)
        return free if self.allowed is None else min(free, self.allowed)

    def usable(self, now: float) -> bool:
        return self.free() > 0 and self.healthy(now)


def state_of(inst: InstanceState, now: float) -> str:
    """``healthy``, ``cooling_down`` (failed too often: no calls until ``cooled_until``) or
    ``probing`` (cooled down: one call at a time tries it)."""
    if not inst.tripped:
        return "healthy"
    return "cooling_down" if now < inst.cooled_until else "probing"


def choose_instance(
    instances: Sequence[InstanceState], now: float, avoid: Iterable[str] = ()
) -> InstanceState | None:
    """Least in-flight per weight among healthy instances with a free slot.

    ``avoid`` (the instances this task already failed on) is honoured when another choice exists.
    """
    usable = [i for i in instances if i.usable(now)]
    if not usable:
        return None
    avoid = set(avoid)
    preferred = [i for i in usable if i.name not in avoid] or usable
    return min(preferred, key=lambda i: ((i.in_flight + i.elsewhere + 1) / i.weight, -i.weight))


def assign_instances(
    instances: Sequence[InstanceState],
    now: float,
    avoids: Sequence[Iterable[str] | None],
    pins: Sequence[str | None] = (),
) -> list[str | None]:
    """An instance for each of a claim's tasks in turn (``choose_instance``, each choice
    taking its slot), on copies: the states change only once the claim is written. ``None``
    in ``avoids`` marks a task that needs no slot (it resumes a backend job) and gets none.
    A name in ``pins`` is the only instance that task may run on: it gets that one, and
    before the others choose, so that they leave it the slot its claim counted on."""
    trial = [dataclasses.replace(i) for i in instances]
    by_name = {i.name: i for i in trial}
    pins = list(pins) or [None] * len(avoids)
    out: list[str | None] = [None] * len(avoids)
    for n, (avoid, pin) in enumerate(zip(avoids, pins, strict=True)):
        if avoid is not None and pin is not None:
            if (inst := by_name.get(pin)) is not None:
                start_call(inst, now)
            out[n] = pin
    for n, (avoid, pin) in enumerate(zip(avoids, pins, strict=True)):
        if avoid is None or pin is not None:
            continue
        inst = choose_instance(trial, now, avoid)
        if inst is not None:
            start_call(inst, now)
            out[n] = inst.name
    return out


def room(inst: InstanceState, now: float) -> int:
    """The calls a claim may start now on one instance: none while it cools down, then one
    probe, else its free slots."""
    if not inst.healthy(now):
        return 0
    return min(1, inst.free()) if inst.tripped else inst.free()


def free_slots(instances: Sequence[InstanceState], now: float) -> int:
    """Calls the scheduler may start now on any of ``instances``."""
    return sum(room(i, now) for i in instances)


def record_success(inst: InstanceState) -> None:
    inst.consecutive_failures = 0
    inst.cooled_until = 0.0
    inst.probing = False


def record_failure(inst: InstanceState, policy: HealthPolicy, now: float) -> None:
    """Count a failure; past the threshold the instance cools down, then one probe may run."""
    inst.probing = False
    inst.consecutive_failures += 1
    if inst.consecutive_failures >= policy.failure_threshold:
        inst.cooled_until = now + policy.cooldown


def abort_call(inst: InstanceState) -> None:
    """A call ended without an answer (cancelled): free its slot. If it was the probe of a
    cooled-down instance it proved nothing, so another probe may run."""
    inst.in_flight -= 1
    inst.probing = False


def start_call(inst: InstanceState, now: float) -> None:
    """Take a slot; a call on a cooled-down instance is its probe, and only one runs at a time."""
    inst.in_flight += 1
    if inst.allowed is not None:
        inst.allowed -= 1
    if inst.tripped and now >= inst.cooled_until:
        inst.probing = True


# --- rate limits --------------------------------------------------------------------------


@dataclass(slots=True)
class Bucket:
    """A backend's rate limits as two token buckets shared by every worker (kept in the
    store): requests and tokens, each holding at most a minute's worth and refilling at
    the per-minute rate. A call takes one request when it is claimed; its tokens are taken
    when it ends and its usage is known, so the token bucket may go below zero, and no call
    starts until it has refilled above it."""

    requests: float
    tokens: float
    updated_at: float

    @classmethod
    def full(cls, rpm: int | None, tpm: int | None, now: float) -> Bucket:
        return cls(float(rpm or 0), float(tpm or 0), now)

    def refill(self, rpm: int | None, tpm: int | None, now: float) -> None:
        elapsed = max(0.0, now - self.updated_at)
        if rpm is not None:
            self.requests = min(float(rpm), self.requests + rpm * elapsed / 60)
        if tpm is not None:
            self.tokens = min(float(tpm), self.tokens + tpm * elapsed / 60)
        self.updated_at = now

    def allowed(self, rpm: int | None, tpm: int | None) -> int | None:
        """Calls that may start now (None: no limit)."""
        if tpm is not None and self.tokens <= 0:
            return 0
        return None if rpm is None else int(self.requests)


def tokens_used(usage: Mapping[str, object]) -> int:
    """Tokens a call used, from its usage (OpenAI's names, or input + output)."""
    total = usage.get("total_tokens")
    if isinstance(total, int):
        return total
    parts = [
        usage.get(k)
        for k in ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens")
    ]
    return sum(p for p in parts if isinstance(p, int))
