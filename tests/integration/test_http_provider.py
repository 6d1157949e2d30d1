"""The ``http`` provider against a small fake model server, over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

import taskgate.providers.http  # noqa: F401  (registers "http")
from taskgate import errors
from taskgate.config import Instance, Route
from taskgate.providers import Call, build
from tests.e2e.conftest import free_port
from tests.fakes.http_server import FakeServer
from tests.integration.provider_harness import ProviderHarness

KEY = "in-house-5e1b7c9a20d3"


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    async with FakeServer() as server:
        yield server


def harness(endpoint: str, secret: str | None = KEY, **options: Any) -> ProviderHarness:
    return ProviderHarness(
        "http", endpoint, watch=KEY, secret=secret, model="m-1", route_options=options
    )


AUTH = {"Authorization": "Bearer {secret}", "X-Team": "search"}


# --- requests ----------------------------------------------------------------------------


async def test_the_default_request(fake: FakeServer) -> None:
    async with harness(fake.base_url) as h:
        result = await h.run({"text": "hi"}, temperature=0.2)
    sent = fake.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/")
    assert sent.headers["Content-Type"] == "application/json"
    assert "Authorization" not in sent.headers
    assert sent.body == {"model": "m-1", "input": {"text": "hi"}, "params": {"temperature": 0.2}}
    assert result.output == {"echo": sent.body, "usage": {"tokens": 3}}
    assert result.usage == {}


async def test_method_path_headers_and_rendered_body(fake: FakeServer) -> None:
    body = {
        "query": "{{input.query}}",
        "k": "{{params.top_k}}",
        "opts": {"ids": "{{input.ids}}", "kind": "{{kind}}", "id": "{{task_id}}"},
        "fixed": [1, "two", None],
    }
    async with harness(
        fake.base_url + "/api/", method="put", path="/v2/rank", headers=AUTH, body=body
    ) as h:
        await h.run({"query": "cats", "ids": [3, 4]}, kind="rank", top_k=5)
    sent = fake.requests[-1]
    assert (sent.method, sent.path) == ("PUT", "/api/v2/rank")
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["X-Team"] == "search"
    assert sent.body == {
        "query": "cats",
        "k": 5,
        "opts": {"ids": [3, 4], "kind": "rank", "id": "t1"},
        "fixed": [1, "two", None],
    }


async def test_instance_options_win_over_route_options(fake: FakeServer) -> None:
    instance = Instance(name="b", endpoint=fake.base_url, options={"path": "/from-instance"})
    route = Route(
        name="r", models=["*"], provider="http", instances=[instance], options={"path": "/route"}
    )
    provider = build(route)
    try:
        call = Call("t1", "chat", "m", "x", {}, 1, instance, route)
        await provider.run(call)
    finally:
        await provider.aclose()
    assert fake.requests[-1].path == "/from-instance"


async def test_a_null_body_sends_nothing(fake: FakeServer) -> None:
    async with harness(fake.base_url, method="GET", path="/health", body=None) as h:
        result = await h.run()
    assert fake.requests[-1].method == "GET"
    assert fake.requests[-1].body is None
    assert result.output["echo"] is None


async def test_a_configured_content_type_replaces_the_default(fake: FakeServer) -> None:
    async with harness(fake.base_url, headers={"content-type": "application/vnd.x+json"}) as h:
        await h.run()
    assert fake.requests[-1].headers["Content-Type"] == "application/vnd.x+json"


async def test_a_missing_input_field_is_invalid_input(fake: FakeServer) -> None:
    async with harness(fake.base_url, body={"q": "{{input.query}}"}) as h:
        error = await h.fails(errors.InvalidInput, {"other": 1})
    assert "'query'" in error.message
    assert fake.requests == []


async def test_a_secret_header_without_a_secret_is_auth_failed(fake: FakeServer) -> None:
    async with harness(fake.base_url, secret=None, headers=AUTH) as h:
        await h.fails(errors.AuthFailed)
    assert fake.requests == []


# --- replies -----------------------------------------------------------------------------


async def test_result_path_and_usage_path_pick_from_the_reply(fake: FakeServer) -> None:
    fake.reply(
        body={
            "choices": [{"message": {"content": "hello!", "role": "assistant"}}],
            "meta": {"usage": {"input_tokens": 2, "output_tokens": 1}},
        }
    )
    async with harness(
        fake.base_url, result_path="choices.0.message.content", usage_path="meta.usage"
    ) as h:
        result = await h.run()
    assert result.output == {"value": "hello!"}
    assert result.usage == {"input_tokens": 2, "output_tokens": 1}


async def test_a_mapping_is_the_output_as_it_is(fake: FakeServer) -> None:
    fake.reply(body={"data": [{"label": "cat", "score": 0.9}]})
    async with harness(fake.base_url, result_path="data.0") as h:
        assert (await h.run()).output == {"label": "cat", "score": 0.9}


async def test_a_list_or_null_result_is_wrapped(fake: FakeServer) -> None:
    fake.reply(body=[1, 2])
    fake.reply(body={"x": None})
    async with harness(fake.base_url, result_path="") as h:
        assert (await h.run()).output == {"value": [1, 2]}
    async with harness(fake.base_url, result_path="x") as h:
        assert (await h.run()).output == {"value": None}


async def test_a_missing_result_path_is_bad_response(fake: FakeServer) -> None:
    fake.reply(body={"choices": [], "note": KEY})
    async with harness(fake.base_url, headers=AUTH, result_path="choices.0.message.content") as h:
        error = await h.fails(errors.BadResponse)
    assert "result_path 'choices.0.message.content'" in error.message
    assert "***" in error.message  # the reply quoted, with the secret blanked out


async def test_a_usage_path_that_is_not_a_mapping_is_bad_response(fake: FakeServer) -> None:
    fake.reply(body={"out": 1, "usage": 5})
    async with harness(fake.base_url, result_path="out", usage_path="usage") as h:
        error = await h.fails(errors.BadResponse)
    assert "usage_path 'usage'" in error.message


async def test_a_missing_usage_path_is_bad_response(fake: FakeServer) -> None:
    async with harness(fake.base_url, usage_path="meta.usage") as h:
        error = await h.fails(errors.BadResponse)
    assert "usage_path 'meta.usage'" in error.message


async def test_a_reply_that_is_not_json_is_bad_response(fake: FakeServer) -> None:
    fake.reply(text="<html>ok?</html>", content_type="text/html")
    async with harness(fake.base_url) as h:
        error = await h.fails(errors.BadResponse)
    assert "not JSON" in error.message
    assert "<html>ok?</html>" in error.message


# --- HTTP errors -------------------------------------------------------------------------


async def test_429_with_retry_after_is_rate_limited(fake: FakeServer) -> None:
    fake.reply(
        429, {"error": {"message": "slow down", "code": "rate"}}, headers={"Retry-After": "7"}
    )
    async with harness(fake.base_url) as h:
        error = await h.fails(errors.RateLimited)
    assert error.retry_after == 7.0
    assert error.message == "slow down"
    assert error.details == {"provider_code": "rate", "status": 429}


async def test_500_is_overloaded(fake: FakeServer) -> None:
    fake.reply(500, text="Internal Server Error")
    async with harness(fake.base_url) as h:
        error = await h.fails(errors.Overloaded)
    assert error.message == "Internal Server Error"
    assert error.retry_after is None


async def test_422_detail_is_invalid_input_with_that_message(fake: FakeServer) -> None:
    fake.reply(422, {"detail": "bad field"})
    async with harness(fake.base_url) as h:
        error = await h.fails(errors.InvalidInput)
    assert error.message == "bad field"
    assert error.details["status"] == 422


async def test_a_message_field_is_used(fake: FakeServer) -> None:
    fake.reply(400, {"message": "prompt too long"})
    async with harness(fake.base_url) as h:
        assert (await h.fails(errors.InvalidInput)).message == "prompt too long"


async def test_401_quoting_the_key_is_auth_failed_without_the_key(fake: FakeServer) -> None:
    fake.reply(401, {"detail": f"bad key {KEY}"})
    async with harness(fake.base_url, headers=AUTH) as h:
        error = await h.fails(errors.AuthFailed)
    assert error.message == "bad key ***"


def quoting_the_key_at(cut: int, kept: int) -> str:
    """A text whose key starts ``kept`` characters before ``cut``."""
    return "x" * (cut - len("Bearer ") - kept) + f"Bearer {KEY} and more"


@pytest.mark.parametrize("kept", [1, 4, 10, len(KEY) - 1])
@pytest.mark.parametrize("as_json", [False, True])
async def test_an_error_quoting_the_key_across_the_cut_shows_no_part_of_it(
    fake: FakeServer, kept: int, as_json: bool
) -> None:
    text = quoting_the_key_at(300, kept)
    if as_json:
        fake.reply(500, {"detail": text})
    else:
        fake.reply(500, text=text)
    async with harness(fake.base_url) as h:
        error = await h.fails(errors.Overloaded)
    assert "Bearer *" in error.message and KEY[:4] not in error.message
    assert len(error.message) <= 300


async def test_a_bad_reply_quoting_the_key_across_the_cut_shows_no_part_of_it(
    fake: FakeServer,
) -> None:
    fake.reply(text=quoting_the_key_at(300 - len("a reply that is not JSON: "), 12))
    async with harness(fake.base_url) as h:
        error = await h.fails(errors.BadResponse)
    assert "Bearer ***" in error.message and KEY[:4] not in error.message


async def test_a_silent_server_times_out(fake: FakeServer) -> None:
    async with harness(fake.base_url, path="/slow", read_timeout=0.2) as h:
        error = await h.fails(errors.ProviderTimeout)
    assert "timed out" in error.message


async def test_connection_refused_is_connection_failed() -> None:
    async with harness(f"http://127.0.0.1:{free_port()}", headers=AUTH) as h:
        error = await h.fails(errors.ConnectionFailed)
    assert "connection to http://127.0.0.1:" in error.message
