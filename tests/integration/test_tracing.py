"""OpenTelemetry tracing through the HTTP app and the scheduler in one process (``serve``):
a request span per HTTP request, an attempt span per attempt, one trace from the request
that submitted a task to the attempts that ran it (through the task's ``trace`` column),
joined to the caller's trace when the request carries a ``traceparent``. Off by default:
then there are no spans and no trace on the task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from taskgate.api import create_app
from taskgate.config import Settings
from taskgate.ops import tracing
from taskgate.store import SqlStore
from tests.e2e.conftest import FAST_SCHEDULER, mock_route

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span this process ends, kept in memory (whether or not tracing is enabled)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_provider(None)
        provider.shutdown()


@asynccontextmanager
async def served(
    tmp_path: Path, **tracing_conf: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, SqlStore]]:
    """The app with its scheduler, on SQLite in ``tmp_path``, and a client with a key."""
    settings = Settings.model_validate(
        {
            "store_url": f"sqlite:///{tmp_path}/taskgate.db",
            "files_url": f"file://{tmp_path}/files",
            "log_level": "warning",
            "scheduler": FAST_SCHEDULER,
            "routes": [mock_route()],
            "tracing": tracing_conf,
        }
    )
    app = create_app(settings, grace=1.0)
    async with app.router.lifespan_context(app):
        store: SqlStore = app.state.gateway.store
        _, secret = await store.keys.create("acme", "test")
        transport = httpx.ASGITransport(app)
        headers = {"authorization": f"Bearer {secret}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://tg", headers=headers
        ) as client:
            yield client, store


async def run_task(
    client: httpx.AsyncClient, params: dict[str, Any] | None = None, **headers: str
) -> str:
    """Submit a task, wait for it to succeed; its id."""
    body = {"kind": "chat", "model": "mock", "input": "hello", "params": params or {}}
    r = await client.post("/v1/tasks", json=body, headers=headers)
    assert r.status_code == 202, r.text
    task_id: str = r.json()["id"]
    r = await client.get(f"/v1/tasks/{task_id}", params={"wait": 20})
    assert r.json()["status"] == "SUCCESS", r.text
    return task_id


async def attempt_spans(spans: InMemorySpanExporter, count: int) -> list[ReadableSpan]:
    """The attempt spans, once ``count`` have ended (a span ends after the task's answer)."""
    for _ in range(500):
        found = [s for s in spans.get_finished_spans() if s.name.startswith("attempt ")]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {count} attempt spans: {spans.get_finished_spans()}")


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name == name]


async def test_a_request_and_the_attempts_it_caused_are_one_trace(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    async with served(tmp_path, enabled=True) as (client, store):
        task_id = await run_task(client, {"mock_fail_attempts": 1})  # then the second succeeds
        attempts = await attempt_spans(spans, 2)
        task = await store.tasks.get(task_id)

    [submit] = named(spans, "POST /v1/tasks")
    assert submit.kind is SpanKind.SERVER and submit.parent is None  # no traceparent came
    assert submit.context is not None
    assert dict(submit.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": "/v1/tasks",
        "url.path": "/v1/tasks",
        "http.response.status_code": 202,
        "taskgate.api": "native",
    }
    [wait] = named(spans, "GET /v1/tasks/{task_id}")
    assert wait.attributes and wait.attributes["url.path"] == f"/v1/tasks/{task_id}"

    trace_id = submit.context.trace_id
    assert task is not None
    ctx = submit.context
    assert task.trace == f"00-{trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
    by_attempt = {s.attributes["taskgate.attempt"]: s for s in attempts if s.attributes}
    for number, outcome in ((1, "retry"), (2, "success")):
        span = by_attempt[number]
        assert span.name == "attempt mock" and span.kind is SpanKind.CONSUMER
        assert span.context is not None and span.context.trace_id == trace_id
        assert span.parent is not None and span.parent.span_id == submit.context.span_id
        assert dict(span.attributes or {}) == {
            "taskgate.task_id": task_id,
            "taskgate.route": "mock",
            "taskgate.instance": "mock-1",
            "taskgate.attempt": number,
            "taskgate.outcome": outcome,
            **({"error.type": "overloaded"} if number == 1 else {}),
        }
    assert by_attempt[1].status.status_code is StatusCode.ERROR
    assert by_attempt[2].status.status_code is StatusCode.UNSET


async def test_a_request_with_a_traceparent_joins_the_caller_s_trace(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    async with served(tmp_path, enabled=True) as (client, store):
        task_id = await run_task(client, traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")
        [attempt] = await attempt_spans(spans, 1)
        task = await store.tasks.get(task_id)

    [submit] = named(spans, "POST /v1/tasks")
    assert submit.context is not None and submit.parent is not None
    assert f"{submit.context.trace_id:032x}" == CALLER_TRACE
    assert f"{submit.parent.span_id:016x}" == CALLER_SPAN and submit.parent.is_remote
    assert task is not None and task.trace is not None and CALLER_TRACE in task.trace
    assert attempt.context is not None and f"{attempt.context.trace_id:032x}" == CALLER_TRACE
    assert attempt.parent is not None and attempt.parent.span_id == submit.context.span_id
    assert attempt.attributes and attempt.attributes["taskgate.outcome"] == "success"


async def test_an_unmatched_path_and_a_refusal_are_spans_too(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    async with served(tmp_path, enabled=True) as (client, _):
        assert (await client.get("/nowhere")).status_code == 404
        r = await client.post("/v1/tasks", json={"kind": "chat", "model": "gpt-9", "input": "x"})
        assert r.status_code == 400

    [unmatched] = named(spans, "GET")
    assert unmatched.attributes and unmatched.attributes["url.path"] == "/nowhere"
    assert "http.route" not in unmatched.attributes
    [refused] = named(spans, "POST /v1/tasks")
    assert refused.attributes and refused.attributes["http.response.status_code"] == 400
    assert refused.status.status_code is StatusCode.UNSET  # a client's error, not ours
    assert not [s for s in spans.get_finished_spans() if s.name.startswith("attempt ")]


async def test_tracing_is_off_by_default(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    async with served(tmp_path) as (client, store):
        task_id = await run_task(client, traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")
        task = await store.tasks.get(task_id)
    assert spans.get_finished_spans() == ()
    assert task is not None and task.trace is None
