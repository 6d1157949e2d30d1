"""The ``jimeng`` provider against the fake Volcengine visual API, over real HTTP on loopback:
signed requests, images (base64 and URL), video jobs (submit, poll, download) and every
error mapping, with the secret key in no error."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskgate import errors
from taskgate.providers import Job, Pending, Result, lookup
from taskgate.providers.jimeng import JimengProvider, action_url
from taskgate.providers.redact import scrub
from tests.e2e.conftest import free_port
from tests.fakes.jimeng_server import FakeJimeng
from tests.integration.provider_harness import ProviderHarness

AK = "AKLTjimengtest0123456789"
SK = "WTJWMGMyVmpjbVYwTFd0bGVTMW1iM0l0ZEdWemRITT0="
SECRET = f"{AK}:{SK}"


@pytest.fixture
async def fake() -> AsyncIterator[FakeJimeng]:
    async with FakeJimeng(access_key=AK, secret_key=SK, polls_to_finish=2) as server:
        yield server


def harness(endpoint: str | None, secret: str | None = SECRET, **options: Any) -> ProviderHarness:
    return ProviderHarness(
        "jimeng",
        endpoint,
        watch=SK,
        secret=secret,
        model="jimeng-2.1",
        instance_options=options,
        route_options={"output_urls_private": True},  # the fake serves its files on loopback
    )


@pytest.fixture
async def gate(fake: FakeJimeng) -> AsyncIterator[ProviderHarness]:
    async with harness(fake.base_url) as h:
        yield h


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def image(gate: ProviderHarness, prompt: Any = "a red fox", **params: Any) -> Result:
    out = await gate.run(prompt, kind="image", **params)
    assert isinstance(out, Result)
    return out


async def submit(gate: ProviderHarness, prompt: str = "a fox running", **params: Any) -> Job:
    out = await gate.provider.run(gate.call(prompt, "video", **params))
    assert isinstance(out, Job)
    return out


async def poll(gate: ProviderHarness, job: Job) -> Result | Pending:
    return await gate.provider.poll(gate.call("a fox running", "video"), job)


# --- requests and images -----------------------------------------------------------------


def test_registered_as_jimeng() -> None:
    assert lookup("jimeng") is JimengProvider


async def test_an_image_comes_back_as_a_file_from_base64(
    gate: ProviderHarness, fake: FakeJimeng
) -> None:
    result = await image(gate, size="512x384", seed=7, scale=5)
    [f] = result.files
    assert f.content_type == "image/png" and f.name == "image-1.png"
    assert png_size(f.data) == (512, 384)
    assert result.output["images"] == 1 and result.output["request_id"]
    sent = fake.requests[-1]
    assert sent.action == "CVProcess"
    assert sent.body == {
        "req_key": "jimeng_high_aes_general_v21_L",
        "prompt": "a red fox",
        "width": 512,
        "height": 384,
        "seed": 7,
        "scale": 5,
        "use_sr": True,
        "return_url": False,
        "logo_info": {"add_logo": False},
    }


async def test_the_request_is_signed_as_volcengine_wants(
    gate: ProviderHarness, fake: FakeJimeng
) -> None:
    await image(gate, {"prompt": "a red fox"}, width=288, height=512)
    headers = fake.requests[-1].headers
    assert headers["Authorization"].startswith(f"HMAC-SHA256 Credential={AK}/")
    assert (
        "/cn-north-1/cv/request, SignedHeaders=content-type;host;x-content-sha256;x-date,"
        in (headers["Authorization"])
    )
    assert headers["Host"] == f"127.0.0.1:{fake.port}"
    assert headers["Content-Type"] == "application/json"
    assert SK not in str(headers)


async def test_with_return_url_the_image_is_downloaded_from_its_url(
    gate: ProviderHarness, fake: FakeJimeng
) -> None:
    result = await image(gate, return_url=True)
    [f] = result.files
    assert f.content_type == "image/png" and png_size(f.data) == (512, 512)
    assert fake.requests[-1].body["return_url"] is True
    assert len(fake.files) == 1 and next(iter(fake.files.values()))[0] == f.data


async def test_an_expired_image_url_is_a_retryable_bad_response(
    gate: ProviderHarness, fake: FakeJimeng
) -> None:
    fake.script("expired_url")
    error = await gate.fails(errors.BadResponse, "a fox", kind="image", return_url=True)
    assert "expired or gone (HTTP 403)" in error.message
    assert "X-Tos-Signature" not in error.message  # the signed query is not quoted


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"size": "1024x1024"}, "size 1024x1024 is not offered"),
        ({"width": 512, "height": 500}, "size 512x500 is not offered"),
        ({"size": "big"}, "size must be WIDTHxHEIGHT"),
        ({"seed": "7"}, "param seed must be an integer"),
        ({"scale": True}, "param scale must be a number"),
        ({"use_sr": "yes"}, "param use_sr must be true or false"),
    ],
)
async def test_bad_image_params_fail_before_any_call(
    gate: ProviderHarness, fake: FakeJimeng, params: dict[str, Any], needle: str
) -> None:
    error = await gate.fails(errors.InvalidInput, "a fox", kind="image", **params)
    assert needle in error.message
    assert fake.requests == []


@pytest.mark.parametrize("prompt", ["", "   ", {"text": "x"}, 42])
async def test_a_missing_prompt_is_invalid_input(
    gate: ProviderHarness, fake: FakeJimeng, prompt: Any
) -> None:
    await gate.fails(errors.InvalidInput, prompt, kind="image")
    assert fake.requests == []


async def test_a_kind_it_does_not_serve_is_invalid_input(gate: ProviderHarness) -> None:
    await gate.fails(errors.InvalidInput, "hello", kind="chat")


async def test_a_req_key_the_service_does_not_know_is_invalid_input(fake: FakeJimeng) -> None:
    async with harness(fake.base_url, image_req_key="jimeng_nope") as h:
        error = await h.fails(errors.InvalidInput, "a fox", kind="image")
    assert error.details["provider_code"] == "50215"
    assert "Input invalid for this service" in error.message


# --- video jobs --------------------------------------------------------------------------


async def test_a_video_runs_as_a_job_polled_until_its_file_is_ready(
    gate: ProviderHarness, fake: FakeJimeng
) -> None:
    job = await submit(gate, aspect_ratio="9:16", seed=3)
    assert job.data == {"req_key": "jimeng_vgfm_t2v_l20"} and job.id in fake.tasks
    assert fake.requests[-1].action == "CVSync2AsyncSubmitTask"
    assert fake.requests[-1].body == {
        "req_key": "jimeng_vgfm_t2v_l20",
        "prompt": "a fox running",
        "seed": 3,
        "aspect_ratio": "9:16",
    }
    first = await poll(gate, job)
    assert first == Pending(progress={"status": "in_queue"})
    assert fake.requests[-1].action == "CVSync2AsyncGetResult"
    assert fake.requests[-1].body == {"req_key": "jimeng_vgfm_t2v_l20", "task_id": job.id}
    done = await poll(gate, job)
    assert isinstance(done, Result)
    [video] = done.files
    assert video.content_type == "video/mp4" and video.name == "video.mp4"
    assert video.data[4:8] == b"ftyp"
    assert done.output["task_id"] == job.id


async def test_a_video_waits_while_generating_until_the_backend_finishes(
    fake: FakeJimeng,
) -> None:
    fake.polls_to_finish = None
    async with harness(fake.base_url) as h:
        job = await submit(h)
        assert await poll(h, job) == Pending(progress={"status": "in_queue"})
        assert await poll(h, job) == Pending(progress={"status": "generating"})
        fake.finish(job.id)
        assert isinstance(await poll(h, job), Result)


async def test_a_job_kept_across_a_restart_is_polled_with_its_stored_req_key(
    gate: ProviderHarness, fake: FakeJimeng
) -> None:
    job = await submit(gate)
    async with harness(fake.base_url) as fresh:  # a new provider, as after a restart
        assert await poll(fresh, Job(job.id, dict(job.data))) == Pending(
            progress={"status": "in_queue"}
        )


@pytest.mark.parametrize("status", ["expired", "not_found"])
async def test_a_task_the_backend_lost_is_retryable(
    gate: ProviderHarness, fake: FakeJimeng, status: str
) -> None:
    job = await submit(gate)
    if status == "expired":
        fake.expire(job.id)
    else:
        job = Job("1234567890", job.data)
    with pytest.raises(errors.BadResponse) as caught:
        await poll(gate, job)
    assert caught.value.details["provider_code"] == status


async def test_an_expired_video_url_fails_the_poll_and_the_next_poll_gets_a_fresh_one(
    gate: ProviderHarness, fake: FakeJimeng
) -> None:
    job = await submit(gate)
    await poll(gate, job)
    fake.script("expired_url")
    with pytest.raises(errors.BadResponse, match="expired or gone"):
        await poll(gate, job)
    assert isinstance(await poll(gate, job), Result)


async def test_a_video_refused_after_generation_is_content_refused(
    gate: ProviderHarness, fake: FakeJimeng
) -> None:
    job = await submit(gate)
    fake.script("post_video_risk")
    with pytest.raises(errors.ContentRefused) as caught:
        await poll(gate, job)
    assert caught.value.details["provider_code"] == "50516"


@pytest.mark.parametrize(
    ("params", "needle"),
    [({"aspect_ratio": "2:1"}, "aspect_ratio '2:1' is not offered"), ({"seed": 1.5}, "seed")],
)
async def test_bad_video_params_fail_before_any_call(
    gate: ProviderHarness, fake: FakeJimeng, params: dict[str, Any], needle: str
) -> None:
    error = await gate.fails(errors.InvalidInput, "a fox", kind="video", **params)
    assert needle in error.message
    assert fake.requests == []


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "cls", "code", "status"),
    [
        ("qps_limit", errors.RateLimited, "50429", 429),
        ("concurrency_limit", errors.RateLimited, "50430", 429),
        ("internal", errors.Overloaded, "50500", 500),
        ("text_risk", errors.ContentRefused, "50412", 400),
        ("post_img_risk", errors.ContentRefused, "50511", 400),
        ("access_denied", errors.AuthFailed, "50400", 401),
    ],
)
async def test_service_errors_map_to_our_tree_with_their_code_and_message(
    gate: ProviderHarness,
    fake: FakeJimeng,
    mode: str,
    cls: type[errors.ProviderError],
    code: str,
    status: int,
) -> None:
    fake.script(mode)
    error = await gate.fails(cls, "a fox", kind="image")
    assert error.details == {"provider_code": code, "status": status}
    assert error.message.startswith(f"jimeng {code}: ")


async def test_an_html_500_is_overloaded_and_garbage_is_a_bad_response(
    gate: ProviderHarness, fake: FakeJimeng
) -> None:
    fake.script("http_500", "garbage")
    error = await gate.fails(errors.Overloaded, "a fox", kind="image")
    assert "500 Internal Server Error" in error.message
    await gate.fails(errors.BadResponse, "a fox", kind="image")


async def test_a_tampered_secret_key_is_auth_failed_without_the_key_in_it(
    fake: FakeJimeng,
) -> None:
    tampered = SK[:-2] + "x="
    async with harness(fake.base_url, secret=f"{AK}:{tampered}") as h:
        h.watch = tampered
        error = await h.fails(errors.AuthFailed, "a fox", kind="image")
    assert error.details == {"provider_code": "SignatureDoesNotMatch", "status": 401}
    assert "does not match" in error.message


async def test_another_access_key_is_auth_failed(fake: FakeJimeng) -> None:
    async with harness(fake.base_url, secret=f"AKLTother:{SK}") as h:
        error = await h.fails(errors.AuthFailed, "a fox", kind="image")
    assert error.details["provider_code"] == "InvalidAccessKey"
    assert "AKLTother" in error.message  # the access key id is no secret; the key is


async def test_a_clock_off_by_more_than_15_minutes_is_refused(
    gate: ProviderHarness, fake: FakeJimeng
) -> None:
    assert isinstance(gate.provider, JimengProvider)
    gate.provider.clock = lambda: datetime.now(UTC) - timedelta(minutes=16)
    error = await gate.fails(errors.AuthFailed, "a fox", kind="image")
    assert error.details == {"provider_code": "InvalidTimestamp", "status": 400}
    gate.provider.clock = lambda: datetime.now(UTC) - timedelta(minutes=14)
    assert (await image(gate)).files


async def test_the_scope_must_name_the_service_region(fake: FakeJimeng) -> None:
    async with harness(fake.base_url, region="cn-beijing") as h:
        error = await h.fails(errors.AuthFailed, "a fox", kind="image")
    assert error.details["provider_code"] == "SignatureDoesNotMatch"


@pytest.mark.parametrize("secret", [None, SK, f":{SK}"])
async def test_a_missing_or_malformed_secret_fails_without_calling(
    fake: FakeJimeng, secret: str | None
) -> None:
    async with harness(fake.base_url, secret=secret) as h:
        error = await h.fails(errors.AuthFailed, "a fox", kind="image")
    assert "ACCESS_KEY:SECRET_KEY" in error.message
    assert fake.requests == []


def test_the_secret_key_is_blanked_out_of_text_for_errors() -> None:
    call = harness(None).call("x", "image")
    assert scrub(f"a {SECRET} b {SK} c {AK}", call) == f"a *** b *** c {AK}"


async def test_an_unreachable_backend_is_connection_failed() -> None:
    async with harness(f"http://127.0.0.1:{free_port()}") as h:
        await h.fails(errors.ConnectionFailed, "a fox", kind="image")


def test_the_default_endpoint_is_volcengines() -> None:
    call = harness(None).call("x", "image")
    assert action_url(call, "CVProcess") == (
        "https://visual.volcengineapi.com/?Action=CVProcess&Version=2022-08-31"
    )
