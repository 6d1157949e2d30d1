"""Malformed and out-of-range requests to every dialect's submit endpoints, against a real
server: each gets a clear 4xx (never a 5xx) with a JSON body in the shape of the dialect
called, and nothing is stored (no task, no conversation, no file).

The table covers broken JSON, nesting far deeper than any parser allows, numbers that are
not finite (``NaN``, ``Infinity`` written literally, ``1e400``) or absurd (``1e20`` seconds,
``-1``), invalid UTF-8, the wrong content type, bodies that are not objects, and bodies over
``max_body_bytes`` (announced, and streamed without a length).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, mock_route

MAX_BODY = 1_000_000
JSON_TYPE = "application/json"
BOUNDARY = "taskgateboundary"
FORM_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


# --- the error shape of each dialect ---------------------------------------------------------


def native_shape(body: Any) -> None:
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["type"], str) and body["error"]["message"], body


def openai_shape(body: Any) -> None:
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"message", "type", "param", "code"} <= set(error), body
    assert isinstance(error["message"], str) and error["message"], body
    assert error["type"] in ("invalid_request_error", "server_error"), body


def detail_shape(body: Any) -> None:  # AIFlow and AI Task System: FastAPI's, plus ours
    assert isinstance(body["detail"], str) and body["detail"], body
    assert isinstance(body["error"]["type"], str) and body["error"]["message"], body


def envelope_shape(body: Any) -> None:  # Volcengine AI Server
    assert set(body) == {"success", "data", "message"}, body
    assert body["success"] is False and body["data"] is None, body
    assert isinstance(body["message"], str) and body["message"], body


Shape = Callable[[Any], None]


@dataclass(frozen=True)
class Endpoint:
    """A JSON submit endpoint: a valid body's fields (raw JSON text), the number fields that
    cases break (``a.b`` is field ``b`` of object ``a``), and a field whose value the
    dialect keeps (so a deep or undecodable value there cannot be ignored)."""

    name: str
    path: str
    shape: Shape
    fields: dict[str, str]
    numbers: tuple[str, ...]
    kept: str

    def body(self, **over: str) -> bytes:
        fields = dict(self.fields)
        for name, raw in over.items():
            outer, _, inner = name.partition(".")
            fields[outer] = f'{{"{inner}": {raw}}}' if inner else raw
        text = "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"
        return text.encode("utf-8", "surrogateescape")  # "\udcff" is the byte 0xff


HI = '"hi"'
CHAT = {"model": '"mock"', "messages": '[{"role": "user", "content": "hi"}]'}
ENDPOINTS = [
    Endpoint(
        "native-task",
        "/v1/tasks",
        native_shape,
        {"kind": '"chat"', "model": '"mock"', "input": HI},
        ("timeout", "queue_timeout", "params.temperature"),
        "input",
    ),
    Endpoint(
        "native-batch",
        "/v1/batches",
        native_shape,
        {"kind": '"chat"', "models": '["mock", "mock-2"]', "input": HI},
        ("timeout", "queue_timeout", "params.temperature"),
        "input",
    ),
    Endpoint(
        "openai-chat",
        "/openai/v1/chat/completions",
        openai_shape,
        CHAT,
        ("temperature", "max_tokens", "mock_latency_ms"),
        "user",  # a field it does not read goes to the task's params
    ),
    Endpoint(
        "openai-chat-shared",  # OpenAI's body on the path it shares with AI Task System
        "/v1/chat/completions",
        openai_shape,
        CHAT,
        ("temperature", "max_tokens"),
        "user",
    ),
    Endpoint(
        "openai-embeddings",
        "/openai/v1/embeddings",
        openai_shape,
        {"model": '"mock"', "input": HI},
        ("dimensions",),
        "input",
    ),
    Endpoint(
        "openai-images",
        "/openai/v1/images/generations",
        openai_shape,
        {"model": '"mock"', "prompt": HI},
        ("n", "seed"),
        "prompt",
    ),
    Endpoint(
        "aiflow-json",
        "/api/v1/tasks_json",
        detail_shape,
        {"task_type": '"text-generation"', "model_spec": '{"name": "mock"}', "payload": "{}"},
        ("inference_params.max_tokens", "inference_params.mock_latency_ms"),
        "payload.prompt",
    ),
    Endpoint(
        "volcengine-text",
        "/api/v1/ai/text/task",
        envelope_shape,
        {"prompt": HI, "model": '"mock"', "provider": '"volcengine"'},
        ("max_tokens", "temperature", "seed"),
        "prompt",
    ),
    Endpoint(
        "volcengine-image",
        "/api/v1/ai/image/task",
        envelope_shape,
        {"prompt": HI, "model": '"mock"', "provider": '"volcengine"'},
        ("temperature",),
        "prompt",
    ),
    Endpoint(
        "tasksystem-chat",
        "/v1/chat/completions",
        detail_shape,
        {"prompt": HI, "model": '"mock"'},
        ("n",),  # no number of its own: a field it ignores, for the JSON's sake
        "prompt",
    ),
    Endpoint(
        "tasksystem-images",
        "/v1/images/generations",
        detail_shape,
        {"prompt": HI, "model": '"mock"'},
        ("n",),
        "prompt",
    ),
]
NON_FINITE = ("NaN", "Infinity", "-Infinity", "1e400", "-1e400")
ABSURD = {"seed": ("1e20", "-1e20")}  # -1 is valid there (Ark's "random"); all others:
ABSURD_DEFAULT = ("1e20", "-1")


@dataclass(frozen=True)
class Case:
    id: str
    path: str
    shape: Shape
    content: bytes | Callable[[], Iterator[bytes]] = b""
    content_type: str | None = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None  # the exact status, where one is documented

    def send(self, c: httpx.Client) -> httpx.Response:
        headers = dict(self.headers)
        if self.content_type is not None:
            headers["content-type"] = self.content_type
        content = self.content() if callable(self.content) else self.content
        return c.post(self.path, content=content, headers=headers)


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def streamed(size: int, head: bytes = b"") -> Callable[[], Iterator[bytes]]:
    """A body sent in chunks without a Content-Length, so only the reading can stop it."""

    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(0, size, 65_536):
            yield b"a" * 65_536

    return chunks


def json_cases(e: Endpoint) -> Iterator[Case]:
    """What every JSON endpoint must refuse. On the shared chat path, a body that cannot be
    read as OpenAI's is AI Task System's, so that dialect's shape applies."""
    unread = detail_shape if e.name == "openai-chat-shared" else e.shape

    def case(id_: str, content: Any, shape: Shape = unread, **kw: Any) -> Case:
        return Case(f"{e.name}-{id_}", e.path, shape, content, **kw)

    body = e.body()
    yield case("malformed", body[:-3])
    yield case("trailing-garbage", body + b"}}")
    yield case("deep-array-10000", deep(10_000).encode())
    yield case("deep-field-10000", e.body(**{e.kept: deep(10_000)}))
    yield case("deep-field-300", e.body(**{e.kept: deep(300)}), e.shape)  # parses; not storable
    yield case("invalid-utf8", e.body(**{e.kept: '"h\udcff\udcfei"'}))
    yield case("lone-surrogate", e.body(**{e.kept: '"h\\ud800i"'}))
    yield case("empty", b"")
    yield case("array", b"[" + body + b"]")
    yield case("string", b'"hello"')
    yield case("number", b"42")
    yield case("null", b"null")
    yield case("text-plain", b"hello", content_type="text/plain")
    if e.path != "/v1/chat/completions":  # AI Task System's chat reads any body as JSON
        yield case("text-plain-json", body, content_type="text/plain")
    yield case("multipart", form_body({"model": "mock"}), content_type=FORM_TYPE)
    yield case("oversized", b'{"x": "' + b"a" * (MAX_BODY + 1) + b'"}', status=413)
    yield case("oversized-streamed", streamed(MAX_BODY + 100_000, b'{"x": "'), status=413)
    for name in e.numbers:
        for literal in NON_FINITE:
            yield case(f"{name}={literal}", e.body(**{name: literal}))
        if e.name.startswith("tasksystem"):
            continue  # it has no number to bound: one it ignores may be anything finite
        for literal in ABSURD.get(name, ABSURD_DEFAULT):
            yield case(f"{name}={literal}", e.body(**{name: literal}), e.shape)


def form_body(fields: dict[str, str | bytes], files: dict[str, bytes] | None = None) -> bytes:
    parts = []
    for name, value in fields.items():
        data = value.encode() if isinstance(value, str) else value
        head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(head.encode() + data + b"\r\n")
    for name, data in (files or {}).items():
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{name}.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


AUDIO = b"RIFF fake wave bytes"
AIFLOW_FORM: dict[str, str | bytes] = {
    "task_type": "text-generation",
    "model_spec": '{"name": "mock"}',
}


def file_head(name: str) -> bytes:
    """A multipart body's start, up to the bytes of a file part that never ends."""
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="a.bin"'
        "\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()


def transcription_cases() -> Iterator[Case]:
    path, shape = "/openai/v1/audio/transcriptions", openai_shape

    def case(id_: str, content: Any, **kw: Any) -> Case:
        return Case(f"openai-transcriptions-{id_}", path, shape, content, **kw)

    def form(**over: str | bytes) -> bytes:
        return form_body({"model": "mock", **over}, {"file": AUDIO})

    for literal in ("nan", "inf", "-inf", "1e400", "1e20", "-1", "NaN"):
        yield case(f"temperature={literal}", form(temperature=literal), content_type=FORM_TYPE)
    yield case("unknown-model", form(model="no-such-model"), content_type=FORM_TYPE)
    yield case("bad-format", form(response_format="xml"), content_type=FORM_TYPE)
    for value in ("1e20", "-1", "nan", "inf", "1e400"):
        queue = {"x-taskgate-queue-timeout": value}
        yield case(f"queue-timeout={value}", form(), content_type=FORM_TYPE, headers=queue)
    long_key = {"idempotency-key": "k" * 300}  # refused by the gateway, after the upload
    yield case("idempotency-key-too-long", form(), content_type=FORM_TYPE, headers=long_key)
    yield case("no-file", form_body({"model": "mock"}), content_type=FORM_TYPE)
    yield case("json", b'{"model": "mock"}')
    yield case("text-plain", b"hello", content_type="text/plain")
    yield case("empty", b"", content_type=FORM_TYPE)
    yield case("broken-multipart", b"--nope\r\ngarbage", content_type=FORM_TYPE)
    yield case("no-boundary", form(), content_type="multipart/form-data")
    yield case("invalid-utf8-model", form(model=b"mo\xffck"), content_type=FORM_TYPE)
    big = form_body({"model": "mock"}, {"file": b"a" * (MAX_BODY + 1)})
    yield case("oversized", big, content_type=FORM_TYPE, status=413)
    yield case(
        "oversized-streamed",
        streamed(MAX_BODY + 100_000, file_head("file")),
        content_type=FORM_TYPE,
        status=413,
    )


def aiflow_form_cases() -> Iterator[Case]:
    path, shape = "/api/v1/tasks_form", detail_shape

    def case(id_: str, content: Any, **kw: Any) -> Case:
        return Case(f"aiflow-form-{id_}", path, shape, content, **kw)

    def form(files: dict[str, bytes] | None = None, **over: str | bytes) -> bytes:
        return form_body({**AIFLOW_FORM, **over}, files)

    kw: dict[str, Any] = {"content_type": FORM_TYPE}
    yield case("model-spec-malformed", form(model_spec='{"name": '), **kw)
    yield case("model-spec-array", form(model_spec="[1]"), **kw)
    yield case("payload-not-object", form(payload='"hi"'), **kw)
    yield case("payload-deep", form(payload='{"x": ' + deep(10_000) + "}"), **kw)
    for literal in ("NaN", "Infinity", "1e400", "1e20", "-1"):
        params = f'{{"max_tokens": {literal}}}'
        yield case(f"max_tokens={literal}", form(inference_params=params), **kw)
    yield case("invalid-utf8-task-type", form(task_type=b"text-gen\xff"), **kw)
    image = {"files": b"\x89PNG not really"}
    yield case("unknown-model-with-file", form(image, model_spec='{"name": "nope"}'), **kw)
    hook = '{"url": "http://127.0.0.1:9/hook"}'  # refused by the gateway, after the upload
    yield case("callback-refused-with-file", form(image, callback=hook), **kw)
    big = {"files": b"a" * (MAX_BODY + 1)}
    yield case("oversized", form(big), status=413, **kw)
    yield case("oversized-streamed", streamed(MAX_BODY, file_head("files")), status=413, **kw)
    yield case("json", b'{"task_type": "text-generation", "model_spec": "{}"}')
    yield case("text-plain", b"hello", content_type="text/plain")
    yield case("empty", b"", **kw)
    yield case("broken-multipart", b"--nope\r\ngarbage", **kw)


def tasksystem_form_cases() -> Iterator[Case]:
    kw: dict[str, Any] = {"content_type": FORM_TYPE}
    path = "/v1/chat/completions"
    yield Case(
        "tasksystem-chat-form-no-prompt", path, detail_shape, form_body({"model": "m"}), **kw
    )
    yield Case("tasksystem-chat-form-broken", path, detail_shape, b"--nope\r\ngarbage", **kw)
    urlencoded = {"content_type": "application/x-www-form-urlencoded"}
    yield Case(
        "tasksystem-chat-urlencoded-no-model", path, detail_shape, b"prompt=hi", **urlencoded
    )


def header_cases() -> Iterator[Case]:
    """The OpenAI dialect's own headers, with a valid body."""
    for e in ENDPOINTS:
        if e.name not in ("openai-chat", "openai-embeddings"):
            continue
        for value in ("1e20", "-1", "0", "nan", "inf", "1e400", "soon"):
            queue = {"x-taskgate-queue-timeout": value}
            yield Case(f"{e.name}-queue-timeout={value}", e.path, e.shape, e.body(), headers=queue)
        priority = {"x-taskgate-priority": "urgent"}
        yield Case(f"{e.name}-priority", e.path, e.shape, e.body(), headers=priority)


def cases() -> list[Case]:
    out = [c for e in ENDPOINTS for c in json_cases(e)]
    out += [*transcription_cases(), *aiflow_form_cases(), *tasksystem_form_cases()]
    return out + list(header_cases())


CASES = cases()


# --- the server ------------------------------------------------------------------------------


@dataclass
class Running:
    server: Server
    admin: httpx.Client
    tenant: httpx.Client

    def stored(self) -> tuple[int, int, list[str]]:
        """Tasks and conversations (every tenant's), and the files on disk."""
        health = self.admin.get("/health")
        conversations = self.admin.get("/v1/conversations", params={"limit": 500})
        assert health.status_code == conversations.status_code == 200, health.text
        files = sorted(str(p) for p in (self.server.root / "files").rglob("*") if p.is_file())
        tasks = sum(health.json()["tasks"].values())
        return tasks, len(conversations.json()["data"]), files


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root: Path = tmp_path_factory.mktemp("malformed")
    server = Server(root, [mock_route()], max_body_bytes=MAX_BODY)
    server.start()
    try:
        admin = server.client(server.create_key("ops", admin=True))
        tenant = server.client(server.create_key("acme"))
        with admin, tenant:
            yield Running(server, admin, tenant)
    finally:
        server.stop(kill=True)


def test_the_valid_bodies_of_the_table_are_accepted(running: Running) -> None:
    """The table's bodies are wrong only where a case makes them so: each endpoint takes
    its valid body (so a refusal below is the case's doing, not a broken template)."""
    queue = {"x-taskgate-queue-timeout": "30"}
    for e in ENDPOINTS:
        headers = {"content-type": JSON_TYPE, **(queue if e.name.startswith("openai") else {})}
        r = running.tenant.post(e.path, content=e.body(), headers=headers)
        assert r.status_code < 300, (e.name, r.status_code, r.text)
    forms = {
        "/openai/v1/audio/transcriptions": form_body({"model": "mock"}, {"file": AUDIO}),
        "/api/v1/tasks_form": form_body(AIFLOW_FORM, {"files": b"\x89PNG not really"}),
        "/v1/chat/completions": form_body({"model": "mock", "prompt": "hi"}),
    }
    for path, content in forms.items():
        r = running.tenant.post(path, content=content, headers={"content-type": FORM_TYPE})
        assert r.status_code < 300, (path, r.status_code, r.text)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_malformed_request_is_a_clear_4xx_in_its_dialect_and_stores_nothing(
    running: Running, case: Case
) -> None:
    before = running.stored()
    r = case.send(running.tenant)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    if case.status is not None:
        assert r.status_code == case.status, r.text[:500]
    assert r.headers["content-type"].startswith(JSON_TYPE), r.headers
    case.shape(r.json())
    assert running.stored() == before
