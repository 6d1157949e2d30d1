"""The ``openai`` provider against the fake OpenAI server, over real HTTP on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from taskgate import errors
from taskgate.config import Instance, Route
from taskgate.providers import OutputFile, lookup
from taskgate.providers.openai import OpenAIProvider
from tests.e2e.conftest import free_port
from tests.fakes.openai_server import FakeOpenAI, fake_embedding
from tests.integration.provider_harness import ProviderHarness

KEY = "sk-test-7f3a9c2e51d84b06"


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(key=KEY, slow_seconds=3) as server:
        yield server


def harness(endpoint: str, secret: str | None = KEY, **options: Any) -> ProviderHarness:
    return ProviderHarness(
        "openai", endpoint, watch=KEY, secret=secret, model="gpt-test", instance_options=options
    )


@pytest.fixture
async def gate(fake: FakeOpenAI) -> AsyncIterator[ProviderHarness]:
    async with harness(fake.base_url) as h:
        yield h


def last_body(fake: FakeOpenAI) -> Any:
    return fake.requests[-1].body


# --- chat --------------------------------------------------------------------------------


def test_registered_as_openai() -> None:
    assert lookup("openai") is OpenAIProvider


async def test_plain_chat_sends_one_user_message_and_maps_the_reply(
    gate: ProviderHarness, fake: FakeOpenAI
) -> None:
    result = await gate.run("hello there")
    assert result.output == {
        "text": "echo: hello there",
        "reasoning": None,
        "finish_reason": "stop",
    }
    assert result.usage == {"input_tokens": 2, "output_tokens": 3}
    sent = fake.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.body == {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "hello there"}],
    }
    assert gate.events == []


async def test_system_prompt_and_params_are_passed_through(
    gate: ProviderHarness, fake: FakeOpenAI
) -> None:
    params: dict[str, Any] = {
        "temperature": 0.2,
        "max_tokens": 50,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
        "response_format": {"type": "json_object"},
        "tool_choice": "none",
    }
    await gate.run("hi", system="be brief", mock_latency_ms=5, **params)
    assert last_body(fake) == {
        "model": "gpt-test",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        **params,
    }


@pytest.mark.parametrize(
    ("input", "messages"),
    [
        ({"prompt": "from a prompt"}, [{"role": "user", "content": "from a prompt"}]),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        ),
    ],
)
async def test_dict_inputs_become_messages(
    gate: ProviderHarness, fake: FakeOpenAI, input: Any, messages: list[Any]
) -> None:
    await gate.run(input)
    assert last_body(fake)["messages"] == messages


async def test_upstream_model_option_names_the_model_sent(fake: FakeOpenAI) -> None:
    async with harness(fake.base_url, upstream_model="llama3.1:8b") as h:
        await h.run("hi", model="local-llama")
    assert last_body(fake)["model"] == "llama3.1:8b"


async def test_streaming_emits_deltas_in_order_and_assembles_the_reply(
    gate: ProviderHarness, fake: FakeOpenAI
) -> None:
    result = await gate.run("one two three", stream=True)
    assert gate.deltas() == ["echo: ", "one ", "two ", "three"]
    assert result.output == {
        "text": "echo: one two three",
        "reasoning": None,
        "finish_reason": "stop",
    }
    assert result.usage == {"input_tokens": 3, "output_tokens": 4}
    body = last_body(fake)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("stream", [False, True])
async def test_reasoning_is_kept_apart_from_the_text(gate: ProviderHarness, stream: bool) -> None:
    result = await gate.run("why", model="deepseek-r1-distill", stream=stream)
    assert result.output["text"] == "echo: why"
    assert result.output["reasoning"] == "thinking about: why"
    assert result.usage == {"input_tokens": 1, "output_tokens": 5}
    if stream:
        assert gate.deltas("reasoning_delta") == ["thinking ", "about: ", "why"]
        assert gate.deltas() == ["echo: ", "why"]


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_calls_come_back_whole(
    gate: ProviderHarness, fake: FakeOpenAI, stream: bool
) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    result = await gate.run("weather", tools=tools, stream=stream)
    assert last_body(fake)["tools"] == tools
    assert result.output["finish_reason"] == "tool_calls"
    assert result.output["tool_calls"] == [
        {
            "id": "call_fake_1",
            "type": "function",
            "function": {"name": "lookup", "arguments": json.dumps({"text": "weather"})},
        }
    ]


async def test_a_closed_provider_opens_a_new_session(gate: ProviderHarness) -> None:
    await gate.run("first")
    await gate.provider.aclose()
    assert (await gate.run("second")).output["text"] == "echo: second"


# --- embeddings --------------------------------------------------------------------------


@pytest.mark.parametrize("input", ["one text", ["first text", "second"]])
async def test_embeddings(gate: ProviderHarness, fake: FakeOpenAI, input: str | list[str]) -> None:
    result = await gate.run(input, kind="embedding", model="text-embed", dimensions=6)
    texts = [input] if isinstance(input, str) else input
    assert result.output == {"embeddings": [fake_embedding(t, 6) for t in texts]}
    assert result.usage == {"input_tokens": sum(len(t.split()) for t in texts)}
    assert fake.requests[-1].path == "/v1/embeddings"
    assert last_body(fake) == {"model": "text-embed", "input": input, "dimensions": 6}


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "input", "needle"),
    [
        ("video", "a cat", "not kind 'video'"),
        ("chat", 42, "chat input must be"),
        ("chat", {"text": "x"}, "chat input must be"),
        ("embedding", [1, 2], "embedding input must be"),
    ],
)
async def test_unsupported_kinds_and_inputs_fail_before_any_request(
    gate: ProviderHarness, fake: FakeOpenAI, kind: str, input: Any, needle: str
) -> None:
    error = await gate.fails(errors.InvalidInput, input, kind=kind)
    assert needle in error.message
    assert fake.requests == []


def test_an_instance_without_endpoint_is_refused_when_built() -> None:
    route = Route(name="r", models=["*"], provider="openai", instances=[Instance(name="bare")])
    with pytest.raises(ValueError, match="bare"):
        OpenAIProvider(route)


async def test_wrong_key_is_auth_failed_and_the_echoed_key_is_blanked(fake: FakeOpenAI) -> None:
    async with harness(fake.base_url, secret=KEY + "-old") as h:
        error = await h.fails(errors.AuthFailed)
    assert error.details["status"] == 401
    assert error.details["provider_code"] == "invalid_api_key"
    assert "Incorrect API key provided: ***" in error.message


async def test_a_bad_request_is_invalid_input_with_the_servers_message(
    gate: ProviderHarness,
) -> None:
    error = await gate.fails(errors.InvalidInput, {"messages": [{"role": "wizard", "content": ""}]})
    assert error.message == "Invalid value for 'messages[0].role': 'wizard'."
    assert error.details["status"] == 400
    assert error.details["provider_code"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("mode", "stream", "cls", "needle"),
    [
        ("rate_limit", False, errors.RateLimited, "Rate limit reached"),
        ("server_error", False, errors.Overloaded, "server had an error"),
        ("bad_gateway", False, errors.Overloaded, "502 Bad Gateway"),
        ("revoked", False, errors.AuthFailed, "Incorrect API key provided: ***"),
        ("garbage", False, errors.BadResponse, "not JSON: this is not json"),
        ("no_choices", False, errors.BadResponse, "without choices"),
        ("content_filter", False, errors.ContentRefused, "content_filter"),
        ("content_filter", True, errors.ContentRefused, "content_filter"),
        ("stream_error", True, errors.Overloaded, "crashed mid-reply"),
        ("truncated", True, errors.BadResponse, "before 'data: [DONE]'"),
    ],
)
async def test_scripted_failures_map_onto_the_error_tree(
    gate: ProviderHarness,
    fake: FakeOpenAI,
    mode: str,
    stream: bool,
    cls: type[errors.ProviderError],
    needle: str,
) -> None:
    fake.script(mode)
    error = await gate.fails(cls, stream=stream)
    assert type(error) is cls
    assert needle in error.message


async def test_429_carries_retry_after_and_the_providers_code(
    gate: ProviderHarness, fake: FakeOpenAI
) -> None:
    fake.script("rate_limit")
    error = await gate.fails(errors.RateLimited)
    assert error.retry_after == 1.0
    assert error.details == {"provider_code": "rate_limit_exceeded", "status": 429}


async def test_a_500_then_success(gate: ProviderHarness, fake: FakeOpenAI) -> None:
    fake.script("server_error")
    await gate.fails(errors.Overloaded)
    assert (await gate.run("again")).output["text"] == "echo: again"


async def test_streamed_deltas_before_a_failure_were_emitted(
    gate: ProviderHarness, fake: FakeOpenAI
) -> None:
    fake.script("stream_error")
    await gate.fails(errors.Overloaded, "one two three", stream=True)
    assert gate.deltas() == ["echo: ", "one "]


async def test_a_silent_backend_times_out(fake: FakeOpenAI) -> None:
    fake.script("slow")
    async with harness(fake.base_url, read_timeout=0.2) as h:
        error = await h.fails(errors.ProviderTimeout)
    assert "timed out" in error.message


async def test_connection_refused_is_connection_failed() -> None:
    async with harness(f"http://127.0.0.1:{free_port()}/v1") as h:
        error = await h.fails(errors.ConnectionFailed)
    assert "connection to http://127.0.0.1:" in error.message
    assert "failed: ClientConnectorError" in error.message


async def test_no_secret_sends_no_authorization_header(fake: FakeOpenAI) -> None:
    async with harness(fake.base_url, secret=None) as h:
        await h.fails(errors.AuthFailed)
    assert "Authorization" not in fake.requests[-1].headers


async def test_an_image_part_may_name_an_uploaded_file(
    gate: ProviderHarness, fake: FakeOpenAI
) -> None:
    gate.files["f1"] = OutputFile(b"\x89PNG-bytes", "image/png", "cat.png")
    parts = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"file_id": "f1", "detail": "low"}},
    ]
    await gate.run({"messages": [{"role": "user", "content": parts}]})
    sent = last_body(fake)["messages"][0]["content"][1]
    assert sent == {
        "type": "image_url",
        "image_url": {"detail": "low", "url": "data:image/png;base64,iVBORy1ieXRlcw=="},
    }
    missing = {"type": "image_url", "image_url": {"file_id": "nope"}}
    await gate.fails(errors.InvalidInput, {"messages": [{"role": "user", "content": [missing]}]})


async def test_an_image_url_from_a_client_is_refused_unless_the_route_allows_it(
    fake: FakeOpenAI,
) -> None:
    part = {"type": "image_url", "image_url": {"url": "http://10.0.0.1/secret.png"}}
    message = {"messages": [{"role": "user", "content": [part]}]}
    async with harness(fake.base_url) as h:
        error = await h.fails(errors.InvalidInput, message)
    assert "media URLs from clients are refused" in error.message
    assert fake.requests == []
    async with ProviderHarness(
        "openai",
        fake.base_url,
        watch=KEY,
        secret=KEY,
        model="gpt-test",
        route_options={"client_media_urls": True},
    ) as allowed:
        await allowed.run(message)
    assert last_body(fake)["messages"][0]["content"][0] == part


@pytest.mark.parametrize(
    "url",
    [
        "HTTP://10.0.0.1/secret.png",
        "Http://10.0.0.1/secret.png",
        " http://10.0.0.1/secret.png",
        "\thttps://10.0.0.1/secret.png",
        "//10.0.0.1/secret.png",
        "file:///etc/passwd",
        "ftp://10.0.0.1/secret.png",
        "javascript:alert(1)",
        "secret.png",
    ],
)
async def test_no_spelling_of_a_client_url_reaches_the_backend(
    gate: ProviderHarness, fake: FakeOpenAI, url: str
) -> None:
    for part in (
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "image_url", "image_url": url},
        {"type": "video_url", "video_url": {"url": url}},
    ):
        await gate.fails(errors.InvalidInput, {"messages": [{"role": "user", "content": [part]}]})
    assert fake.requests == []
