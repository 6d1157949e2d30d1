"""The shapes of the answers (the native API's, and every API's errors), for the OpenAPI
document only.

The handlers build their JSON by hand (``views.task_json`` and the like, sent by
``api/responses.JSON``) and nothing here runs on a request: these models are named in the
routes' ``responses=``, so ``/docs`` and ``/openapi.json`` show what comes back, at no cost
per request. ``tests/integration/test_api_docs.py`` checks real answers against them, so
that a field added to a view and not here fails a test. A key that is always sent is a
field without a default (null where it may be); a key sent only sometimes has a default.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from taskgate.models import Status

Time = datetime | None  # ISO 8601 UTC, milliseconds: 2026-03-01T12:00:00.000Z


class Shape(BaseModel):
    """An answer's fields. Its schema does not forbid others: clients should take new fields
    in their stride (the tests hold the views to the fields declared here)."""


# --- errors ----------------------------------------------------------------------------------


class ErrorObject(Shape):
    """An error's type and message, and details that depend on the error."""

    model_config = ConfigDict(extra="allow")  # details: field, limit, retry_after, ...

    type: str = Field(description="bad_request, unauthorized, not_found, rate_limited, ...")
    message: str
    field: str | None = Field(None, description="the request field at fault, when one is")
    problems: list[str] | None = Field(None, description="each schema problem (422)")
    retry_after: float | None = Field(None, description="seconds to wait (429, 503)")


class ErrorOut(Shape):
    """Every refusal and failure of the native API: 4xx for the caller's, 5xx for ours."""

    error: ErrorObject


def errors(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """An API's refusals (4xx) and failures (5xx: 500, or 503 with Retry-After), in ``model``."""
    return {
        "4XX": {"model": model, "description": "Refused: the error says why"},
        "5XX": {"model": model, "description": "Failed (500) or unavailable (503)"},
    }


ERRORS = errors(ErrorOut)


class OpenAIErrorObject(Shape):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(Shape):
    """The OpenAI API's errors (its 400 for a schema error, where the native API says 422)."""

    error: OpenAIErrorObject


class DetailError(Shape):
    """The AIFlow and AI Task System APIs' errors: FastAPI's ``detail``, and taskgate's."""

    detail: str
    error: ErrorObject


class AiflowError(Shape):
    """The AIFlow API's errors: AIFlow's ``error_code``, ``message`` and ``details`` (its
    docs/error_codes.md), FastAPI's ``detail`` (the same message), and taskgate's."""

    error_code: str
    message: str
    details: dict[str, Any]
    detail: str
    error: ErrorObject


class Envelope(Shape):
    """The Volcengine AI Server API's answers, errors included (``success`` false)."""

    success: bool
    data: Any
    message: str


def declare(status: int | str, model: type[BaseModel], description: str) -> dict[int | str, Any]:
    """One ``responses=`` entry."""
    return {status: {"model": model, "description": description}}


# --- tasks -----------------------------------------------------------------------------------


class UsageOut(Shape):
    input_tokens: int
    output_tokens: int
    cost: float = Field(description="by the configured prices, of all the task's attempts")


class ProviderJobOut(Shape):
    id: str | None = Field(description="the backend's id of its job")
    route: str | None
    instance: str | None
    submitted_at: Time


class TaskOut(Shape):
    """A task as ``views.task_json`` renders it (in lists, batches and webhook events)."""

    id: str
    status: Status
    kind: str
    model: str
    route: str | None
    priority: Literal["critical", "default", "low"]
    input: Any
    params: dict[str, Any]
    result: dict[str, Any] | None = Field(
        description="when it succeeded: output (text, reasoning, ...), files, usage"
    )
    error: dict[str, Any] | None = Field(description="when it failed: type, message, ...")
    provider_job: ProviderJobOut | None
    batch_id: str | None
    conversation_id: str | None
    attempts: int
    max_attempts: int
    idempotency_key: str | None
    created_at: Time
    updated_at: Time
    started_at: Time
    finished_at: Time
    deadline: Time
    usage: UsageOut


class AttemptOut(Shape):
    number: int
    route: str
    instance: str
    started_at: Time
    ended_at: Time
    outcome: str | None = Field(description="success, retry, failed, timeout, cancelled, lost")
    error: dict[str, Any] | None
    retry_at: float | None = Field(description="after a retry: when the task fell due again")


class DeliveryOut(Shape):
    event_id: str
    type: str | None
    status: str = Field(description="PENDING, DELIVERED or FAILED")
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: Time
    next_attempt_at: Time
    delivered_at: Time


class WebhookOut(Shape):
    url: str
    deliveries: list[DeliveryOut]


class TaskView(TaskOut):
    """A task as one is read: with its attempts, its queue position and its webhook."""

    position: int | None = Field(None, description="while it waits: its place in its queue")
    history: list[AttemptOut] = Field(
        default_factory=list, description="every attempt (not after a cancel)"
    )
    webhook: WebhookOut | None = Field(None, description="when it has a webhook_url")


class TaskPage(Shape):
    data: list[TaskOut]
    next_cursor: str | None = Field(description="pass as cursor for the next page")


class LogEntryOut(Shape):
    at: Time
    event: str = Field(description="submitted, started, retry, ended, ...")
    attempt: int | None
    instance: str | None
    message: str | None
    data: dict[str, Any]


class TaskLogOut(Shape):
    task_id: str
    entries: list[LogEntryOut]


# --- batches ---------------------------------------------------------------------------------


AI_TASK_STATUS = "AI Task System's TaskStatus: 0 waiting, 3 running, 1 succeeded, 2 ended otherwise"


class BatchResultOut(Shape):
    task_id: str
    model_name: str
    status: Literal[0, 1, 2, 3] = Field(description=AI_TASK_STATUS)
    task_status: Status
    response_text: str | None = Field(description="its text, or its images as Markdown")
    error_msg: str | None = Field(description="why it failed")
    cost_time: float | None = Field(description="seconds it ran")
    result: dict[str, Any] | None
    error: dict[str, Any] | None


class BatchOut(Shape):
    id: str
    batch_id: str
    status: Literal["PROCESSING", "SUCCESS", "PARTIAL", "FAILED"]
    kind: str
    first_wins: bool
    created_at: Time
    conversation_id: str | None
    user_prompt: str | None = Field(description="the text of its prompt")
    task_ids: list[str]
    results: list[BatchResultOut]
    webhook: WebhookOut | None = Field(None, description="when it has a webhook_url")


# --- conversations ---------------------------------------------------------------------------


class MessageOut(Shape):
    role: str
    content: Any
    model: str | None
    task_id: str | None
    created_at: Time


class ConversationOut(Shape):
    id: str
    title: str
    created_at: Time
    updated_at: Time
    messages: list[MessageOut] = Field(
        default_factory=list, description="its turns in order (not in lists)"
    )


class TaskSystemConversation(Shape):
    """A conversation as AI Task System's clients list it."""

    conversation_id: str
    title: str
    modified: Time = Field(description="when it last changed")


class ConversationPage(Shape):
    data: list[ConversationOut] = Field(description="the newest first (not with ?api=tasksystem)")
    next_cursor: str | None = None
    conversations: list[TaskSystemConversation] = Field(
        default_factory=list,
        description="those AI Task System's API started, the latest changed first "
        "(not with ?api=taskgate)",
    )


class HistoryOut(Shape):
    conversation_id: str
    history: list[MessageOut]


class TaskSystemMessage(Shape):
    """One message of a history in AI Task System's shape."""

    role: Literal["user", "assistant"]
    content: str
    model: str | None
    files: list[str] = Field(default_factory=list, description="a user message's file URLs")
    is_loading: bool = Field(False, description="a placeholder while the task runs")


TaskSystemHistory = list[TaskSystemMessage]


class TaskSystemTask(Shape):
    """A task in AI Task System's shape (tasks submitted through its API, or ?api=tasksystem)."""

    task_id: str
    conversation_id: str | None
    batch_id: str | None
    status: Literal[0, 1, 2, 3] = Field(description=AI_TASK_STATUS)
    task_status: Status
    task_type: str = Field(description="TEXT, MULTIMODAL (a turn with files), IMAGE, ...")
    prompt: str | None
    model_name: str
    model: str
    response_text: str | None
    result_url: str | None = Field(description="an image task's first image")
    error_msg: str | None
    cost_time: float | None = Field(description="seconds it ran")
    created_at: Time
    updated_at: Time


class Deleted(Shape):
    id: str
    deleted: Literal[True]


# --- files, keys, webhooks, models -----------------------------------------------------------


class FileOut(Shape):
    id: str
    url: str = Field(
        description="a signed link: it downloads without a key until files.url_lifetime ends"
    )
    name: str
    content_type: str
    size: int
    sha256: str
    object: Literal["file"]
    bytes: int
    filename: str
    purpose: str
    created_at: int = Field(description="Unix seconds, as OpenAI's files")


class LimitsOut(Shape):
    requests_per_minute: int | None
    tokens_per_day: int | None
    cost_per_month: float | None


class KeyOut(Shape):
    id: str
    tenant: str
    name: str
    admin: bool
    prefix: str = Field(description="the secret's first characters, to tell keys apart")
    created_at: Time
    revoked_at: Time
    limits: LimitsOut


class KeyCreated(KeyOut):
    key: str = Field(description="the secret, shown in this answer only")


class KeyList(Shape):
    data: list[KeyOut]


class Revoked(Shape):
    id: str
    revoked: Literal[True]


class SecretOut(Shape):
    secret: str


class ModelOut(Shape):
    id: str
    object: Literal["model"]
    owned_by: str = Field(description="the route")
    source: Literal["declared", "glob", "discovered"]


class ModelList(Shape):
    object: Literal["list"]
    data: list[ModelOut]


# --- admin -----------------------------------------------------------------------------------


class Retried(Shape):
    retried: int


class Cancelled(Shape):
    cancelled: int


class RouteState(Shape):
    name: str
    provider: str
    models: list[str]
    paused: bool
    paused_since: Time
    waiting: int
    running: int
    capacity: int
    instances: list[dict[str, Any]] = Field(
        description="name, calls in flight, capacity, rate allowance, health"
    )


class RouteList(Shape):
    data: list[RouteState]


class WorkerOut(Shape):
    id: str
    host: str
    pid: int
    routes: list[str]
    in_flight: int
    state: Literal["running", "draining", "stopped", "lost"]
    started_at: Time
    last_seen: Time


class WorkerList(Shape):
    data: list[WorkerOut]


class Drained(Shape):
    id: str
    drain: Literal[True]
