"""The ``openai`` provider's image, image-edit, transcription and speech kinds against the
fake OpenAI server, over real HTTP on loopback."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from taskgate import errors
from taskgate.providers import OutputFile
from tests.fakes.openai_media import Form, Upload, fake_speech, fake_transcript
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.shelf import fake_image
from tests.integration.provider_harness import ProviderHarness

KEY = "sk-media-91c2d04e7b35a6f8"
PNG = fake_image("an input picture")
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(64))


def data_uri(data: bytes, content_type: str) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(key=KEY) as server:
        yield server


@pytest.fixture
async def gate(fake: FakeOpenAI) -> AsyncIterator[ProviderHarness]:
    async with ProviderHarness(
        "openai",
        fake.base_url,
        watch=KEY,
        secret=KEY,
        model="dall-e-3",
        route_options={"output_urls_private": True},  # the fake serves its images on loopback
    ) as h:
        yield h


def sent(fake: FakeOpenAI) -> Any:
    return fake.requests[-1].body


# --- image -------------------------------------------------------------------------------


async def test_an_image_url_is_downloaded_into_a_file_at_once(
    gate: ProviderHarness, fake: FakeOpenAI
) -> None:
    result = await gate.run("a red fox", kind="image")
    [image] = result.files
    assert image == OutputFile(fake_image("a red fox"), "image/png", "image-1.png")
    [meta] = result.output["images"]
    assert meta["revised_prompt"] == "A detailed picture of a red fox"
    assert meta["source_url"].startswith(f"http://127.0.0.1:{fake.port}/files/")
    assert "?" not in meta["source_url"]  # the signature is not kept
    assert len(fake.shelf.downloads) == 1
    assert result.usage == {"images": 1}
    assert fake.requests[-1].path == "/v1/images/generations"
    assert sent(fake) == {"model": "dall-e-3", "prompt": "a red fox"}


async def test_an_image_url_on_a_private_address_is_refused_unless_the_route_allows_it(
    fake: FakeOpenAI,
) -> None:
    async with ProviderHarness(
        "openai", fake.base_url, watch=KEY, secret=KEY, model="dall-e-3"
    ) as h:
        error = await h.fails(errors.PermanentError, "a red fox", kind="image")
    assert f"output URL http://127.0.0.1:{fake.port}/files/" in error.message
    assert "a loopback address; refused" in error.message
    assert "options.output_urls_private" in error.message
    assert fake.shelf.downloads == []  # the file was never fetched


async def test_image_params_are_passed_through(gate: ProviderHarness, fake: FakeOpenAI) -> None:
    params = {"size": "1792x1024", "quality": "hd", "style": "natural", "n": 1}
    result = await gate.run({"prompt": "a lake"}, kind="image", **params)
    assert sent(fake) == {"model": "dall-e-3", "prompt": "a lake", **params}
    assert len(result.files) == 1


async def test_b64_images_become_files_with_the_backends_usage(
    gate: ProviderHarness, fake: FakeOpenAI
) -> None:
    result = await gate.run("two cats", kind="image", model="gpt-image-1", n=2)
    assert [f.name for f in result.files] == ["image-1.png", "image-2.png"]
    assert all(f.data == fake_image("two cats") for f in result.files)
    assert result.output == {"images": [{}, {}]}
    assert result.usage == {"images": 2, "input_tokens": 2, "output_tokens": 272}
    assert fake.shelf.downloads == []


async def test_an_expired_image_url_is_a_bad_response_and_the_next_call_works(
    gate: ProviderHarness, fake: FakeOpenAI
) -> None:
    fake.script("expired_url")
    error = await gate.fails(errors.BadResponse, "a fox", kind="image")
    assert "expired or gone (HTTP 403)" in error.message
    assert "X-Signature" not in error.message
    assert (await gate.run("a fox", kind="image")).files[0].data == fake_image("a fox")


@pytest.mark.parametrize(
    ("params", "cls", "needle", "code"),
    [
        ({"seed": 7}, errors.InvalidInput, "Unknown parameter: 'seed'.", "unknown_parameter"),
        ({"size": "999x999"}, errors.InvalidInput, "'999x999'", "invalid_value"),
        ({"n": 2}, errors.InvalidInput, "Invalid 'n'", "invalid_value"),
    ],
)
async def test_the_backends_400_is_invalid_input_with_its_message_and_code(
    gate: ProviderHarness,
    params: dict[str, Any],
    cls: type[errors.ProviderError],
    needle: str,
    code: str,
) -> None:
    error = await gate.fails(cls, "a fox", kind="image", **params)
    assert needle in error.message
    assert error.details == {"provider_code": code, "status": 400}


@pytest.mark.parametrize(
    ("mode", "cls", "code"),
    [
        ("content_policy", errors.ContentRefused, "content_policy_violation"),
        ("rate_limit", errors.RateLimited, "rate_limit_exceeded"),
        ("server_error", errors.Overloaded, "server_error"),
        ("revoked", errors.AuthFailed, "invalid_api_key"),
    ],
)
async def test_image_failures_map_onto_the_error_tree(
    gate: ProviderHarness, fake: FakeOpenAI, mode: str, cls: type[errors.ProviderError], code: str
) -> None:
    fake.script(mode)
    error = await gate.fails(cls, "something", kind="image")
    assert error.details["provider_code"] == code
    if mode == "rate_limit":
        assert error.retry_after == 1.0


@pytest.mark.parametrize("input", [42, {"text": "x"}, "", {"prompt": ""}])
async def test_an_image_without_a_prompt_fails_before_any_request(
    gate: ProviderHarness, fake: FakeOpenAI, input: Any
) -> None:
    error = await gate.fails(errors.InvalidInput, input, kind="image")
    assert "image input must be a prompt" in error.message
    assert fake.requests == []


# --- image edit --------------------------------------------------------------------------


async def test_an_edit_sends_image_and_mask_as_multipart(
    gate: ProviderHarness, fake: FakeOpenAI
) -> None:
    edit = {
        "prompt": "add a hat",
        "image": data_uri(PNG, "image/png"),
        "mask": data_uri(PNG, "image/png"),
    }
    result = await gate.run(edit, kind="image_edit", model="dall-e-2", size="512x512")
    form = sent(fake)
    assert isinstance(form, Form)
    assert fake.requests[-1].path == "/v1/images/edits"
    assert fake.requests[-1].headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert form["image"] == Upload("image.png", "image/png", PNG)
    assert form["mask"] == Upload("mask.png", "image/png", PNG)
    assert {k: form[k] for k in ("prompt", "model", "size")} == {
        "prompt": "add a hat",
        "model": "dall-e-2",
        "size": "512x512",
    }
    assert result.files[0].data == fake_image("add a hat")


async def test_several_uploaded_images_go_up_as_image_brackets(
    gate: ProviderHarness, fake: FakeOpenAI
) -> None:
    gate.files["f1"] = OutputFile(PNG, "image/png", "body.png")
    gate.files["f2"] = OutputFile(fake_image("other"), "image/png", "bottle.png")
    edit = {"prompt": "a gift basket", "image": [{"file_id": "f1"}, {"file_id": "f2"}]}
    result = await gate.run(edit, kind="image_edit", model="gpt-image-1")
    assert [u.filename for u in sent(fake)["image[]"]] == ["body.png", "bottle.png"]
    assert sent(fake)["image[]"][1].data == fake_image("other")
    assert result.usage["images"] == 1


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        ("just a prompt", "image_edit input must be"),
        ({"prompt": "x"}, "needs 'image'"),
        ({"prompt": "x", "image": "picture.png"}, "image must be {'file_id'"),
        ({"prompt": "x", "image": {"file_id": "nope"}}, "no file 'nope'"),
        ({"prompt": "x", "image": "data:image/png;base64,@@@"}, "not valid base64"),
    ],
)
async def test_bad_edit_inputs_fail_before_any_request(
    gate: ProviderHarness, fake: FakeOpenAI, edit: Any, needle: str
) -> None:
    error = await gate.fails(errors.InvalidInput, edit, kind="image_edit")
    assert needle in error.message
    assert fake.requests == []


async def test_a_file_that_is_not_an_image_gets_openais_400(gate: ProviderHarness) -> None:
    edit = {"prompt": "x", "image": data_uri(b"hello", "text/plain")}
    error = await gate.fails(errors.InvalidInput, edit, kind="image_edit", model="gpt-image-1")
    assert "unsupported mimetype ('text/plain')" in error.message
    assert error.details["provider_code"] == "invalid_image_format"


# --- transcription -----------------------------------------------------------------------


async def test_a_transcription_uploads_the_audio_and_returns_the_text(
    gate: ProviderHarness, fake: FakeOpenAI
) -> None:
    audio = {"file": data_uri(WAV, "audio/wav")}
    result = await gate.run(
        audio, kind="transcription", model="whisper-1", language="en", temperature=0.2
    )
    assert result.output == {"text": fake_transcript(WAV)}
    assert result.usage == {"seconds": 1}
    form = sent(fake)
    assert fake.requests[-1].path == "/v1/audio/transcriptions"
    assert form["file"] == Upload("audio.wav", "audio/wav", WAV)  # named so OpenAI knows it
    assert (form["model"], form["language"], form["temperature"]) == ("whisper-1", "en", "0.2")


async def test_verbose_json_keeps_segments_and_tokens_are_usage(
    gate: ProviderHarness, fake: FakeOpenAI
) -> None:
    gate.files["rec"] = OutputFile(WAV, "audio/x-wav", "meeting.wav")
    verbose = await gate.run(
        {"file_id": "rec"}, kind="transcription", model="whisper-1", response_format="verbose_json"
    )
    assert verbose.output["segments"][0]["text"] == fake_transcript(WAV)
    assert verbose.output["language"] == "english"
    assert sent(fake)["file"].filename == "meeting.wav"
    tokens = await gate.run({"file_id": "rec"}, kind="transcription", model="gpt-4o-transcribe")
    assert tokens.usage == {"input_tokens": 14, "output_tokens": 3}
    assert "usage" not in tokens.output


async def test_a_text_transcript_is_the_body(gate: ProviderHarness) -> None:
    result = await gate.run(
        data_uri(WAV, "audio/wav"), kind="transcription", model="whisper-1", response_format="srt"
    )
    assert result.output == {
        "text": f"1\n00:00:00,000 --> 00:00:01,000\n{fake_transcript(WAV)}\n\n",
        "format": "srt",
    }


async def test_audio_in_a_format_openai_does_not_take_gets_its_400(gate: ProviderHarness) -> None:
    error = await gate.fails(
        errors.InvalidInput,
        data_uri(WAV, "application/x-foo"),
        kind="transcription",
        model="whisper-1",
    )
    assert "Invalid file format" in error.message


# --- speech ------------------------------------------------------------------------------


async def test_speech_comes_back_as_an_audio_file(gate: ProviderHarness, fake: FakeOpenAI) -> None:
    result = await gate.run("Hello there.", kind="speech", model="tts-1")
    assert result.files == (OutputFile(fake_speech("Hello there."), "audio/mpeg", "speech.mp3"),)
    assert result.output == {"format": "mp3"}
    assert fake.requests[-1].path == "/v1/audio/speech"
    assert sent(fake) == {"model": "tts-1", "input": "Hello there.", "voice": "alloy"}


async def test_speech_params_choose_voice_format_and_speed(
    gate: ProviderHarness, fake: FakeOpenAI
) -> None:
    params = {"voice": "nova", "response_format": "wav", "speed": 1.5}
    result = await gate.run({"input": "Hi"}, kind="speech", model="tts-1-hd", **params)
    assert sent(fake) == {"model": "tts-1-hd", "input": "Hi", **params}
    assert result.files == (OutputFile(fake_speech("Hi", "wav"), "audio/wav", "speech.wav"),)


async def test_speech_errors(gate: ProviderHarness, fake: FakeOpenAI) -> None:
    error = await gate.fails(errors.InvalidInput, "Hi", kind="speech", model="tts-1", voice="robot")
    assert "Invalid value for 'voice': 'robot'" in error.message
    await gate.fails(errors.InvalidInput, {"nothing": 1}, kind="speech")
    assert len(fake.requests) == 1  # the second failed before any request
