"""Tables of the SQL store. Migrations in ``migrations/versions`` create exactly these; a test
compares the two so they cannot drift apart."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

Json = JSON().with_variant(JSONB(), "postgresql")
# None is SQL NULL here (not JSON null), so that "IS NULL" finds the tasks without one
NullableJson = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

PENDING = text("status = 'PENDING'")
PROCESSING = text("status = 'PROCESSING'")
FINISHED = text("finished_at IS NOT NULL")
LOOSE = text("task_id IS NULL")
IN_BATCH = text("batch_id IS NOT NULL")
IN_CONVERSATION = text("conversation_id IS NOT NULL")
LABELLED = text("label IS NOT NULL")
PINNED = text("status = 'PENDING' AND pinned_instance IS NOT NULL")


def status_is(column: ColumnElement[str], *statuses: str) -> ColumnElement[bool]:
    """``column = 'PENDING'`` (or ``IN (...)``) with the statuses written into the SQL, not
    bound: the partial indexes above are for these conditions, and a bound status makes
    both databases work harder. SQLite, to see whether a partial index applies, looks at
    the value bound and marks the statement to be compiled again whenever that parameter is
    bound anew, which a driver does at every run: a claim cost 114 µs against 13 µs.
    PostgreSQL, on the generic plan it may use from a prepared statement's sixth run, can
    use such an index only if the statement names the status itself. (Statuses are our own
    constants: nothing to quote.)"""
    if len(statuses) == 1:
        return column == literal_column(f"'{statuses[0]}'", String)
    return column.in_([literal_column(f"'{s}'", String) for s in statuses])


tasks = Table(
    "tasks",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("api_key_id", String(40), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("model", String(200), nullable=False),
    Column("route", String(100), nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("fair_seq", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("input", Json),
    Column("params", Json),
    Column("result", Json),
    Column("error", Json),
    Column("provider_job", NullableJson),  # a job running on the backend's side: {id, data, ...}
    Column("batch_id", String(40)),  # one request fanned out to several models
    Column("conversation_id", String(40)),  # a chat turn: its answer joins the history
    Column("turn_id", Integer),  # the user message (in ``messages``) this task answers
    Column("webhook_url", String(2000)),  # POSTed an event when the task ends
    # the client's own tag (e.g. the Volcengine AI Server's user_id), not identity
    Column("label", String(200)),
    Column("trace", String(200)),  # the W3C trace context of the request (tracing on)
    # the API that made it (NULL: taskgate's own; "tasksystem", ...): the shape it answers in
    Column("api", String(32)),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    # times an admin ran it again after it ended (its webhook event ids count them)
    Column("retries", Integer, nullable=False, server_default=text("0")),
    Column("run_timeout", Float),
    Column("deadline", Float),
    Column("run_after", Float, nullable=False),
    Column("idempotency_key", String(200)),
    Column("request_hash", String(64)),
    Column("worker", String(64)),
    Column("instance", String(100)),
    # the only instance it may run on (an AIFlow client's endpoint, allowed by the admin)
    Column("pinned_instance", String(100)),
    Column("lease_until", Float),
    Column("claimed_at", Float),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    # what its attempts used and cost (taskgate.pricing), added as each one ends
    Column("input_tokens", BigInteger, nullable=False, server_default=text("0")),
    Column("output_tokens", BigInteger, nullable=False, server_default=text("0")),
    Column("cost", Float, nullable=False, server_default=text("0")),
    UniqueConstraint("tenant", "idempotency_key", name="uq_tasks_idempotency"),
    Index(
        "ix_tasks_claim",
        "route",
        "priority",
        "fair_seq",
        "id",
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    ),
    Index(
        "ix_tasks_key_lane",
        "route",
        "priority",
        "api_key_id",
        "fair_seq",
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    ),
    Index("ix_tasks_lease", "lease_until", sqlite_where=PROCESSING, postgresql_where=PROCESSING),
    # calls in flight per instance, counted by every claim
    Index(
        "ix_tasks_busy", "route", "instance", sqlite_where=PROCESSING, postgresql_where=PROCESSING
    ),
    Index("ix_tasks_deadline", "deadline", sqlite_where=PENDING, postgresql_where=PENDING),
    # pinned tasks waiting: empty but for them, so a claim's look for any is a cheap probe
    Index(
        "ix_tasks_pinned",
        "route",
        "pinned_instance",
        sqlite_where=PINNED,
        postgresql_where=PINNED,
    ),
    Index("ix_tasks_tenant_id", "tenant", "id"),
    # most tasks are in no batch and have no label: they have no entry to write
    Index("ix_tasks_batch", "batch_id", sqlite_where=IN_BATCH, postgresql_where=IN_BATCH),
    # a conversation's tasks (AI Task System's history shows the running and failed ones)
    Index(
        "ix_tasks_conversation",
        "conversation_id",
        sqlite_where=IN_CONVERSATION,
        postgresql_where=IN_CONVERSATION,
    ),
    Index(
        "ix_tasks_tenant_label",
        "tenant",
        "label",
        "id",
        sqlite_where=LABELLED,
        postgresql_where=LABELLED,
    ),
    # the task list's filters, each walked newest first from a cursor (store/listing.py);
    # kind, model and route of ended tasks only: an entry once, not at each change of status
    Index("ix_tasks_status_id", "status", "id"),
    Index("ix_tasks_kind_id", "kind", "id", sqlite_where=FINISHED, postgresql_where=FINISHED),
    Index("ix_tasks_model_id", "model", "id", sqlite_where=FINISHED, postgresql_where=FINISHED),
    Index("ix_tasks_route_id", "route", "id", sqlite_where=FINISHED, postgresql_where=FINISHED),
    # what ended lately, for statistics (a task gets an entry when it ends, not before)
    Index(
        "ix_tasks_finished",
        "finished_at",
        sqlite_where=FINISHED,
        postgresql_where=FINISHED,
    ),
)

# rate limits shared by all workers: one pair of token buckets per backend instance
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("route", String(100), primary_key=True),
    Column("instance", String(100), primary_key=True),
    Column("requests", Float, nullable=False),
    Column("tokens", Float, nullable=False),
    Column("tokens_spent", Float, nullable=False),  # by calls ended since the last claim
    Column("updated_at", Float, nullable=False),
)

# the counters of keys' and tenants' limits (taskgate.budgets), shared by every gateway and
# worker: a row per key or tenant with a limit, made at its first request
usage_counters = Table(
    "usage_counters",
    metadata,
    Column("subject", String(80), primary_key=True),  # key:ID | tenant:NAME
    Column("requests", Float, nullable=False),  # the request bucket as of requests_at
    Column("requests_at", Float, nullable=False),
    Column("day", Integer, nullable=False),  # the UTC day (since the epoch) of day_tokens
    Column("day_tokens", BigInteger, nullable=False),
    Column("month", Integer, nullable=False),  # the UTC month (year * 12 + month - 1)
    Column("month_cost", Float, nullable=False),
)

# backend instances that joined a route at run time (POST /v1/routes/{name}/instances), kept
# while their heartbeats come: added to the route's configured ones by every process
instances = Table(
    "instances",
    metadata,
    Column("route", String(100), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("endpoint", String(2000)),
    Column("max_concurrency", Integer, nullable=False),
    Column("weight", Float, nullable=False),
    Column("secret_env", String(200)),  # the name of an environment variable, never a secret
    Column("requests_per_minute", Integer),
    Column("tokens_per_minute", Integer),
    Column("options", Json, nullable=False),
    Column("ttl", Float),  # seconds a heartbeat keeps it; NULL: kept until removed
    Column("registered_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("expires_at", Float),
)

batches = Table(
    "batches",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("api_key_id", String(40), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("first_wins", Boolean, nullable=False),
    Column("models", Json, nullable=False),  # in the request's order
    Column("conversation_id", String(40)),
    Column("webhook_url", String(2000)),  # POSTed an event when the last task ends
    Column("created_at", Float, nullable=False),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("title", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("api", String(32)),  # the API that started it (NULL: taskgate's own), as tasks.api
    Index("ix_conversations_tenant_id", "tenant", "id"),
    # the latest changed first, as AI Task System's clients list them
    Index("ix_conversations_tenant_updated", "tenant", "updated_at"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conversation_id", String(40), nullable=False),
    Column("role", String(16), nullable=False),  # user | assistant
    Column("content", Json, nullable=False),  # text, or what a non-text answer made
    Column("model", String(200)),  # the model that answered (assistant turns)
    Column("task_id", String(40)),
    Column("turn_id", Integer),  # an answer: the id of the user message it answers
    Column("created_at", Float, nullable=False),
    Index("ix_messages_conversation", "conversation_id", "id"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("task_id", String(40)),
    Column("batch_id", String(40)),
    Column("url", String(2000), nullable=False),
    Column("event_id", String(80), nullable=False, unique=True),  # stable across retries
    Column("payload", Json, nullable=False),
    Column("status", String(16), nullable=False),  # PENDING | DELIVERED | FAILED
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_status", Integer),
    Column("last_error", String(500)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # headers a client asked to be sent (taskgate.callbacks): secrets, never shown
    Column("headers", NullableJson),
    Index("ix_webhooks_due", "next_attempt_at", sqlite_where=PENDING, postgresql_where=PENDING),
    Index("ix_webhooks_task", "task_id"),
    Index("ix_webhooks_batch", "batch_id"),
)

# A task's callback beyond its webhook URL (taskgate.callbacks): the body shape of the API it
# came through and the headers its client asked to be sent, kept apart from the task's
# visible fields and removed with the task.
task_callbacks = Table(
    "task_callbacks",
    metadata,
    Column("task_id", String(40), primary_key=True),
    Column("dialect", String(16)),
    Column("headers", NullableJson),
    Column("created_at", Float, nullable=False),
)

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("webhook_secret", String(100), nullable=False),  # signs this tenant's webhooks
    Column("created_at", Float, nullable=False),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(40), nullable=False, index=True),
    Column("number", Integer, nullable=False),
    Column("route", String(100), nullable=False),
    Column("instance", String(100), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("outcome", String(16)),
    Column("error", Json),
    Column("retry_at", Float),
)

files = Table(
    "files",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("task_id", String(40), index=True),
    Column("name", String(255), nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    # files no task owns (uploads, and outputs whose task was purged), oldest first: retention
    Index("ix_files_loose", "created_at", sqlite_where=LOOSE, postgresql_where=LOOSE),
)

# The files a task's input names ({"file_id": ...}), written with the task when it names any,
# and those a conversation shows after the tasks of its turns were purged: a file named here
# is never purged (taskgate.store.retention).
file_refs = Table(
    "file_refs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("file_id", String(40), nullable=False),
    Column("task_id", String(40)),
    Column("conversation_id", String(40)),
    Index("ix_file_refs_file", "file_id"),
    Index("ix_file_refs_task", "task_id"),
    Index("ix_file_refs_conversation", "conversation_id"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("admin", Boolean, nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    # the key's limits (None: none; taskgate.budgets)
    Column("requests_per_minute", Integer),
    Column("tokens_per_day", BigInteger),
    Column("cost_per_month", Float),
)


# A task's timeline beyond what its row and its attempts say (see taskgate.ops.timeline):
# backend jobs, webhook deliveries, admin actions, tracebacks. A bounded number per attempt.
task_logs = Table(
    "task_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(40), nullable=False),
    Column("at", Float, nullable=False),
    Column("event", String(40), nullable=False),
    Column("attempt", Integer),
    Column("instance", String(100)),
    Column("message", String(2000)),
    Column("data", NullableJson),
    Index("ix_task_logs_task", "task_id", "id"),
)


# Routes an admin paused: their tasks are accepted, but no claim takes any (store/control.py)
route_states = Table(
    "route_states",
    metadata,
    Column("route", String(100), primary_key=True),
    Column("paused", Boolean, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(40)),  # the key that paused or resumed it
)

# Worker processes (the scheduler of ``serve`` or ``worker``), as their heartbeats say
workers = Table(
    "workers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("host", String(100), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("routes", Json, nullable=False),
    Column("in_flight", Integer, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("drain", Boolean, nullable=False),  # an admin asked it to drain
    Column("stopped_at", Float),
)

# Dashboard sessions (taskgate.web): a cookie's token, by its hash, standing for the API key
# that logged in; its CSRF token; until when it holds
ui_sessions = Table(
    "ui_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("key_id", String(40), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_ui_sessions_expires", "expires_at"),
)

# Secrets of the server, made once and shared by all of its processes (store/server_secrets.py):
# the signing key of file links
server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
)
