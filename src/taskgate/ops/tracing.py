"""OpenTelemetry tracing: the ``tracing`` extra, on with ``tracing.enabled`` (off by default).
A span per HTTP request (:meth:`Tracing.request`, opened by ``endpoints.Observed``) and per
attempt (:meth:`Tracing.attempt`, around ``call.Attempts._run``). A task submitted under a
request span keeps that span's W3C ``traceparent`` in its ``trace`` column
(:func:`current_trace`, read by ``submission.new_task``), and each of its attempts, in
whichever worker process, is a child of it: the request and the work it caused are one trace.
With tracing off nothing here runs and taskgate imports nothing of OpenTelemetry (FastAPI
itself imports its API package, never the SDK)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from taskgate import __version__
from taskgate.config import TracingSettings
from taskgate.models import Task
from taskgate.store.base import Outcome

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span


# the process's provider: built from the settings on first use, or given by use_provider
_provider: TracerProvider | None = None
# the traceparent of the request being answered (set only while tracing)
_trace: ContextVar[str | None] = ContextVar("taskgate_trace", default=None)
_PROPAGATED = (b"traceparent", b"tracestate")


class TracingUnavailable(RuntimeError):
    """Tracing is enabled but OpenTelemetry is not installed."""


def from_settings(conf: TracingSettings) -> Tracing | None:
    """The process's tracing, or None when it is off. The first call builds the provider,
    which exports from then on (and flushes at exit)."""
    if not conf.enabled:
        return None
    global _provider
    if _provider is None:
        _provider = _build(conf)
    return Tracing(_provider)


def use_provider(provider: TracerProvider | None) -> None:
    """Trace to ``provider`` instead of one built from the settings (tests: an
    ``InMemorySpanExporter``'s); None forgets it."""
    global _provider
    _provider = provider


def current_trace() -> str | None:
    """The W3C ``traceparent`` of the request span this code runs under; None when tracing
    is off or outside a request."""
    return _trace.get()


def _build(conf: TracingSettings) -> TracerProvider:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )
    except ImportError as exc:
        raise TracingUnavailable(
            f"tracing is enabled but OpenTelemetry cannot be imported ({exc}); "
            "install it with: pip install 'taskgate[tracing]'"
        ) from exc
    exporter: SpanExporter
    if conf.exporter == "console":
        exporter = ConsoleSpanExporter()
    else:  # no endpoint: the exporter reads OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT
        exporter = OTLPSpanExporter(endpoint=_traces_url(conf.endpoint) if conf.endpoint else None)
    provider = TracerProvider(resource=Resource.create({"service.name": conf.service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _traces_url(endpoint: str) -> str:
    """The collector's URL as given, or ``/v1/traces`` on it when it has no path (as the
    OTEL_EXPORTER_OTLP_ENDPOINT variable is read)."""
    if urlsplit(endpoint).path.strip("/"):
        return endpoint
    return endpoint.rstrip("/") + "/v1/traces"


class Tracing:
    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer = provider.get_tracer("taskgate", __version__)
        self.propagator = TraceContextTextMapPropagator()

    def flush(self, timeout: float = 5.0) -> None:
        """Export the spans still batched. The HTTP server calls it as it stops: uvicorn
        ends the process by the signal it caught, which skips the SDK's exit hook."""
        self.provider.force_flush(int(timeout * 1000))

    @contextlib.contextmanager
    def request(self, scope: dict[str, Any]) -> Iterator[Span]:
        """The span of one HTTP request, current while the app answers it; a child of the
        caller's span when the request carries a ``traceparent``. :meth:`answered` names it
        once the router has matched the route."""
        from opentelemetry.trace import SpanKind

        carrier = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope["headers"]
            if k in _PROPAGATED
        }
        parent = self.propagator.extract(carrier)
        with self.tracer.start_as_current_span(scope["method"], parent, SpanKind.SERVER) as span:
            here: dict[str, str] = {}
            self.propagator.inject(here)
            token = _trace.set(here.get("traceparent"))
            try:
                yield span
            finally:
                _trace.reset(token)

    @staticmethod
    def answered(span: Span, scope: dict[str, Any], api: str, template: str, status: int) -> None:
        from opentelemetry.trace import StatusCode

        method = scope["method"]
        matched = template != "unmatched"
        span.update_name(f"{method} {template}" if matched else method)
        span.set_attributes(
            {
                "http.request.method": method,
                "url.path": scope["path"],
                "http.response.status_code": status,
                "taskgate.api": api,
            }
        )
        if matched:
            span.set_attribute("http.route", template)
        if status >= 500:
            span.set_status(StatusCode.ERROR)

    @contextlib.contextmanager
    def attempt(
        self, task: Task, route: str, instance: str
    ) -> Iterator[Callable[[Outcome | None], None]]:
        """The span of one attempt, a child of the request that submitted the task (its
        ``trace``), or a root span. The caller tells it the outcome the attempt built; an
        error ending (a retry too) sets the span's status to ERROR."""
        from opentelemetry.trace import SpanKind, StatusCode

        parent = self.propagator.extract({"traceparent": task.trace} if task.trace else {})
        attributes: dict[str, str | int] = {
            "taskgate.task_id": task.id,
            "taskgate.route": route,
            "taskgate.instance": instance,
            "taskgate.attempt": task.attempts,
        }
        with self.tracer.start_as_current_span(
            f"attempt {route}", parent, SpanKind.CONSUMER, attributes
        ) as span:

            def ended(outcome: Outcome | None) -> None:
                if outcome is None:
                    return
                span.set_attribute("taskgate.outcome", outcome.label)
                if outcome.error:
                    kind = str(outcome.error.get("type", "error"))
                    span.set_attribute("error.type", kind)
                    span.set_status(StatusCode.ERROR, f"{kind}: {outcome.error.get('message')}")

            yield ended
