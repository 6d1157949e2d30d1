"""Providers: the mock provider, the registry, and HTTP error classification."""

from __future__ import annotations

import dataclasses
import io
import threading
import wave
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from taskgate import errors
from taskgate.config import Instance, Route
from taskgate.providers import (
    Call,
    OutputFile,
    Provider,
    Result,
    build,
    lookup,
    register_inference_function,
    register_provider,
)
from taskgate.providers import registry as registry_module
from taskgate.providers.mock import MockProvider, mock_transcript


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Registrations made by a test vanish after it."""
    monkeypatch.setattr(registry_module, "_registry", dict(registry_module._registry))
    yield


def make_route(provider: str = "mock", instance: Instance | None = None, **options: Any) -> Route:
    return Route(
        name="r",
        models=["m-*"],
        provider=provider,
        instances=[instance or Instance(name="i1")],
        options=options,
    )


def make_call(
    route: Route | None = None,
    *,
    kind: str = "chat",
    input: Any = "hello world",
    task_id: str = "t1",
    attempt: int = 1,
    **params: Any,
) -> Call:
    route = route or make_route()
    return Call(
        task_id=task_id,
        kind=kind,
        model="m-1",
        input=input,
        params=params,
        attempt=attempt,
        instance=route.instances[0],
        route=route,
    )


async def run(call: Call) -> Result:
    return await build(call.route).run(call)


# --- the mock provider ----------------------------------------------------------------------


async def test_mock_is_registered_and_built_from_the_route() -> None:
    assert lookup("mock") is MockProvider
    assert isinstance(build(make_route()), MockProvider)


async def test_mock_chat_is_deterministic() -> None:
    first = await run(make_call(input="tell me a joke"))
    again = await run(make_call(input="tell me a joke"))
    other = await run(make_call(input="tell me a poem"))
    assert first == again
    assert first.output == {
        "text": "mock reply to: tell me a joke",
        "finish_reason": "stop",
        "model": "m-1",
    }
    assert first.usage == {"input_tokens": 4, "output_tokens": 7}
    assert other.output != first.output


async def test_mock_reads_the_last_chat_message() -> None:
    messages = [{"role": "user", "content": "first"}, {"role": "user", "content": "second"}]
    result = await run(make_call(input={"messages": messages}))
    assert result.output["text"] == "mock reply to: second"


async def test_mock_other_kinds_digest_their_input() -> None:
    a = await run(make_call(kind="image", input={"prompt": "a cat"}))
    b = await run(make_call(kind="image", input={"prompt": "a cat"}))
    c = await run(make_call(kind="image", input={"prompt": "a dog"}))
    assert a == b
    assert a.output["prompt"] == "a cat" and a.output["kind"] == "image"
    assert len(a.output["digest"]) == 16 and a.output["digest"] != c.output["digest"]


@pytest.mark.parametrize("dims", [None, 3, 64])
async def test_mock_embedding_dims_and_determinism(dims: int | None) -> None:
    params = {} if dims is None else {"dimensions": dims}
    one = await run(make_call(kind="embedding", input="vector me", **params))
    two = await run(make_call(kind="embedding", input="vector me", **params))
    [vec] = one.output["embeddings"]
    assert len(vec) == (dims or 8)
    assert all(-1 <= x <= 1 for x in vec)
    assert [vec] == two.output["embeddings"]
    other = await run(make_call(kind="embedding", input="something else", **params))
    assert other.output["embeddings"] != [vec]


async def test_mock_embeds_each_string_of_a_list() -> None:
    texts = ["vector me", "something else", "vector me"]
    result = await run(make_call(kind="embedding", input=texts, dimensions=4))
    vectors = result.output["embeddings"]
    assert len(vectors) == 3 and all(len(v) == 4 for v in vectors)
    assert vectors[0] == vectors[2] != vectors[1]
    single = await run(make_call(kind="embedding", input="something else", dimensions=4))
    assert single.output["embeddings"] == [vectors[1]]
    assert result.usage == {"input_tokens": 6}


async def test_mock_transcribes_the_audio_it_reads() -> None:
    wav = b"RIFF" + bytes(40)
    route = make_route()

    async def read_file(file_id: str) -> OutputFile:
        assert file_id == "f1"
        return OutputFile(wav, "audio/wav", "clip.wav")

    call = Call(
        "t", "transcription", "m-1", {"file": {"file_id": "f1"}}, {}, 1, route.instances[0], route
    )
    call = dataclasses.replace(call, read_file=read_file)
    result = await run(call)
    assert result.output["text"] == mock_transcript(wav)
    assert mock_transcript(wav) != mock_transcript(wav + b"x")


async def test_mock_stream_emits_words_as_progress() -> None:
    events: list[dict[str, Any]] = []

    async def emit(event: dict[str, Any]) -> None:
        events.append(event)

    route = make_route()
    call = Call(
        "t", "chat", "m-1", "hi there", {"stream": True}, 1, route.instances[0], route, emit
    )
    result = await run(call)
    assert "".join(e["delta"] for e in events).strip() == result.output["text"]
    assert len(events) == 5  # "mock reply to: hi there"


async def test_mock_reasoning_comes_apart_from_the_answer_and_streams_first() -> None:
    events: list[dict[str, Any]] = []

    async def emit(event: dict[str, Any]) -> None:
        events.append(event)

    route = make_route()
    params = {"stream": True, "mock_reasoning": True}
    call = Call("t", "chat", "m-1", "hi there", params, 1, route.instances[0], route, emit)
    result = await run(call)
    assert result.output["reasoning"] == "mock thinking about: hi there"
    assert result.output["text"] == "mock reply to: hi there"
    fields = [next(iter(e)) for e in events]
    assert fields == ["reasoning_delta"] * 5 + ["delta"] * 5
    thought = "".join(e["reasoning_delta"] for e in events if "reasoning_delta" in e)
    assert thought.strip() == result.output["reasoning"]
    plain = await run(make_call(input="hi there"))
    assert "reasoning" not in plain.output


async def test_mock_speech_is_a_wav_file_of_silence() -> None:
    result = await run(make_call(kind="speech", input="say it"))
    [audio] = result.files
    assert (audio.content_type, audio.name) == ("audio/wav", "speech.wav")
    with wave.open(io.BytesIO(audio.data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 1, 8000)
        assert w.getnframes() == 2000 and set(w.readframes(2000)) == {128}


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("rate_limited", errors.RateLimited),
        ("invalid_input", errors.InvalidInput),
        ("auth_failed", errors.AuthFailed),
        ("timeout", errors.ProviderTimeout),
        ("content_refused", errors.ContentRefused),
    ],
)
async def test_mock_fail_attempts_raise_the_named_error(name: str, cls: type) -> None:
    params = {"mock_fail_attempts": 2, "mock_error": name, "mock_retry_after": 1.5}
    for attempt in (1, 2):
        with pytest.raises(cls) as info:
            await run(make_call(attempt=attempt, **params))
        assert type(info.value) is cls
        assert info.value.retry_after == 1.5
        assert info.value.details["provider_code"] == f"mock_{cls.code}"
    assert (await run(make_call(attempt=3, **params))).output["text"].startswith("mock reply")


async def test_mock_default_error_is_overloaded() -> None:
    with pytest.raises(errors.Overloaded) as info:
        await run(make_call(mock_fail_attempts=1))
    assert info.value.retry_after is None


async def outcomes(route: Route, task_ids: list[str], attempt: int = 1) -> list[bool]:
    """For each task id: did the mock fail it?"""
    out = []
    for task_id in task_ids:
        try:
            await run(make_call(route, task_id=task_id, attempt=attempt))
            out.append(False)
        except errors.Overloaded:
            out.append(True)
    return out


async def test_failure_rate_is_decided_by_task_and_attempt() -> None:
    route = make_route(failure_rate=0.5)
    ids = [f"task-{i}" for i in range(200)]
    first = await outcomes(route, ids)
    assert first == await outcomes(route, ids)  # repeatable
    assert 60 < sum(first) < 140  # roughly half
    assert first != await outcomes(route, ids, attempt=2)  # another attempt, another draw
    assert not any(await outcomes(make_route(failure_rate=0.0), ids))
    assert all(await outcomes(make_route(failure_rate=1.0), ids))


async def test_instance_option_beats_route_option() -> None:
    inst = Instance(name="i1", options={"failure_rate": 1.0})
    route = make_route(instance=inst, failure_rate=0.0)
    assert make_call(route).option("failure_rate") == 1.0
    assert make_call(route).option("missing", "dflt") == "dflt"
    with pytest.raises(errors.Overloaded):
        await run(make_call(route))


# --- the registry ---------------------------------------------------------------------------


async def test_register_a_provider_class() -> None:
    @register_provider("echo-class")
    class Echo(Provider):
        async def run(self, call: Call) -> Result:
            return Result({"echo": call.input, "route": self.route.name}, {"n": 1})

    assert lookup("echo-class") is Echo
    result = await run(make_call(make_route("echo-class"), input="x"))
    assert result == Result({"echo": "x", "route": "r"}, {"n": 1})


async def test_register_an_async_function() -> None:
    seen: list[Call] = []

    @register_provider("echo-async")
    async def echo(call: Call) -> dict[str, Any]:
        seen.append(call)
        return {"echo": call.input}

    call = make_call(make_route("echo-async"), input="y")
    assert await run(call) == Result({"echo": "y"})
    assert seen == [call]
    assert echo.__name__ == "echo"  # the decorator hands the function back unchanged


async def test_register_a_sync_function_runs_off_the_event_loop() -> None:
    threads: list[threading.Thread] = []

    @register_provider("echo-sync")
    def echo(call: Call) -> Result:
        threads.append(threading.current_thread())
        return Result({"echo": call.input}, {"tokens": 2})

    assert await run(make_call(make_route("echo-sync"), input="z")) == Result(
        {"echo": "z"}, {"tokens": 2}
    )
    assert threads and threads[0] is not threading.main_thread()


async def test_register_rejects_non_callables() -> None:
    with pytest.raises(TypeError, match="must be a Provider subclass or a function"):
        register_provider("bad")(42)


async def test_inference_function_gets_spec_payload_and_params() -> None:
    received: list[tuple[Any, ...]] = []

    @register_inference_function("aiflow-style")
    def infer(model_spec: dict[str, Any], payload: Any, inference_params: dict[str, Any]) -> Any:
        received.append((model_spec, payload, inference_params))
        return {"ok": True}

    inst = Instance(name="i1", endpoint="http://gpu:8000/v1", secret=SecretStr("sk-abc"))
    route = make_route("aiflow-style", instance=inst)
    result = await run(make_call(route, input={"prompt": "p"}, temperature=0.2))
    assert result == Result({"ok": True})
    spec, payload, params = received[0]
    assert spec == {"name": "m-1", "endpoint": "http://gpu:8000/v1", "api_key": "sk-abc"}
    assert payload == {"prompt": "p"}
    assert params == {"temperature": 0.2}


async def test_inference_function_without_secret_gets_no_api_key() -> None:
    received: list[dict[str, Any]] = []

    @register_inference_function("aiflow-async")
    async def infer(model_spec: dict[str, Any], payload: Any, params: dict[str, Any]) -> Any:
        received.append(model_spec)
        return payload

    result = await run(make_call(make_route("aiflow-async"), input="q"))
    assert result.output == "q"
    assert received == [{"name": "m-1", "endpoint": None}]


def test_lookup_of_unknown_name_lists_registered_names() -> None:
    register_provider("listed-one")(lambda call: None)
    with pytest.raises(LookupError, match="unknown provider 'nope'") as info:
        lookup("nope")
    message = str(info.value)
    assert "mock" in message and "listed-one" in message


# --- HTTP status classification -------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (429, errors.RateLimited),
        (401, errors.AuthFailed),
        (403, errors.AuthFailed),
        (500, errors.Overloaded),
        (502, errors.Overloaded),
        (503, errors.Overloaded),
        (529, errors.Overloaded),
        (408, errors.ProviderTimeout),
        (504, errors.ProviderTimeout),
        (400, errors.InvalidInput),
        (404, errors.InvalidInput),
        (413, errors.InvalidInput),
        (422, errors.InvalidInput),
    ],
)
def test_from_http_status_classifies(status: int, cls: type[errors.ProviderError]) -> None:
    err = errors.from_http_status(status, "boom", provider_code="x")
    assert type(err) is cls
    assert err.details["status"] == status
    assert err.as_dict() == {
        "type": cls.code,
        "message": "boom",
        "provider_code": "x",
        "status": status,
    }


@pytest.mark.parametrize(
    ("status", "retryable"), [(429, True), (503, True), (504, True), (400, False), (401, False)]
)
def test_from_http_status_retryability(status: int, retryable: bool) -> None:
    assert errors.from_http_status(status, "m").retryable is retryable


def test_rate_limit_carries_retry_after() -> None:
    err = errors.from_http_status(429, "slow down", retry_after=12.0)
    assert isinstance(err, errors.RateLimited)
    assert err.retry_after == 12.0
