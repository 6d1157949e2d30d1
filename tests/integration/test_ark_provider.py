"""The ``ark`` provider against the fake Ark server, over real HTTP on loopback."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from taskgate import errors
from taskgate.config import Instance, Route
from taskgate.providers import Job, OutputFile, Pending, Result, build, lookup
from taskgate.providers.ark import ArkProvider
from tests.fakes.ark_server import FakeArk
from tests.fakes.shelf import fake_image, fake_video
from tests.integration.provider_harness import ProviderHarness

KEY = "ark-4e0c1b7a-93d2-4f55-b8e6-2a71c0d9f3e4"
SEEDREAM = "doubao-seedream-3-0-t2i-250415"
SEEDANCE = "doubao-seedance-1-0-pro-250528"
PNG = fake_image("first frame")


@pytest.fixture
async def fake() -> AsyncIterator[FakeArk]:
    async with FakeArk(key=KEY) as server:
        yield server


@pytest.fixture
async def gate(fake: FakeArk) -> AsyncIterator[ProviderHarness]:
    async with ProviderHarness(
        "ark",
        fake.base_url,
        watch=KEY,
        secret=KEY,
        model="doubao-pro-4k",
        # the tests pass https image URLs; the fake serves its outputs on loopback
        route_options={"client_media_urls": True, "output_urls_private": True},
    ) as h:
        yield h


def sent(fake: FakeArk) -> Any:
    return fake.requests[-1].body


async def submit(gate: ProviderHarness, input: Any = "a cat", **params: Any) -> Job:
    job = await gate.provider.run(
        gate.call(input, "video", params.pop("model", SEEDANCE), **params)
    )
    assert isinstance(job, Job)
    return job


async def poll(gate: ProviderHarness, job: Job) -> Result | Pending:
    return await gate.provider.poll(gate.call(None, "video", SEEDANCE), job)


def test_registered_with_a_default_endpoint() -> None:
    assert lookup("ark") is ArkProvider
    route = Route(name="r", models=["*"], provider="ark", instances=[Instance(name="bare")])
    assert isinstance(build(route), ArkProvider)


# --- chat --------------------------------------------------------------------------------


async def test_chat_is_openais_protocol_on_ark_paths(gate: ProviderHarness, fake: FakeArk) -> None:
    result = await gate.run("hello there")
    assert result.output == {
        "text": "echo: hello there",
        "reasoning": None,
        "finish_reason": "stop",
    }
    assert fake.requests[-1].path == "/api/v3/chat/completions"
    assert fake.requests[-1].headers["Authorization"] == f"Bearer {KEY}"
    assert sent(fake) == {
        "model": "doubao-pro-4k",
        "messages": [{"role": "user", "content": "hello there"}],
    }


async def test_a_thinking_model_streams_its_reasoning_apart(gate: ProviderHarness) -> None:
    result = await gate.run("why", model="doubao-seed-1-6-250615", stream=True)
    assert gate.deltas("reasoning_delta") == ["thinking ", "about: ", "why"]
    assert gate.deltas() == ["echo: ", "why"]
    assert result.output["reasoning"] == "thinking about: why"


# --- images ------------------------------------------------------------------------------


async def test_seedream_image_is_downloaded_without_a_watermark_by_default(
    gate: ProviderHarness, fake: FakeArk
) -> None:
    result = await gate.run("a red fox", kind="image", model=SEEDREAM)
    assert sent(fake) == {"model": SEEDREAM, "prompt": "a red fox", "watermark": False}
    assert fake.requests[-1].path == "/api/v3/images/generations"
    assert result.files == (OutputFile(fake_image("a red fox"), "image/png", "image-1.png"),)
    assert result.output["images"][0]["source_url"].endswith(".png")
    assert result.usage == {"images": 1, "output_tokens": 4096}


async def test_seedream_params_are_passed_and_watermark_can_be_asked_for(
    gate: ProviderHarness, fake: FakeArk
) -> None:
    params = {"size": "1280x720", "seed": 42, "guidance_scale": 3.5, "response_format": "b64_json"}
    result = await gate.run(
        {"prompt": "a lake"}, kind="image", model=SEEDREAM, watermark=True, **params
    )
    assert sent(fake) == {"model": SEEDREAM, "prompt": "a lake", "watermark": True, **params}
    assert result.files[0].data == fake_image("a lake")
    assert fake.shelf.downloads == []


async def test_a_size_seedream_3_does_not_make_is_arks_invalid_parameter(
    gate: ProviderHarness,
) -> None:
    error = await gate.fails(
        errors.InvalidInput, "x", kind="image", model=SEEDREAM, size="2048x2048"
    )
    assert "`size`" in error.message
    assert error.details == {"provider_code": "InvalidParameter", "status": 400}


async def test_an_expired_image_url_is_a_bad_response(gate: ProviderHarness, fake: FakeArk) -> None:
    fake.script("expired_url")
    error = await gate.fails(errors.BadResponse, "x", kind="image", model=SEEDREAM)
    assert "expired or gone (HTTP 403)" in error.message


@pytest.mark.parametrize(
    ("mode", "cls", "code"),
    [
        ("sensitive", errors.ContentRefused, "InputTextSensitiveContentDetected"),
        ("rate_limit", errors.RateLimited, "RateLimitExceeded.EndpointRPMExceeded"),
        ("overloaded", errors.Overloaded, "ServerOverloaded"),
        ("server_error", errors.Overloaded, "InternalServiceError"),
        ("revoked", errors.AuthFailed, "AuthenticationError"),
    ],
)
async def test_arks_codes_decide_the_error(
    gate: ProviderHarness, fake: FakeArk, mode: str, cls: type[errors.ProviderError], code: str
) -> None:
    fake.script(mode)
    error = await gate.fails(cls, "x", kind="image", model=SEEDREAM)
    assert error.details["provider_code"] == code
    assert "Request id:" in error.message
    if mode == "rate_limit":
        assert error.retry_after == 1.0
    if mode == "revoked":
        assert "The API key *** in the request is invalid" in error.message


async def test_a_model_ark_does_not_serve_is_invalid_input(gate: ProviderHarness) -> None:
    error = await gate.fails(errors.InvalidInput, "x", kind="image", model="doubao-nope")
    assert error.details == {"provider_code": "InvalidEndpointOrModel.NotFound", "status": 404}


async def test_a_kind_ark_does_not_serve_fails_before_any_request(
    gate: ProviderHarness, fake: FakeArk
) -> None:
    error = await gate.fails(errors.InvalidInput, "x", kind="embedding")
    assert "serves chat, image, video, not kind 'embedding'" in error.message
    assert fake.requests == []


# --- video -------------------------------------------------------------------------------


async def test_a_video_is_a_job_polled_until_its_file_is_downloaded(
    gate: ProviderHarness, fake: FakeArk
) -> None:
    job = await submit(gate, "a cat", ratio="16:9", duration=5, camerafixed=True)
    assert job.id.startswith("cgt-") and job.data == {"model": SEEDANCE}
    text = "a cat --ratio 16:9 --duration 5 --camerafixed true --watermark false"
    assert sent(fake) == {"model": SEEDANCE, "content": [{"type": "text", "text": text}]}
    assert await poll(gate, job) == Pending(progress={"status": "running"})
    done = await poll(gate, job)
    assert isinstance(done, Result)
    assert done.files == (OutputFile(fake_video(job.id), "video/mp4", "video.mp4"),)
    video = done.output["video"]
    assert (video["id"], video["model"], video["ratio"], video["duration"]) == (
        job.id,
        SEEDANCE,
        "16:9",
        5,
    )
    assert "?" not in video["source_url"]
    assert done.usage == {"output_tokens": 108900, "seconds": 5}
    assert fake.requests[-1].method == "GET"
    assert fake.requests[-1].path == f"/api/v3/contents/generations/tasks/{job.id}"


async def test_aspect_ratio_is_sent_as_arks_ratio(gate: ProviderHarness, fake: FakeArk) -> None:
    await submit(gate, "a dog", aspect_ratio="9:16")
    assert sent(fake)["content"][0]["text"] == "a dog --ratio 9:16 --watermark false"
    await submit(gate, "a dog", aspect_ratio="9:16", ratio="1:1")  # Ark's own name wins
    assert sent(fake)["content"][0]["text"] == "a dog --ratio 1:1 --watermark false"


async def test_a_job_waits_for_finish_when_polls_do_not_end_it(
    fake: FakeArk, gate: ProviderHarness
) -> None:
    fake.polls_to_finish = None
    job = await submit(gate)
    for _ in range(3):
        assert isinstance(await poll(gate, job), Pending)
    fake.finish(job.id)
    assert isinstance(await poll(gate, job), Result)


async def test_first_and_last_frames_go_with_their_roles(
    gate: ProviderHarness, fake: FakeArk
) -> None:
    gate.files["last"] = OutputFile(PNG, "image/png", "last.png")
    uri = f"data:image/png;base64,{base64.b64encode(PNG).decode()}"
    await submit(gate, {"prompt": "", "image": uri, "last_frame": {"file_id": "last"}})
    assert sent(fake)["content"] == [
        {"type": "text", "text": "--watermark false"},
        {"type": "image_url", "image_url": {"url": uri}, "role": "first_frame"},
        {"type": "image_url", "image_url": {"url": uri}, "role": "last_frame"},
    ]


async def test_reference_images_and_a_plain_first_frame(
    gate: ProviderHarness, fake: FakeArk
) -> None:
    url = "https://example.com/ref.png"
    await submit(
        gate,
        {"prompt": "a dog", "reference_images": [url, url]},
        model="doubao-seedance-1-0-lite-i2v",
    )
    assert [c.get("role") for c in sent(fake)["content"]] == [
        None,
        "reference_image",
        "reference_image",
    ]
    await submit(gate, {"prompt": "a dog", "image": url}, model="doubao-seedance-1-0-lite-i2v")
    assert sent(fake)["content"][1] == {"type": "image_url", "image_url": {"url": url}}


@pytest.mark.parametrize(
    ("input", "params", "needle"),
    [
        ({"prompt": 3}, {}, "video input must be"),
        ({"prompt": ""}, {}, "needs a prompt, an image or both"),
        ("a cat", {"ratio": "16:9 --watermark true"}, "param ratio"),
        ({"prompt": "x", "reference_images": "one.png"}, {}, "reference_images must be a list"),
    ],
)
async def test_bad_video_inputs_fail_before_any_request(
    gate: ProviderHarness, fake: FakeArk, input: Any, params: dict[str, Any], needle: str
) -> None:
    with pytest.raises(errors.InvalidInput, match=needle):
        await submit(gate, input, **params)
    assert fake.requests == []


async def test_ark_refuses_an_image_for_a_text_to_video_model(gate: ProviderHarness) -> None:
    with pytest.raises(errors.InvalidInput, match="does not support image input"):
        await submit(
            gate,
            {"prompt": "x", "image": "https://example.com/a.png"},
            model="doubao-seedance-1-0-lite-t2v",
        )


@pytest.mark.parametrize(
    ("mode", "cls", "code"),
    [
        ("task_sensitive", errors.ContentRefused, "OutputVideoSensitiveContentDetected"),
        ("task_error", errors.Overloaded, "InternalServiceError"),
    ],
)
async def test_a_failed_job_raises_the_error_its_code_means(
    gate: ProviderHarness, fake: FakeArk, mode: str, cls: type[errors.ProviderError], code: str
) -> None:
    fake.script(mode)
    job = await submit(gate)
    await poll(gate, job)
    with pytest.raises(cls) as caught:
        await poll(gate, job)
    assert caught.value.details["provider_code"] == code


async def test_a_throttled_poll_and_an_expired_video_url(
    gate: ProviderHarness, fake: FakeArk
) -> None:
    job = await submit(gate)
    fake.script("rate_limit")
    with pytest.raises(errors.RateLimited) as caught:
        await poll(gate, job)
    assert caught.value.retry_after == 1.0
    fake.script("expired_url")
    await poll(gate, job)  # running
    with pytest.raises(errors.BadResponse, match="expired or gone"):
        await poll(gate, job)


async def test_a_job_ark_no_longer_knows_is_a_bad_response(gate: ProviderHarness) -> None:
    with pytest.raises(errors.BadResponse, match="is gone on Ark's side") as caught:
        await poll(gate, Job("cgt-20250101000000-zzzzz"))
    assert caught.value.details["provider_code"] == "ResourceNotFound"


async def test_cancel_job_deletes_a_queued_task(gate: ProviderHarness, fake: FakeArk) -> None:
    job = await submit(gate)
    await gate.provider.cancel_job(gate.call(None, "video", SEEDANCE), job)
    assert (fake.requests[-1].method, fake.requests[-1].path) == (
        "DELETE",
        f"/api/v3/contents/generations/tasks/{job.id}",
    )
    assert fake.cancelled == [job.id]
    with pytest.raises(errors.PermanentError, match="cancelled on Ark's side"):
        await poll(gate, job)


async def test_cancel_job_of_a_running_task_is_logged_not_raised(
    gate: ProviderHarness, fake: FakeArk, caplog: pytest.LogCaptureFixture
) -> None:
    job = await submit(gate)
    await poll(gate, job)  # now running
    with caplog.at_level(logging.INFO, logger="taskgate.providers.ark"):
        await gate.provider.cancel_job(gate.call(None, "video", SEEDANCE), job)
    assert fake.requests[-1].method == "DELETE"
    assert fake.cancelled == []
    assert f"Ark did not cancel video job {job.id}" in caplog.text
    assert KEY not in caplog.text
