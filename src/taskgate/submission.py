"""What a client submits (:class:`Submission`, every API's requests translate to one), the
checks a submission passes on its own, and the task row it becomes on its route."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import orjson

from taskgate import params
from taskgate.budgets import Quota
from taskgate.callbacks import Callback
from taskgate.config import Route
from taskgate.errors import BadRequest
from taskgate.models import ApiKey, Priority
from taskgate.ops.tracing import current_trace
from taskgate.providers import lookup, media
from taskgate.routing import Routing
from taskgate.store import NewTask

# The longest durations a client may ask for, in seconds: a run of one attempt, and a wait
# in the queue before the first start.
MAX_RUN_TIMEOUT = 86_400.0
MAX_QUEUE_TIMEOUT = 30 * 86_400.0


@dataclass(frozen=True, slots=True)
class Submission:
    kind: str
    model: str
    input: Any
    params: dict[str, Any]
    priority: Priority = Priority.DEFAULT
    timeout: float | None = None  # run timeout, seconds
    queue_timeout: float | None = None  # longest wait in the queue, seconds
    idempotency_key: str | None = None
    conversation_id: str | None = None  # a chat turn of this conversation (of the tenant)
    webhook_url: str | None = None
    label: str | None = None  # the client's own tag, e.g. the Volcengine AI Server's user_id
    # the only instance of its route the task may run on (an AIFlow client's endpoint on a
    # host the administrator allows); None: any
    pinned_instance: str | None = None
    api: str | None = None  # the API it came through (None: taskgate's own), kept on the task
    callback: Callback | None = None  # how its webhook is sent (AIFlow's callback headers)


def checked_route(routing: Routing, sub: Submission, model: str) -> Route:
    """The route of ``model``, once the submission's params suit its provider and its
    input names media URLs only if the route takes them."""
    route = routing.route_for(sub.kind, model)
    params.check(sub.params, lookup(route.provider).param_bounds)
    check_media_urls(route, sub, model)
    return route


def check_media_urls(route: Route, sub: Submission, model: str) -> None:
    """Refuse, now rather than when the task runs, an input naming media by http(s) URL on
    a route that does not take clients' URLs (option ``client_media_urls``)."""
    if media.client_media_urls(sub.input, sub.kind) and not media.allows_client_urls(route):
        raise BadRequest(
            f"media URLs (http or https) are not accepted for model {model!r}: upload the"
            " file and give its file_id (POST /v1/files, or the API's own upload), or send"
            " it inline as a base64 data: URI",
            field="input",
        )


def new_task(
    routing: Routing,
    key: ApiKey,
    sub: Submission,
    batch_id: str | None = None,
    model: str | None = None,
    quotas: tuple[Quota, ...] = (),
) -> NewTask:
    """A checked submission (for ``model``, in a batch; by default the submission's
    model), ready for the store, held to ``quotas``; refused with a 400 if not routable."""
    if model is not None:
        sub = dataclasses.replace(sub, model=model, idempotency_key=None)
    route = checked_route(routing, sub, sub.model)
    if sub.idempotency_key is not None and not 0 < len(sub.idempotency_key) <= 200:
        raise BadRequest("idempotency key must have 1 to 200 characters", field="idempotency_key")
    now = time.time()
    return NewTask(
        tenant=key.tenant,
        api_key_id=key.id,
        kind=sub.kind,
        model=sub.model,
        route=route.name,
        priority=sub.priority,
        input=sub.input,
        params=sub.params,
        max_attempts=routing.attempt_budget(route),
        run_timeout=sub.timeout,
        deadline=now + sub.queue_timeout if sub.queue_timeout else None,
        idempotency_key=sub.idempotency_key,
        request_hash=request_hash(sub) if sub.idempotency_key else None,
        batch_id=batch_id,
        conversation_id=sub.conversation_id,
        webhook_url=sub.webhook_url if batch_id is None else None,  # a batch's: one event
        callback=sub.callback if batch_id is None else None,
        label=sub.label,
        api=sub.api,
        trace=current_trace(),  # the request's span, with tracing on: its attempts join it
        pinned_instance=sub.pinned_instance,
        quotas=quotas,
    )


def check_duration(name: str, seconds: float | None, most: float) -> None:
    """A duration a client asked for: none, or more than 0 and at most ``most`` seconds."""
    if seconds is not None and not 0 < seconds <= most:  # NaN fails this too
        raise BadRequest(f"{name} must be more than 0 and at most {most:g} seconds", field=name)


def check_storable(sub: Submission) -> Submission:
    """The submission, if the store can keep its input and params as JSON; else a 400 (an
    integer beyond 64 bits, nesting deeper than 254 levels)."""
    try:
        orjson.dumps([sub.input, sub.params])
    except TypeError as exc:
        raise BadRequest(f"input and params must be storable JSON: {exc}") from None
    return sub


def request_hash(sub: Submission) -> str:
    body = [sub.kind, sub.model, sub.input, sub.params, int(sub.priority), sub.timeout]
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
