"""The OpenAI dialect (``/openai/v1``) driven by the official ``openai`` SDK against a real
server process, whose routes are the mock provider and the ``openai`` provider in front of
the fake OpenAI server of this test process. Every call must also be a task of the native API."""

from __future__ import annotations

import base64
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from taskgate.providers.mock import mock_transcript
from tests.e2e.conftest import Server, mock_route, until
from tests.fakes import in_thread
from tests.fakes.openai_media import fake_transcript
from tests.fakes.openai_server import FakeOpenAI, fake_embedding
from tests.fakes.shelf import fake_image

SECRET = "sk-e2e-openai-dialect-77c1d2"
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(64))
HELLO = [{"role": "user", "content": "hello there"}]
RETRY = {"max_attempts": 3, "backoff_base": 0.05, "backoff_max": 0.2}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with in_thread(FakeOpenAI(key=SECRET)) as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[Server]:
    upstream = {
        "name": "upstream",
        "models": ["gpt-*", "deepseek-*", "dall-e-*", "gpt-image-*", "whisper-*", "text-embed*"],
        "provider": "openai",
        "instances": [{"name": "fake-1", "endpoint": fake.base_url, "secret_env": "FAKE_KEY"}],
        "timeout": 30,
        "retry": RETRY,
        "options": {"output_urls_private": True},  # the fake serves its images on loopback
    }
    narrow = mock_route("narrow", instances=[{"name": "n1", "max_concurrency": 1}])
    flaky = mock_route("flaky", health={"failure_threshold": 1000, "cooldown": 0.1})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAKE_KEY", SECRET)
        s = Server(
            tmp_path_factory.mktemp("openai-dialect"), [mock_route(), narrow, flaky, upstream]
        )
        s.start()
    yield s
    s.stop(kill=True)


@pytest.fixture(scope="module")
def key(server: Server) -> str:
    return server.create_key("acme")


@pytest.fixture
def client(server: Server, key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/openai/v1", api_key=key, max_retries=0) as c:
        yield c


@pytest.fixture
def native(server: Server, key: str) -> Iterator[httpx.Client]:
    with server.client(key) as c:
        yield c


def task_of(native: httpx.Client, task_id: str) -> dict[str, Any]:
    r = native.get(f"/v1/tasks/{task_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def newest(native: httpx.Client, **filters: Any) -> dict[str, Any]:
    return dict(native.get("/v1/tasks", params={"limit": 1, **filters}).json()["data"][0])


# --- chat ----------------------------------------------------------------------------------


def test_chat_completion_is_a_task_answered_in_openai_shape(
    client: openai.OpenAI, native: httpx.Client, fake: FakeOpenAI, server: Server
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=HELLO, temperature=0.2
    )
    reply = raw.parse()
    task_id = raw.headers["x-taskgate-task-id"]
    assert reply.id == f"chatcmpl-{task_id}" and reply.model == "gpt-4o"
    assert reply.choices[0].message.content == "echo: hello there"
    assert reply.choices[0].finish_reason == "stop"
    usage = reply.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (2, 3, 5)
    task = task_of(native, task_id)
    assert (task["status"], task["kind"], task["priority"]) == ("SUCCESS", "chat", "default")
    assert task["input"] == {"messages": HELLO} and task["params"] == {"temperature": 0.2}
    assert [a["outcome"] for a in task["history"]] == ["success"]
    assert fake.requests[-1].body["temperature"] == 0.2
    assert SECRET not in native.get(f"/v1/tasks/{task_id}").text
    assert SECRET not in server.log.read_text()


def test_reasoning_and_tool_calls(client: openai.OpenAI) -> None:
    thought = client.chat.completions.create(model="deepseek-r1", messages=HELLO)
    message = thought.choices[0].message
    assert message.content == "echo: hello there"
    assert getattr(message, "reasoning_content", None) == "thinking about: hello there"
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
    called = client.chat.completions.create(model="gpt-4o", messages=HELLO, tools=[tool])
    assert called.choices[0].finish_reason == "tool_calls"
    [call] = called.choices[0].message.tool_calls or []
    assert call.function.name == "lookup"
    assert call.function.arguments == '{"text": "hello there"}'


def test_stream_sends_each_token_as_the_backend_makes_it(
    client: openai.OpenAI, native: httpx.Client
) -> None:
    """The mock streams 5 words 300 ms apart: each must reach the client on its own, when
    it is made, not all together at the end."""
    started = time.monotonic()
    stream = client.chat.completions.create(
        model="mock",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"mock_latency_ms": 1500},
    )
    arrivals: list[tuple[float, str]] = []
    chunks = []
    for chunk in stream:
        chunks.append(chunk)
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append((time.monotonic() - started, chunk.choices[0].delta.content))
    assert [text for _, text in arrivals] == ["mock ", "reply ", "to: ", "hello ", "there "]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(arrivals)]
    assert sum(gap > 0.1 for gap in gaps) >= 3, gaps  # one by one (a busy client may merge two)
    assert arrivals[-1][0] - arrivals[0][0] > 0.8, arrivals  # the first long before the last
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    task = task_of(native, chunks[0].id.removeprefix("chatcmpl-"))
    assert task["status"] == "SUCCESS" and task["params"]["stream"] is True


def test_stream_of_a_streaming_backend_keeps_reasoning_and_tool_calls(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    stream = client.chat.completions.create(model="deepseek-r1", messages=HELLO, stream=True)
    parts: dict[str, str] = {"content": "", "reasoning_content": ""}
    for chunk in stream:
        delta = chunk.choices[0].delta if chunk.choices else None
        for name in parts:
            parts[name] += (getattr(delta, name, None) or "") if delta else ""
    assert parts == {
        "content": "echo: hello there",
        "reasoning_content": "thinking about: hello there",
    }
    assert fake.requests[-1].body["stream"] is True  # the provider streamed from the backend
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
    chunks = list(
        client.chat.completions.create(model="gpt-4o", messages=HELLO, tools=[tool], stream=True)
    )
    calls = [
        c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls
    ]
    assert calls and calls[0][0].function.name == "lookup"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_stream_retried_after_some_tokens_sends_each_token_once(
    client: openai.OpenAI, native: httpx.Client, fake: FakeOpenAI
) -> None:
    fake.script("stream_error")  # the first attempt sends two words, then fails
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello there"
    history = task_of(native, chunks[0].id.removeprefix("chatcmpl-"))["history"]
    assert [a["outcome"] for a in history] == ["retry", "success"]
    fake.script("stream_error", "stream_error", "stream_error")
    with pytest.raises(openai.APIError, match="crashed mid-reply"):
        list(client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=True))


# --- failures and refusals -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mock_error", "status", "code"),
    [
        ("invalid_input", 400, "mock_invalid_input"),
        ("content_refused", 400, "mock_content_refused"),
        ("rate_limited", 429, "mock_rate_limited"),
        ("overloaded", 503, "mock_overloaded"),
        ("auth_failed", 502, "mock_auth_failed"),
        ("timeout", 504, "mock_timeout"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_a_failed_task_is_an_openai_error_with_its_status(
    client: openai.OpenAI, mock_error: str, status: int, code: str, stream: bool
) -> None:
    """A task that fails before any token gets the HTTP status of its error, streamed or not.
    (On a route whose instance never cools down, so that every failure comes at once.)"""
    extra = {"mock_error": mock_error, "mock_fail_attempts": 9, "mock_retry_after": 0.1}
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="flaky", messages=HELLO, stream=stream, extra_body=extra
        )
    err = caught.value
    assert err.status_code == status
    assert isinstance(err.body, dict) and err.body["code"] == code
    permanent = mock_error in ("invalid_input", "content_refused", "auth_failed")
    assert (err.response.headers.get("x-should-retry") == "false") is permanent
    if mock_error == "rate_limited":
        assert isinstance(err, openai.RateLimitError)
        assert err.response.headers["retry-after"] == "1"


def test_refusals_come_in_openai_shape(
    client: openai.OpenAI, native: httpx.Client, server: Server
) -> None:
    before = len(native.get("/v1/tasks").json()["data"])
    bad_key = openai.OpenAI(base_url=f"{server.url}/openai/v1", api_key="tg_nope", max_retries=0)
    with bad_key, pytest.raises(openai.AuthenticationError) as auth:
        bad_key.chat.completions.create(model="mock", messages=HELLO)
    assert auth.value.code == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as unknown:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert (unknown.value.code, unknown.value.param) == ("model_not_found", "model")
    assert "unknown model 'no-such-model'" in unknown.value.message
    for bad in ({"messages": []}, {"n": 2}, {"messages": [{"role": "robot", "content": "x"}]}):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(**{"model": "mock", "messages": HELLO, **bad})
    with pytest.raises(openai.BadRequestError) as schema:
        client.images.generate(model="dall-e-2", prompt="x", n=0)
    assert schema.value.param == "n"
    with pytest.raises(openai.BadRequestError, match="X-Taskgate-Priority"):
        client.with_options(default_headers={"X-Taskgate-Priority": "urgent"}).embeddings.create(
            model="mock", input="x"
        )
    with pytest.raises(openai.NotFoundError):
        client.files.list()
    r = native.post(
        "/openai/v1/chat/completions",
        content=b"{oops",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert len(native.get("/v1/tasks").json()["data"]) == before  # nothing was queued


def test_a_task_that_waits_past_its_queue_timeout_is_a_504(
    client: openai.OpenAI, native: httpx.Client
) -> None:
    blocker = native.post(
        "/v1/tasks",
        json={"kind": "chat", "model": "narrow", "input": "x", "params": {"mock_latency_ms": 3000}},
    ).json()
    waiting = client.with_options(default_headers={"X-Taskgate-Queue-Timeout": "0.3"})
    with pytest.raises(openai.InternalServerError) as caught:
        waiting.chat.completions.create(model="narrow", messages=HELLO)
    assert caught.value.status_code == 504
    task = task_of(native, caught.value.response.headers["x-taskgate-task-id"])
    assert task["status"] == "TIMEOUT" and task["attempts"] == 0
    native.delete(f"/v1/tasks/{blocker['id']}")


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_hangs_up_cancels_its_task(
    server: Server, key: str, native: httpx.Client, stream: bool
) -> None:
    body = {"model": "mock", "messages": HELLO, "stream": stream, "mock_latency_ms": 20_000}
    headers = {"Authorization": f"Bearer {key}"}
    url = f"{server.url}/openai/v1/chat/completions"
    if stream:  # the first word comes after 4 s; the client leaves once the stream has begun
        with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as r:
            assert r.status_code == 200
            next(r.iter_lines())
    else:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url, json=body, headers=headers, timeout=1.0)
    task_id = newest(native)["id"]
    until(lambda: task_of(native, task_id)["status"] == "CANCELLED")


# --- images, audio, embeddings, models -------------------------------------------------------


def test_images_as_taskgate_urls_and_as_base64(
    client: openai.OpenAI, native: httpx.Client, server: Server, key: str
) -> None:
    png = fake_image("a red fox")
    by_url = client.images.generate(model="dall-e-2", prompt="a red fox", n=2)
    urls = [item.url or "" for item in by_url.data or []]
    assert len(urls) == 2 and all(u.startswith(f"{server.url}/v1/files/") for u in urls)
    assert httpx.get(urls[0], headers={"Authorization": f"Bearer {key}"}).content == png
    assert httpx.get(urls[0]).content == png  # a signed link: no key needed
    unsigned = urls[0].split("?")[0]
    assert httpx.get(unsigned).status_code == 401
    stranger = server.create_key("other-tenant")
    assert httpx.get(unsigned, headers={"Authorization": f"Bearer {stranger}"}).status_code == 404
    inline = client.images.generate(
        model="gpt-image-1", prompt="a red fox", response_format="b64_json"
    )
    assert base64.b64decode((inline.data or [])[0].b64_json or "") == png
    revised = client.images.generate(model="dall-e-3", prompt="a red fox")
    assert (revised.data or [])[0].revised_prompt == "A detailed picture of a red fox"
    assert newest(native)["kind"] == "image"


def test_transcription_of_an_upload(
    client: openai.OpenAI, native: httpx.Client, tmp_path: Path
) -> None:
    clip = tmp_path / "clip.wav"
    clip.write_bytes(WAV)
    with clip.open("rb") as f:
        reply = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert reply.text == fake_transcript(WAV)
    task = newest(native, kind="transcription")
    assert task["status"] == "SUCCESS"
    upload = native.get(f"/v1/files/{task['input']['file']['file_id']}")
    assert upload.content == WAV
    text = client.audio.transcriptions.create(
        model="whisper-1", file=("clip.wav", WAV, "audio/wav"), response_format="text"
    )
    assert text.strip() == fake_transcript(WAV)
    verbose = client.audio.transcriptions.create(
        model="whisper-1", file=("clip.wav", WAV), response_format="verbose_json"
    )
    assert verbose.text == fake_transcript(WAV) and verbose.segments
    mock = client.audio.transcriptions.create(model="mock", file=("clip.wav", WAV))
    assert mock.text == mock_transcript(WAV)  # the default config's provider hears it too


def test_embeddings_as_floats_and_as_the_sdks_default_base64(
    client: openai.OpenAI, native: httpx.Client, fake: FakeOpenAI
) -> None:
    texts = ["first text", "second text"]
    floats = client.embeddings.create(
        model="text-embedding-3-small", input=texts, dimensions=6, encoding_format="float"
    )
    assert [e.embedding for e in floats.data] == [fake_embedding(t, 6) for t in texts]
    assert floats.usage.prompt_tokens == 4
    packed = client.embeddings.create(model="text-embedding-3-small", input=texts, dimensions=6)
    assert fake.requests[-1].body["input"] == texts
    for got, text in zip(packed.data, texts, strict=True):
        assert got.embedding == pytest.approx(fake_embedding(text, 6), abs=1e-6)
    mock = client.embeddings.create(model="mock", input=["a", "b", "a"], dimensions=3)
    assert [len(e.embedding) for e in mock.data] == [3, 3, 3]
    assert mock.data[0].embedding == pytest.approx(mock.data[2].embedding)
    assert newest(native)["kind"] == "embedding"


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    listed = {m.id: m.owned_by for m in client.models.list()}
    assert listed["mock"] == "mock"
    assert not [m for m in listed if any(c in m for c in "*?[")]  # no glob is a model
    assert client.models.retrieve("gpt-4o").owned_by == "upstream"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nothing-routes-this")


# --- every call is a task; the shared path ----------------------------------------------------


def test_every_call_is_a_task_at_its_priority(client: openai.OpenAI, native: httpx.Client) -> None:
    urgent = client.with_options(default_headers={"X-Taskgate-Priority": "critical"})
    ids = [
        urgent.chat.completions.with_raw_response.create(model="mock", messages=HELLO),
        urgent.embeddings.with_raw_response.create(model="mock", input="x"),
        urgent.images.with_raw_response.generate(model="mock", prompt="x"),
    ]
    for raw in ids:
        task = task_of(native, raw.headers["x-taskgate-task-id"])
        assert (task["status"], task["priority"]) == ("SUCCESS", "critical")
    listed = [t["id"] for t in native.get("/v1/tasks", params={"limit": 3}).json()["data"]]
    assert listed == [raw.headers["x-taskgate-task-id"] for raw in reversed(ids)]


def test_an_idempotency_key_answers_again_with_the_same_task(
    client: openai.OpenAI, native: httpx.Client
) -> None:
    once = client.with_options(default_headers={"Idempotency-Key": "order-42"})
    first = once.chat.completions.create(model="mock", messages=HELLO)
    started = time.monotonic()
    again = once.chat.completions.create(model="mock", messages=HELLO)
    assert again.id == first.id and time.monotonic() - started < 1  # no wait for an event
    with pytest.raises(openai.ConflictError):
        once.chat.completions.create(model="mock", messages=[{"role": "user", "content": "x"}])
    assert task_of(native, first.id.removeprefix("chatcmpl-"))["idempotency_key"] == "order-42"


def test_v1_chat_completions_takes_openai_bodies_and_leaves_others_to_ai_task_system(
    server: Server, key: str, native: httpx.Client
) -> None:
    """The path OpenAI shares with AI Task System: a body with ``messages`` is OpenAI's (the
    SDK pointed at ``/v1``); ``{prompt, model}`` (JSON or a form) is AI Task System's (a
    batch)."""
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0) as plain:
        reply = plain.chat.completions.create(model="mock", messages=HELLO)
    assert reply.choices[0].message.content == "mock reply to: hello there"
    for body in (
        {"json": {"prompt": "hi", "model": "mock"}},
        {"data": {"prompt": "hi", "model": "mock"}},
    ):
        batch = native.post("/v1/chat/completions", **body)
        assert batch.status_code == 200, batch.text
        assert "choices" not in batch.json() and batch.json()["task_ids"]
        assert task_of(native, batch.json()["task_ids"][0])["batch_id"] == batch.json()["batch_id"]
