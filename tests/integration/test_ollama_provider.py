"""The ``ollama`` provider against the fake Ollama server, over real HTTP on loopback."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from taskgate import errors
from taskgate.config import Instance, Route
from taskgate.providers import OutputFile, Result, lookup
from taskgate.providers.ollama import OllamaProvider, base_url
from tests.e2e.conftest import free_port
from tests.fakes.ollama_server import DEFAULT_MODELS, FakeOllama, fake_embedding
from tests.integration.provider_harness import ProviderHarness

KEY = "ollama-proxy-token-3e8d51c0a7f2"
PNG = b"\x89PNG\r\n\x1a\nfake-png-bytes"
PNG_B64 = base64.b64encode(PNG).decode()


@pytest.fixture
async def fake() -> AsyncIterator[FakeOllama]:
    async with FakeOllama(slow_seconds=3) as server:
        yield server


def harness(endpoint: str, secret: str | None = None, **route_options: Any) -> ProviderHarness:
    return ProviderHarness(
        "ollama",
        endpoint,
        watch=KEY,
        secret=secret,
        model="llama3.2",
        route_options=route_options,
    )


@pytest.fixture
async def gate(fake: FakeOllama) -> AsyncIterator[ProviderHarness]:
    async with harness(fake.base_url) as h:
        yield h


def last_body(fake: FakeOllama) -> Any:
    return fake.requests[-1].body


# --- chat --------------------------------------------------------------------------------


def test_registered_as_ollama_with_the_local_default_endpoint() -> None:
    assert lookup("ollama") is OllamaProvider
    assert base_url(Instance(name="bare")) == "http://127.0.0.1:11434"


async def test_plain_chat_asks_for_one_json_object_and_maps_the_reply(
    gate: ProviderHarness, fake: FakeOllama
) -> None:
    result = await gate.run("hello there")
    assert result.output == {
        "text": "echo: hello there",
        "reasoning": None,
        "finish_reason": "stop",
    }
    assert result.usage == {"input_tokens": 2, "output_tokens": 3}
    sent = fake.requests[-1]
    assert sent.path == "/api/chat"
    assert "Authorization" not in sent.headers
    assert sent.body == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "hello there"}],
        "stream": False,  # Ollama streams unless told not to
    }
    assert gate.events == []


async def test_params_become_ollama_options_and_fields(fake: FakeOllama) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    async with harness(fake.base_url, model_options={"num_ctx": 8192, "top_k": 5}) as h:
        await h.run(
            "hi",
            system="be brief",
            temperature=0.2,
            max_tokens=50,
            top_p=0.9,
            seed=7,
            stop="\n\n",
            options={"top_k": 20},
            tools=tools,
            keep_alive="10m",
            response_format={"type": "json_object"},
        )
    body = last_body(fake)
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert body["options"] == {
        "num_ctx": 8192,
        "top_k": 20,  # the task's options over the route's
        "temperature": 0.2,
        "num_predict": 50,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["\n\n"],  # a string would be a 500 from Ollama
    }
    assert (body["tools"], body["keep_alive"], body["format"]) == (tools, "10m", "json")


async def test_a_json_schema_response_format_becomes_the_format(
    gate: ProviderHarness, fake: FakeOllama
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    await gate.run("hi", response_format={"type": "json_schema", "json_schema": {"schema": schema}})
    assert last_body(fake)["format"] == schema


async def test_upstream_model_option_names_the_model_sent(fake: FakeOllama) -> None:
    async with harness(fake.base_url, upstream_model="qwen3:8b") as h:
        await h.run("hi", model="local-qwen")
    assert last_body(fake)["model"] == "qwen3:8b"


async def test_streaming_emits_deltas_in_order_and_assembles_the_reply(
    gate: ProviderHarness, fake: FakeOllama
) -> None:
    result = await gate.run("one two three", stream=True)
    assert gate.deltas() == ["echo: ", "one ", "two ", "three"]
    assert result.output == {
        "text": "echo: one two three",
        "reasoning": None,
        "finish_reason": "stop",
    }
    assert result.usage == {"input_tokens": 3, "output_tokens": 4}
    assert last_body(fake)["stream"] is True


@pytest.mark.parametrize("stream", [False, True])
async def test_thinking_is_kept_apart_as_reasoning(gate: ProviderHarness, stream: bool) -> None:
    result = await gate.run("why", model="deepseek-r1:7b", stream=stream)
    assert result.output["text"] == "echo: why"
    assert result.output["reasoning"] == "thinking about: why"
    assert result.usage == {"input_tokens": 1, "output_tokens": 5}
    if stream:
        assert gate.deltas("reasoning_delta") == ["thinking ", "about: ", "why"]
        assert gate.deltas() == ["echo: ", "why"]
    else:
        assert gate.events == []


async def test_think_false_is_passed_through(gate: ProviderHarness, fake: FakeOllama) -> None:
    result = await gate.run("why", model="qwen3:8b", think=False)
    assert last_body(fake)["think"] is False
    assert result.output["reasoning"] is None


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_calls_come_back_in_the_openai_shape(
    gate: ProviderHarness, stream: bool
) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    result = await gate.run("weather", tools=tools, stream=stream)
    assert result.output["finish_reason"] == "tool_calls"
    [call] = result.output["tool_calls"]
    arguments = call["function"].pop("arguments")
    assert call == {"id": "call_fake1", "type": "function", "function": {"name": "lookup"}}
    assert json.loads(arguments) == {"text": "weather"}  # a JSON string, as OpenAI sends


async def test_openai_style_tool_call_history_is_sent_with_object_arguments(
    gate: ProviderHarness, fake: FakeOllama
) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
    ]
    await gate.run({"messages": messages})
    sent = last_body(fake)["messages"][1]["tool_calls"]
    assert sent == [{"id": "c1", "function": {"name": "f", "arguments": {"x": 1}}}]


async def test_a_soft_refusal_is_content_refused_unless_turned_off(fake: FakeOllama) -> None:
    async with harness(fake.base_url) as h:
        fake.script("refusal")
        error = await h.fails(errors.ContentRefused)
    assert error.details["provider_code"] == "soft_refusal"
    async with harness(fake.base_url, soft_refusals=False) as h:
        fake.script("refusal")
        assert (await h.run()).output["text"] == "I can't help with that."


# --- images ------------------------------------------------------------------------------


def with_files(h: ProviderHarness, input: Any, files: dict[str, OutputFile]) -> Any:
    async def read_file(file_id: str) -> OutputFile:
        if file_id not in files:
            raise errors.InvalidInput(f"no file {file_id!r}")
        return files[file_id]

    return dataclasses.replace(h.call(input), read_file=read_file)


async def test_image_parts_become_base64_images(gate: ProviderHarness, fake: FakeOllama) -> None:
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        {"type": "image_url", "image_url": {"file_id": "f1"}},
    ]
    call = with_files(
        gate,
        {"messages": [{"role": "user", "content": content}]},
        {"f1": OutputFile(b"second image", "image/jpeg", "b.jpg")},
    )
    result = await gate.provider.run(call)
    assert isinstance(result, Result)
    assert last_body(fake)["messages"] == [
        {
            "role": "user",
            "content": "what is this?",
            "images": [PNG_B64, base64.b64encode(b"second image").decode()],
        }
    ]
    assert result.output["text"] == "echo: what is this? (2 images)"


async def test_a_prompt_with_images_and_native_base64(
    gate: ProviderHarness, fake: FakeOllama
) -> None:
    call = with_files(
        gate,
        {"prompt": "compare", "images": [{"file_id": "f1"}, PNG_B64]},
        {"f1": OutputFile(PNG, "image/png")},
    )
    await gate.provider.run(call)
    assert last_body(fake)["messages"] == [
        {"role": "user", "content": "compare", "images": [PNG_B64, PNG_B64]}
    ]


@pytest.mark.parametrize(
    ("image", "needle"),
    [
        ("https://example.com/cat.png", "media URLs from clients are refused"),
        (" HTTP://example.com/cat.png", "media URLs from clients are refused"),
        ("file:///etc/passwd", "not 'file:///etc/passwd'"),
        ("//example.com/cat.png", "not '//example.com/cat.png'"),
        ({"file_id": "missing"}, "no file 'missing'"),
        ("data:image/png;base64,@@@", "not valid base64"),
    ],
)
async def test_images_it_cannot_send_fail_before_any_request(
    gate: ProviderHarness, fake: FakeOllama, image: Any, needle: str
) -> None:
    content = [{"type": "image_url", "image_url": {"url": image}}]
    call = with_files(gate, {"messages": [{"role": "user", "content": content}]}, {})
    with pytest.raises(errors.InvalidInput, match=needle):
        await gate.provider.run(call)
    assert fake.requests == []


async def test_bad_native_base64_is_refused_by_ollama_as_invalid_input(
    gate: ProviderHarness,
) -> None:
    messages = [{"role": "user", "content": "x", "images": ["bm90IGJhc2U2N"]}]  # bad length
    error = await gate.fails(errors.InvalidInput, {"messages": messages})
    assert error.message == "illegal base64 data at input byte 0"


# --- embeddings --------------------------------------------------------------------------


@pytest.mark.parametrize("input", ["one text", ["first text", "second"]])
async def test_embeddings(gate: ProviderHarness, fake: FakeOllama, input: str | list[str]) -> None:
    result = await gate.run(input, kind="embedding", model="nomic-embed-text", dimensions=6)
    texts = [input] if isinstance(input, str) else input
    assert result.output == {"embeddings": [fake_embedding(t, 6) for t in texts]}
    assert result.usage == {"input_tokens": sum(len(t.split()) for t in texts)}
    assert fake.requests[-1].path == "/api/embed"
    assert last_body(fake) == {"model": "nomic-embed-text", "input": input, "dimensions": 6}


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "input", "needle"),
    [
        ("image", "a cat", "not kind 'image'"),
        ("chat", 42, "chat input must be"),
        ("chat", {"messages": ["hi"]}, "chat input must be"),
        ("chat", {"messages": []}, "one or more objects"),
        ("chat", {"messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "'audio'"),
        ("embedding", [1, 2], "embedding input must be"),
    ],
)
async def test_unsupported_kinds_and_inputs_fail_before_any_request(
    gate: ProviderHarness, fake: FakeOllama, kind: str, input: Any, needle: str
) -> None:
    error = await gate.fails(errors.InvalidInput, input, kind=kind)
    assert needle in error.message
    assert fake.requests == []


@pytest.mark.parametrize("kind", ["chat", "embedding"])
async def test_a_model_ollama_lacks_is_invalid_input(gate: ProviderHarness, kind: str) -> None:
    error = await gate.fails(errors.InvalidInput, "hi", kind=kind, model="mistral:7b")
    assert "model" in error.message and "'mistral:7b'" in error.message.replace('"', "'")
    assert error.details == {"provider_code": "model_not_found", "status": 404}


async def test_thinking_on_a_model_that_cannot_is_invalid_input(gate: ProviderHarness) -> None:
    error = await gate.fails(errors.InvalidInput, "hi", think=True)
    assert error.message == '"llama3.2" does not support thinking'
    assert error.details == {"provider_code": None, "status": 400}


@pytest.mark.parametrize(
    ("mode", "stream", "cls", "needle"),
    [
        ("server_error", False, errors.Overloaded, "llama runner process has terminated"),
        ("busy", False, errors.Overloaded, "server busy"),
        ("not_found", False, errors.InvalidInput, "model 'llama3.2' not found"),
        ("garbage", False, errors.BadResponse, "not JSON: this is not json"),
        ("stream_error", True, errors.Overloaded, "failed mid-reply: an error was encountered"),
        ("truncated", True, errors.BadResponse, "ended before a line with 'done'"),
    ],
)
async def test_scripted_failures_map_onto_the_error_tree(
    gate: ProviderHarness,
    fake: FakeOllama,
    mode: str,
    stream: bool,
    cls: type[errors.ProviderError],
    needle: str,
) -> None:
    fake.script(mode)
    error = await gate.fails(cls, stream=stream)
    assert needle in error.message


async def test_a_500_then_success(gate: ProviderHarness, fake: FakeOllama) -> None:
    fake.script("server_error")
    await gate.fails(errors.Overloaded)
    assert (await gate.run("again")).output["text"] == "echo: again"


async def test_streamed_deltas_before_a_failure_were_emitted(
    gate: ProviderHarness, fake: FakeOllama
) -> None:
    fake.script("stream_error")
    await gate.fails(errors.Overloaded, "one two three", stream=True)
    assert gate.deltas() == ["echo: ", "one "]


async def test_a_silent_backend_times_out(fake: FakeOllama) -> None:
    fake.script("slow")
    async with harness(fake.base_url, read_timeout=0.2) as h:
        error = await h.fails(errors.ProviderTimeout)
    assert "timed out" in error.message


async def test_connection_refused_is_connection_failed() -> None:
    async with harness(f"http://127.0.0.1:{free_port()}") as h:
        error = await h.fails(errors.ConnectionFailed)
    assert "connection to http://127.0.0.1:" in error.message


async def test_a_secret_is_sent_as_bearer_and_a_wrong_one_is_auth_failed() -> None:
    async with FakeOllama(key=KEY) as fake:
        async with harness(fake.base_url, secret=KEY) as h:
            assert (await h.run("hi")).output["text"] == "echo: hi"
        assert fake.requests[-1].headers["Authorization"] == f"Bearer {KEY}"
        async with harness(fake.base_url, secret=KEY + "-old") as h:
            error = await h.fails(errors.AuthFailed)
    assert error.message == "unauthorized"


# --- model discovery ---------------------------------------------------------------------


def discovery_route(*endpoints: str, secret: str | None = None) -> Route:
    instances = [
        Instance(name=f"o{i}", endpoint=e, secret=SecretStr(secret) if secret else None)
        for i, e in enumerate(endpoints)
    ]
    return Route(
        name="local",
        provider="ollama",
        instances=instances,
        options={"discover": True, "discover_timeout": 2},
    )


async def test_list_models_reads_api_tags_and_follows_changes(fake: FakeOllama) -> None:
    provider = OllamaProvider(discovery_route(fake.base_url))
    try:
        assert await provider.list_models() == sorted(DEFAULT_MODELS)
        fake.models.append("mistral:7b")
        assert "mistral:7b" in await provider.list_models()
    finally:
        await provider.aclose()
    assert fake.requests[-1].path == "/api/tags"


async def test_list_models_sends_the_secret_and_never_shows_it() -> None:
    async with FakeOllama(models=["a:latest"], key=KEY) as fake:
        good, bad = (
            OllamaProvider(discovery_route(fake.base_url, secret=KEY)),
            OllamaProvider(discovery_route(fake.base_url, secret=KEY + "x")),
        )
        try:
            assert await good.list_models() == ["a:latest"]
            with pytest.raises(errors.AuthFailed) as caught:
                await bad.list_models()
        finally:
            await good.aclose()
            await bad.aclose()
    assert KEY not in str(caught.value)


async def test_an_unreachable_instance_counts_with_what_it_listed_last(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with FakeOllama(models=["a:latest"]) as one, FakeOllama(models=["b:latest"]) as two:
        provider = OllamaProvider(discovery_route(one.base_url, two.base_url))
        try:
            assert await provider.list_models() == ["a:latest", "b:latest"]
            two.tags_down = True
            one.models = ["a:latest", "c:latest"]
            names = await provider.list_models()
            assert names == ["a:latest", "b:latest", "c:latest"]
            assert "instance o1: cannot list models" in caplog.text
            one.tags_down = True
            with pytest.raises(errors.Overloaded, match="permission denied"):
                await provider.list_models()
        finally:
            await provider.aclose()


async def test_list_models_of_a_dead_instance_is_connection_failed() -> None:
    provider = OllamaProvider(discovery_route(f"http://127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(errors.ConnectionFailed):
            await provider.list_models()
    finally:
        await provider.aclose()
