"""One typed settings object, loaded once from YAML (plus a few environment overrides) and
passed down. Nothing else in taskgate reads the environment.

A route maps model names (exact or glob) to a provider and its backend instances::

    routes:
      - name: local-llama
        models: ["llama-*", "qwen-*"]
        provider: openai
        instances:
          - {name: gpu1, endpoint: "http://10.0.0.5:8000/v1", max_concurrency: 16}
          - {name: gpu2, endpoint: "http://10.0.0.6:8000/v1", max_concurrency: 16, weight: 2}
        timeout: 120
        retry: {max_attempts: 3}
        fallbacks: [openai-cloud]
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from taskgate.models import BUILTIN_KINDS, Priority

# the first path segments of taskgate's own URLs, which static_dirs may not take
RESERVED_PREFIXES = frozenset(
    {"api", "docs", "files", "health", "metrics", "openai", "openapi.json", "ui", "v1"}
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(_Model):
    max_attempts: int = Field(3, ge=1, le=100)
    backoff_base: float = Field(1.0, ge=0)
    backoff_max: float = Field(60.0, ge=0)
    jitter: float = Field(0.25, ge=0, le=1)


class PollPolicy(_Model):
    """How a job running on the backend's side (a video) is polled, and for how long a
    result that comes after the task timed out here is still collected."""

    interval: float = Field(2.0, gt=0)  # before the first poll, then doubling
    max_interval: float = Field(30.0, gt=0)
    jitter: float = Field(0.25, ge=0, le=1)
    max_errors: int = Field(3, ge=1)  # failed polls in a row that end the wait
    late_results_for: float = Field(3600.0, ge=0)


class HealthPolicy(_Model):
    failure_threshold: int = Field(3, ge=1)  # consecutive failures before cooling down
    cooldown: float = Field(10.0, ge=0)  # seconds before a probe call is allowed


class Instance(_Model):
    name: str
    endpoint: str | None = None
    secret_env: str | None = None  # name of the environment variable holding the secret
    secret: SecretStr | None = None  # filled from secret_env at load time; never serialised
    max_concurrency: int = Field(8, ge=1)
    weight: float = Field(1.0, gt=0)
    # the backend's rate limits, held by all workers together (None: no limit)
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def rate_limited(self) -> bool:
        return self.requests_per_minute is not None or self.tokens_per_minute is not None


class Route(_Model):
    name: str
    # exact names or globs; may be empty on a route whose backends list its models
    # (options.discover, see taskgate.discovery)
    models: list[str] = Field(default_factory=list)
    provider: str
    kinds: list[str] | None = None  # None: any kind the provider accepts
    instances: list[Instance] = Field(min_length=1)
    timeout: float = Field(300.0, gt=0)
    retry: RetryPolicy = RetryPolicy()
    poll: PollPolicy = PollPolicy()
    health: HealthPolicy = HealthPolicy()
    fallbacks: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _some_models(self) -> Route:
        if not self.models and self.options.get("discover") is not True:
            raise ValueError(f"route {self.name!r}: list its models, or set options.discover")
        return self

    def serves(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, p) for p in self.models)

    @property
    def limits(self) -> dict[str, tuple[int | None, int | None]]:
        """Requests and tokens per minute of the instances that have rate limits."""
        return {
            i.name: (i.requests_per_minute, i.tokens_per_minute)
            for i in self.instances
            if i.rate_limited
        }


class ConversationSettings(_Model):
    """How much of a conversation a chat turn is sent: the last ``max_turns`` turns, fewer
    if they would pass ``max_tokens`` (counted roughly, four characters a token)."""

    max_turns: int = Field(20, ge=0)
    max_tokens: int = Field(8000, ge=0)


class AiflowTaskType(_Model):
    """What an AIFlow ``task_type`` runs: a task of ``kind``, on ``model_spec.name`` or, when
    the request names no model, on ``model``."""

    kind: str
    model: str | None = None


class AllowHosts(_Model):
    """``aiflow.client_credentials: {allow_hosts: [...]}``: a request's ``model_spec.endpoint``
    on one of these hosts runs on the model's configured instance at that host."""

    allow_hosts: list[str] = Field(min_length=1)

    @field_validator("allow_hosts")
    @classmethod
    def _lower(cls, hosts: list[str]) -> list[str]:
        return [h.strip().lower() for h in hosts]


class AiflowSettings(_Model):
    """The AIFlow dialect (api/aiflow.py). ``task_types`` add to (or replace) the built-in
    ``openai-gpt5``, ``text-generation``, ``image-generation`` and ``gpt-image-1``.

    ``client_credentials`` says what a request's ``model_spec.endpoint`` and ``api_key`` do
    (every example of AIFlow's sends them): ``ignore`` (the default) drops them, and the task
    runs on its model's configured route; ``refuse`` answers 400; ``{allow_hosts: [...]}``
    runs a task whose endpoint is on a listed host on the route's instance at that host
    (pinned there for every attempt), refuses other hosts, and drops the key. A client's key
    is never stored, logged or echoed. The key ``client_endpoint_hosts`` of earlier
    versions is still read: a list of hosts is ``{allow_hosts: [...]}``, an empty one
    ``refuse`` (what it meant)."""

    task_types: dict[str, AiflowTaskType] = Field(default_factory=dict)
    client_credentials: Literal["ignore", "refuse"] | AllowHosts = "ignore"

    @model_validator(mode="before")
    @classmethod
    def _earlier_key(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "client_endpoint_hosts" not in data:
            return data
        data = dict(data)
        hosts = data.pop("client_endpoint_hosts")
        if "client_credentials" in data:
            raise ValueError(
                "aiflow.client_endpoint_hosts is replaced by aiflow.client_credentials: "
                "keep only client_credentials ({allow_hosts: [...]})"
            )
        data["client_credentials"] = {"allow_hosts": hosts} if hosts else "refuse"
        return data

    @property
    def allowed_hosts(self) -> list[str]:
        """The hosts a client endpoint may name (none unless ``allow_hosts``)."""
        creds = self.client_credentials
        return creds.allow_hosts if isinstance(creds, AllowHosts) else []


class WebhookSettings(_Model):
    """Webhooks: where they may go and how hard taskgate tries. A URL whose host resolves to
    a loopback, private, link-local, multicast or reserved address is refused unless
    ``allow_private`` is set or ``allowed_hosts`` names the host (``*.corp.example`` for any
    subdomain) or its network (``10.1.0.0/16``). A delivery is tried ``max_attempts`` times,
    waiting ``backoff_base`` seconds, doubling up to ``backoff_max`` (with jitter), between
    tries of at most ``timeout`` seconds each."""

    allow_private: bool = False
    allowed_hosts: list[str] = Field(default_factory=list)
    max_attempts: int = Field(8, ge=1, le=100)
    backoff_base: float = Field(2.0, ge=0)
    backoff_max: float = Field(600.0, ge=0)
    jitter: float = Field(0.25, ge=0, le=1)
    timeout: float = Field(10.0, gt=0)
    poll_interval: float = Field(1.0, gt=0)  # a look for due deliveries at least this often
    max_concurrency: int = Field(16, ge=1)  # deliveries in flight per worker process

    @property
    def retry(self) -> RetryPolicy:
        """The backoff as the scheduler's retry policy, for policy.backoff."""
        return RetryPolicy(
            max_attempts=self.max_attempts,
            backoff_base=self.backoff_base,
            backoff_max=self.backoff_max,
            jitter=self.jitter,
        )


class MediaSettings(_Model):
    """Media URLs from clients that taskgate itself downloads (for a backend that takes the
    bytes, as OpenAI's image edits do), where a route allows them (option
    ``client_media_urls``): at most ``max_download_bytes`` each (AIFlow's
    ``MEDIA_MAX_DOWNLOAD_SIZE``), within ``download_timeout`` seconds (its
    ``MEDIA_DOWNLOAD_TIMEOUT``), only to public addresses unless ``allow_private`` is set or
    ``allowed_hosts`` names the host or network (as for webhooks)."""

    max_download_bytes: int = Field(100 * 1024 * 1024, ge=1)
    download_timeout: float = Field(60.0, gt=0)
    allow_private: bool = False
    allowed_hosts: list[str] = Field(default_factory=list)


class RegistrationSettings(_Model):
    """Instances that join a route at run time (``POST /v1/routes/{name}/instances``; see
    ops/live.py). Every process rereads them from the store every ``reread_seconds``, at once
    when told of a change, and when one is due to expire. ``max_ttl``: the longest time to
    live a registration may ask for. ``secret_envs``: environment variables a registered
    instance may name as its secret, beyond those its route's configured instances name."""

    reread_seconds: float = Field(5.0, gt=0)
    max_ttl: float = Field(86400.0, gt=0)
    secret_envs: list[str] = Field(default_factory=list)


class SchedulerSettings(_Model):
    priority_weights: dict[str, int] = Field(
        default_factory=lambda: {"critical": 6, "default": 3, "low": 1}
    )
    strict_priority: bool = False
    lease_seconds: float = Field(30.0, gt=0)
    poll_interval: float = Field(1.0, gt=0)
    claim_batch: int = Field(256, ge=1)

    @field_validator("priority_weights")
    @classmethod
    def _known_priorities(cls, v: dict[str, int]) -> dict[str, int]:
        for name, weight in v.items():
            Priority.parse(name)
            if weight < 1:
                raise ValueError(f"priority weight for {name} must be at least 1")
        return v

    def weight(self, priority: Priority) -> int:
        return self.priority_weights.get(priority.label, 1)


class CorsSettings(_Model):
    """Cross-origin requests from browsers (AI Task System's page served from another
    origin, say). Off until ``allow_origins`` names some (``["*"]``: any); then preflights
    are answered and answers carry the CORS headers. Keys travel in the Authorization
    header, so ``allow_credentials`` (cookies) stays off unless a page needs it."""

    allow_origins: list[str] = Field(default_factory=list)
    allow_methods: list[str] = Field(
        default_factory=lambda: ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    )
    allow_headers: list[str] = Field(default_factory=lambda: ["*"])
    expose_headers: list[str] = Field(default_factory=lambda: ["Retry-After"])
    allow_credentials: bool = False
    max_age: int = Field(600, ge=0)


class AuthSettings(_Model):
    """``anonymous_tenant``: a request that sends no key at all acts as a tenant key of
    that tenant (never an admin), for a local single-user set-up whose clients send none
    (AI Task System's page). Anyone who can reach the port then uses it as that tenant:
    keep it off (the default) on any shared network. A wrong key is still refused."""

    anonymous_tenant: str | None = Field(None, min_length=1, max_length=64)


class FileSettings(_Model):
    """Links to stored files in answers (``/v1/files/{id}?expires=...&signature=...``) are
    signed, so a browser or ``curl`` downloads them without a key, for ``url_lifetime``
    seconds (up to a tenth more, at most a minute: see taskgate.files.signing). The
    signing key is made once and kept in the store, shared by every process."""

    url_lifetime: int = Field(3600, ge=1, le=7 * 86400)


class MetricsSettings(_Model):
    """Prometheus metrics (``GET /metrics``). Scrapers usually send no key, so by default
    the API port serves them to anyone; ``require_key`` asks for an admin key there instead
    (Prometheus can send one: ``authorization: {credentials: ...}``). With ``port``, every
    process (``serve``, ``api`` and ``worker``, which has no other HTTP port) serves
    ``/metrics``, ``/health/live`` and ``/health/ready`` on that port, without a key, and the
    API port no longer serves ``/metrics``."""

    enabled: bool = True
    port: int | None = Field(None, ge=1, le=65535)
    require_key: bool = False


class TracingSettings(_Model):
    """OpenTelemetry tracing (the ``tracing`` extra): a span per request and per attempt,
    linked through the task across ``api`` and ``worker`` processes. ``exporter``: ``otlp``
    (to ``endpoint``, or the OTEL_EXPORTER_OTLP_* environment) or ``console``."""

    enabled: bool = False
    exporter: Literal["otlp", "console"] = "otlp"
    endpoint: str | None = None
    service_name: str = "taskgate"


class RetentionSettings(_Model):
    """How long ended tasks are kept (AIFlow's ``TASK_TTL``): a task that ended ``days`` ago,
    with its attempts, log, webhook deliveries and files, is purged in the background every
    ``interval`` seconds, ``batch`` tasks per transaction. ``tenants`` sets other days for
    some tenants; ``null`` (there or in ``days``) keeps them forever. A file that a kept
    task, or a conversation, still names is kept (taskgate.ops.retention)."""

    days: float | None = Field(30.0, gt=0)
    tenants: dict[str, float | None] = Field(default_factory=dict)
    interval: float = Field(3600.0, gt=0)
    batch: int = Field(500, ge=1, le=10_000)

    @field_validator("tenants")
    @classmethod
    def _positive_days(cls, v: dict[str, float | None]) -> dict[str, float | None]:
        for name, days in v.items():
            if days is not None and not days > 0:
                raise ValueError(f"retention days for tenant {name!r} must be more than 0")
        return v


class Limits(_Model):
    """A key's or a tenant's limits (None: no limit): tasks accepted per minute, tokens
    (input and output) per UTC day, cost (by ``prices``) per UTC calendar month."""

    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_day: int | None = Field(None, ge=1)
    cost_per_month: float | None = Field(None, gt=0)


class LimitSettings(_Model):
    """Tenants' limits; keys' are kept on the key (``POST``/``PATCH /v1/keys``)."""

    tenants: dict[str, Limits] = Field(default_factory=dict)


class Price(_Model):
    """What a call to one of ``models`` (names or globs) costs; the first price that
    matches a task's model is its price (see taskgate.pricing)."""

    models: list[str] = Field(min_length=1)
    input_per_million: float = Field(0.0, ge=0)  # tokens
    output_per_million: float = Field(0.0, ge=0)
    per_image: float = Field(0.0, ge=0)
    per_second: float = Field(0.0, ge=0)  # of audio or video
    per_request: float = Field(0.0, ge=0)  # each call that answered


class Settings(_Model):
    host: str = "127.0.0.1"
    port: int = 8000
    store_url: str = "sqlite:///./data/taskgate.db"
    files_url: str = "file://./data/files"
    # S3 credentials (TASKGATE_FILES_KEY_ID, TASKGATE_FILES_SECRET); unset: botocore's own chain
    files_key_id: str | None = None
    files_secret: SecretStr | None = None
    files: FileSettings = FileSettings()  # links to stored files
    # Cross-process events: unset means in-process on SQLite and LISTEN/NOTIFY on the store's
    # PostgreSQL; ``redis://...`` uses Redis pub/sub; ``memory://`` forces in-process.
    events_url: str | None = None
    max_body_bytes: int = 100 * 1024 * 1024
    auth_cache_seconds: float = Field(5.0, ge=0)
    log_level: str = "info"
    log_format: Literal["auto", "json", "console"] = "auto"  # auto: console on a terminal
    log_file: str | None = None  # also log (JSON) to this file, rotated at midnight
    log_retention_days: int = Field(7, ge=1)  # rotated files kept
    # a line per HTTP request: off by default, as it costs as much as the rest of logging
    # and metrics together (bench/README.md); every task's ending is logged either way
    access_log: bool = False
    log_errors_to_store: bool = False  # an unexpected error's traceback joins the task's log
    metrics: MetricsSettings = MetricsSettings()
    cors: CorsSettings = CorsSettings()
    auth: AuthSettings = AuthSettings()
    # folders of static files served at URL prefixes ({"/chat": "/srv/ai-task-system/static"}):
    # a client's own page (AI Task System's) from taskgate's origin, so it needs no CORS
    static_dirs: dict[str, str] = Field(default_factory=dict)
    tracing: TracingSettings = TracingSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    conversations: ConversationSettings = ConversationSettings()
    webhooks: WebhookSettings = WebhookSettings()
    media: MediaSettings = MediaSettings()
    aiflow: AiflowSettings = AiflowSettings()
    retention: RetentionSettings = RetentionSettings()
    prices: list[Price] = Field(default_factory=list)
    limits: LimitSettings = LimitSettings()
    registration: RegistrationSettings = RegistrationSettings()
    routes: list[Route] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=lambda: list(BUILTIN_KINDS))
    plugins: list[str] = Field(default_factory=list)  # modules imported at start-up

    @field_validator("static_dirs")
    @classmethod
    def _check_static_dirs(cls, v: dict[str, str]) -> dict[str, str]:
        for prefix in v:
            first = prefix.strip("/").split("/")[0]
            if not prefix.startswith("/") or not first or prefix != prefix.rstrip("/"):
                raise ValueError(f"static_dirs: {prefix!r} must be a path like /chat")
            if first in RESERVED_PREFIXES:
                taken = ", ".join(f"/{p}" for p in sorted(RESERVED_PREFIXES))
                raise ValueError(f"static_dirs: {prefix!r} is taskgate's own ({taken})")
            if not Path(v[prefix]).is_dir():
                raise ValueError(f"static_dirs: {prefix!r}: no folder at {v[prefix]!r}")
        return v

    @model_validator(mode="after")
    def _check_routes(self) -> Settings:
        names = [r.name for r in self.routes]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate route names: {sorted(dupes)}")
        for r in self.routes:
            missing = [f for f in r.fallbacks if f not in names]
            if missing:
                raise ValueError(f"route {r.name!r} falls back to unknown routes {missing}")
        return self

    @property
    def rate_limits(self) -> dict[tuple[str, str], tuple[int | None, int | None]]:
        """Every rate-limited instance's requests and tokens per minute, by route and name."""
        return {(r.name, name): limit for r in self.routes for name, limit in r.limits.items()}

    def with_instances(self, extra: Mapping[str, Sequence[Instance]]) -> Settings:
        """These settings with instances added to routes (registered at run time, by route
        name). A configured instance keeps its name: an added one of the same name is left
        out."""
        routes = []
        for r in self.routes:
            names = {i.name for i in r.instances}
            more = [i for i in extra.get(r.name, ()) if i.name not in names]
            routes.append(r.model_copy(update={"instances": [*r.instances, *more]}) if more else r)
        return self.model_copy(update={"routes": routes})

    def route(self, name: str) -> Route:
        for r in self.routes:
            if r.name == name:
                return r
        raise KeyError(name)

    def resolve(
        self, model: str, discovered: Callable[[Route, str], bool] | None = None
    ) -> Route | None:
        """The route for a model: an exact name wins over a glob or a name a route's
        backends listed (``discovered``); then declaration order."""
        for r in self.routes:
            if model in r.models:
                return r
        for r in self.routes:
            if r.serves(model) or (discovered is not None and discovered(r, model)):
                return r
        return None


DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")

_ENV_OVERRIDES = {
    "TASKGATE_HOST": "host",
    "TASKGATE_PORT": "port",
    "TASKGATE_STORE_URL": "store_url",
    "TASKGATE_FILES_URL": "files_url",
    "TASKGATE_FILES_KEY_ID": "files_key_id",
    "TASKGATE_FILES_SECRET": "files_secret",
    "TASKGATE_EVENTS_URL": "events_url",
    "TASKGATE_LOG_LEVEL": "log_level",
    "TASKGATE_LOG_FORMAT": "log_format",
    "TASKGATE_LOG_FILE": "log_file",
    "TASKGATE_METRICS_PORT": "metrics.port",
}


def source(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The file :func:`load` reads: ``path``, else TASKGATE_CONFIG, else the packaged default."""
    env = os.environ if env is None else env
    return Path(path or env.get("TASKGATE_CONFIG") or DEFAULT_CONFIG)


class ConfigError(ValueError):
    """A config file taskgate cannot use, one line per problem, naming the file, the line
    and the key: ``taskgate.yaml:14: routes[0].instances[1].max_concurrency: Input should
    be greater than or equal to 1`` (an environment override is named instead of a line).
    ``file``, ``line`` and ``key`` are those of the first problem (for an API's answer)."""

    def __init__(
        self, message: str, file: Path | None = None, line: int | None = None, key: str = ""
    ) -> None:
        super().__init__(message)
        self.file, self.line, self.key = file, line, key

    def details(self) -> dict[str, Any]:
        return {"file": str(self.file) if self.file else None, "line": self.line, "key": self.key}

    @classmethod
    def at(cls, path: Path, loc: tuple[Any, ...], problem: str) -> ConfigError:
        """A problem at the key ``loc`` of the file, with its line if the file parses."""
        try:
            root = yaml.compose(path.read_text())
        except (OSError, yaml.YAMLError):
            root = None
        line, key = _line_of(root, loc), dotted(loc)
        where = f"{path}:{line}" if line else str(path)
        return cls(": ".join(p for p in (where, key, problem) if p), path, line, key)


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the YAML file (TASKGATE_CONFIG or the packaged default), then env overrides.
    Raises :class:`ConfigError` for a file that cannot be read, parsed or validated."""
    env = os.environ if env is None else env
    path = source(path, env)
    try:
        text = path.read_text()
        raw = yaml.safe_load(text) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}", path) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        what = " ".join(str(getattr(exc, a, None) or "") for a in ("problem", "context"))
        raise ConfigError(f"{where}: {what.strip() or exc}", path, _mark_line(mark)) from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}:1: the top level must be a mapping", path, 1)
    overridden: dict[tuple[str, ...], str] = {}
    for var, key in _ENV_OVERRIDES.items():
        if var in env:
            *parents, name = key.split(".")
            section = raw
            for parent in parents:
                section = section.setdefault(parent, {})
            section[name] = env[var]
            overridden[tuple(key.split("."))] = var
    routes = raw.get("routes")
    for route in routes if isinstance(routes, list) else ():  # else: validation says why
        for inst in route.get("instances") or () if isinstance(route, dict) else ():
            if isinstance(inst, dict) and inst.get("secret_env"):
                inst["secret"] = env.get(inst["secret_env"])
    try:
        return Settings.model_validate(raw)
    except pydantic.ValidationError as exc:
        root = yaml.compose(text)
        problems = [_problem(path, root, e, overridden) for e in exc.errors()]
        _, line, key = problems[0]
        message = "\n".join(p for p, _, _ in problems)
        raise ConfigError(message, path, line, key) from exc


def registered_instance(
    fields: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> Instance:
    """An instance registered at run time, its secret read from the environment variable
    it names (this process's: a registration holds a reference, never a secret)."""
    env = os.environ if env is None else env
    name = fields.get("secret_env")
    return Instance.model_validate({**fields, "secret": env.get(name) if name else None})


_MESSAGES = {"extra_forbidden": "unknown key", "missing": "missing (required)"}


def _problem(
    path: Path, root: yaml.Node | None, error: Any, env: dict[Any, str]
) -> tuple[str, int | None, str]:
    """One validation error as ``FILE:LINE: KEY: message`` (or ``VARIABLE: KEY: message``),
    with its line and key."""
    loc, msg = error["loc"], _MESSAGES.get(error["type"], error["msg"])
    key, line = dotted(loc), None
    where = next((var for k, var in env.items() if loc[: len(k)] == k), None)
    if where is None:
        line = _line_of(root, loc)
        where = f"{path}:{line}" if line else str(path)
    return ": ".join(p for p in (where, key, msg.removeprefix("Value error, ")) if p), line, key


def dotted(loc: Sequence[Any]) -> str:
    """A key's path as ``routes[0].instances[1].max_concurrency``."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _mark_line(mark: Any) -> int | None:
    return mark.line + 1 if mark is not None else None


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The line (1-based) of the deepest YAML node that ``loc`` reaches: a key's own line."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line
        else:
            break
    return None if line is None else line + 1
