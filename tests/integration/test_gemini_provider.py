"""The ``gemini`` provider against the fake Gemini server, over real HTTP on loopback."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

import taskgate.providers.gemini  # noqa: F401  (registers "gemini")
from taskgate import errors
from taskgate.providers import OutputFile, lookup
from taskgate.providers.gemini import (
    DEFAULT_ENDPOINT,
    GeminiProvider,
    generate_url,
    is_soft_refusal,
)
from tests.e2e.conftest import free_port
from tests.fakes.gemini_server import FakeGemini
from tests.integration.provider_harness import ProviderHarness

KEY = "AIza-test-7f3a9c2e51d84b06"
PNG = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeGemini]:
    async with FakeGemini(key=KEY, slow_seconds=3) as server:
        yield server


def harness(endpoint: str | None, secret: str | None = KEY, **options: Any) -> ProviderHarness:
    return ProviderHarness(
        "gemini", endpoint, watch=KEY, secret=secret, model="gemini-test", instance_options=options
    )


@pytest.fixture
async def gate(fake: FakeGemini) -> AsyncIterator[ProviderHarness]:
    async with harness(fake.base_url) as h:
        yield h


def user_turn(*parts: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": list(parts)}]}


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def last_body(fake: FakeGemini) -> Any:
    return fake.requests[-1].body


# --- chat --------------------------------------------------------------------------------


def test_registered_as_gemini() -> None:
    assert lookup("gemini") is GeminiProvider


async def test_plain_chat_sends_one_user_turn_and_maps_the_reply(
    gate: ProviderHarness, fake: FakeGemini
) -> None:
    result = await gate.run("hello there")
    assert result.output == {"text": "echo: hello there", "finish_reason": "stop"}
    assert result.usage == {"input_tokens": 2, "output_tokens": 3}
    sent = fake.requests[-1]
    assert sent.path == "/v1beta/models/gemini-test:generateContent"
    assert sent.headers["x-goog-api-key"] == KEY
    assert "key=" not in sent.path
    assert sent.body == {"contents": [{"role": "user", "parts": [{"text": "hello there"}]}]}


async def test_system_instruction_and_generation_config_are_sent(
    gate: ProviderHarness, fake: FakeGemini
) -> None:
    messages = [
        {"role": "system", "content": "answer in French"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "salut"},
        {"role": "user", "content": [{"type": "text", "text": "again"}]},
    ]
    result = await gate.run(
        {"messages": messages},
        system="be brief",
        temperature=0.2,
        max_tokens=50,
        top_p=0.9,
        stop="\n\n",
        mock_latency_ms=5,
    )
    assert last_body(fake) == {
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"text": "salut"}]},
            {"role": "user", "parts": [{"text": "again"}]},
        ],
        "systemInstruction": {"parts": [{"text": "be brief"}, {"text": "answer in French"}]},
        "generationConfig": {
            "temperature": 0.2,
            "maxOutputTokens": 50,
            "topP": 0.9,
            "stopSequences": ["\n\n"],
        },
    }
    assert result.output["text"] == "echo: again"
    assert result.usage == {"input_tokens": 8, "output_tokens": 2}


async def test_prompt_input_and_upstream_model_option(fake: FakeGemini) -> None:
    async with harness(fake.base_url, upstream_model="models/gemini-2.0-flash") as h:
        result = await h.run({"prompt": "from a prompt"}, model="fast")
    assert result.output["text"] == "echo: from a prompt"
    assert fake.requests[-1].model == "gemini-2.0-flash"


async def test_an_image_data_url_becomes_inline_data(
    gate: ProviderHarness, fake: FakeGemini
) -> None:
    text = {"type": "text", "text": "what is this"}
    result = await gate.run(user_turn(text, image_part(f"data:image/png;base64,{PNG}")))
    assert last_body(fake)["contents"][0]["parts"] == [
        {"text": "what is this"},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
    ]
    assert result.output["text"] == "echo: what is this"
    assert result.usage == {"input_tokens": 3 + 258, "output_tokens": 4}


async def test_an_image_part_may_name_an_uploaded_file(
    gate: ProviderHarness, fake: FakeGemini
) -> None:
    async def read_file(file_id: str) -> OutputFile:
        assert file_id == "f1"
        return OutputFile(base64.b64decode(PNG), "image/png", "cat.png")

    part = {"type": "image_url", "image_url": {"file_id": "f1"}}
    call = dataclasses.replace(gate.call(user_turn(part)), read_file=read_file)
    await gate.provider.run(call)
    assert last_body(fake)["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/png", "data": PNG}}
    ]


def test_the_default_endpoint_is_googles() -> None:
    call = harness(None).call("hi", "chat", "gemini-2.5-pro")
    assert generate_url(call) == f"{DEFAULT_ENDPOINT}/v1beta/models/gemini-2.5-pro:generateContent"


async def test_a_closed_provider_opens_a_new_session(gate: ProviderHarness) -> None:
    await gate.run("first")
    await gate.provider.aclose()
    assert (await gate.run("second")).output["text"] == "echo: second"


# --- input errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "input", "needle"),
    [
        ("embedding", "a text", "not kind 'embedding'"),
        ("chat", 42, "chat input must be"),
        ("chat", {"messages": [{"role": "tool", "content": "x"}]}, "role must be"),
        ("chat", {"messages": [{"role": "system", "content": "x"}]}, "at least one user"),
        ("chat", user_turn(image_part("https://example.com/cat.png")), "media URLs from clients"),
        ("chat", user_turn(image_part("data:image/png;base64,%%%")), "data: URLs only"),
        ("chat", user_turn({"type": "audio"}), "'audio'"),
    ],
)
async def test_unsupported_kinds_and_inputs_fail_before_any_request(
    gate: ProviderHarness, fake: FakeGemini, kind: str, input: Any, needle: str
) -> None:
    error = await gate.fails(errors.InvalidInput, input, kind=kind)
    assert needle in error.message
    assert fake.requests == []


async def test_a_bad_request_is_invalid_input_with_the_servers_message(
    gate: ProviderHarness,
) -> None:
    error = await gate.fails(errors.InvalidInput, {"messages": [{"role": "user", "content": []}]})
    assert error.message == (
        "* GenerateContentRequest.contents[0].parts: contents.parts must not be empty."
    )
    assert error.details == {"status": 400, "provider_code": "INVALID_ARGUMENT"}


# --- http errors -------------------------------------------------------------------------


async def test_a_wrong_key_is_auth_failed(fake: FakeGemini) -> None:
    async with harness(fake.base_url, secret=KEY + "-old") as h:
        error = await h.fails(errors.AuthFailed)
    assert error.details == {"status": 401, "provider_code": "UNAUTHENTICATED"}


async def test_no_key_is_auth_failed_and_sends_no_header(fake: FakeGemini) -> None:
    async with harness(fake.base_url, secret=None) as h:
        error = await h.fails(errors.AuthFailed)
    assert error.details == {"status": 403, "provider_code": "PERMISSION_DENIED"}
    assert "x-goog-api-key" not in {k.lower() for k in fake.requests[-1].headers}


async def test_an_invalid_key_400_is_auth_failed_and_the_echoed_key_is_blanked(
    gate: ProviderHarness, fake: FakeGemini
) -> None:
    fake.script("key_invalid")
    error = await gate.fails(errors.AuthFailed)
    assert error.message == "API key not valid: ***. Please pass a valid API key."
    assert error.details == {"status": 401, "provider_code": "INVALID_ARGUMENT"}


@pytest.mark.parametrize(
    ("mode", "cls", "needle"),
    [
        ("rate_limit", errors.RateLimited, "Resource has been exhausted"),
        ("server_error", errors.Overloaded, "internal error"),
        ("garbage", errors.BadResponse, "not JSON: this is not json"),
        ("no_candidates", errors.BadResponse, "without candidates"),
        ("blocked", errors.ContentRefused, "blockReason SAFETY"),
        ("safety", errors.ContentRefused, "finishReason SAFETY"),
        ("refusal", errors.ContentRefused, "declined: I can't help with that."),
    ],
)
async def test_scripted_failures_map_onto_the_error_tree(
    gate: ProviderHarness, fake: FakeGemini, mode: str, cls: type[errors.ProviderError], needle: str
) -> None:
    fake.script(mode)
    error = await gate.fails(cls)
    assert type(error) is cls
    assert needle in error.message


async def test_429_carries_retry_after_and_the_providers_status(
    gate: ProviderHarness, fake: FakeGemini
) -> None:
    fake.script("rate_limit", "quota")
    error = await gate.fails(errors.RateLimited)
    assert error.retry_after == 1.0
    assert error.details == {"status": 429, "provider_code": "RESOURCE_EXHAUSTED"}
    error = await gate.fails(errors.RateLimited)
    assert error.retry_after == 7.0  # from the RetryInfo detail when there is no header


async def test_refusal_codes(gate: ProviderHarness, fake: FakeGemini) -> None:
    fake.script("blocked", "safety", "refusal")
    codes = [(await gate.fails(errors.ContentRefused)).details["provider_code"] for _ in "abc"]
    assert codes == ["SAFETY", "SAFETY", "soft_refusal"]


@pytest.mark.parametrize(
    "text",
    ["I can't help with that.", "  I cannot comply with this request", "I\u2019m unable to do it"],
)
def test_soft_refusal_phrases(text: str) -> None:
    assert is_soft_refusal(text)
    assert not is_soft_refusal(f"Sure. {text}")


async def test_a_500_then_success(gate: ProviderHarness, fake: FakeGemini) -> None:
    fake.script("server_error")
    await gate.fails(errors.Overloaded)
    assert (await gate.run("again")).output["text"] == "echo: again"


async def test_a_silent_backend_times_out(fake: FakeGemini) -> None:
    fake.script("slow")
    async with harness(fake.base_url, read_timeout=0.2) as h:
        error = await h.fails(errors.ProviderTimeout)
    assert "timed out" in error.message


async def test_connection_refused_is_connection_failed() -> None:
    async with harness(f"http://127.0.0.1:{free_port()}") as h:
        error = await h.fails(errors.ConnectionFailed)
    assert "connection to http://127.0.0.1:" in error.message
    assert "failed: ClientConnectorError" in error.message
