"""The OpenAI dialect's pure parts: request bodies to submissions, ended tasks to replies and
errors, the stream's chunks (retries, lost deltas), the wait limit, the shared-path dispatch."""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response

from taskgate.api import openai_api
from taskgate.api import openai_wire as wire
from taskgate.api.openai_watch import ChatStream, max_wait
from taskgate.config import Settings
from taskgate.errors import BadRequest
from taskgate.files import FileLinks
from taskgate.gateway import Gateway
from taskgate.models import Priority, Status, Task

HELLO = [{"role": "user", "content": "hi"}]


def make_task(status: Status = Status.SUCCESS, **fields: Any) -> Task:
    now = time.time()
    base: dict[str, Any] = {
        "id": "t1",
        "tenant": "acme",
        "api_key_id": "k1",
        "kind": "chat",
        "model": "gpt-4o",
        "route": "r",
        "priority": Priority.DEFAULT,
        "status": status,
        "input": None,
        "params": {},
        "created_at": now,
        "updated_at": now,
    }
    return Task(**{**base, **fields})


def chunks(raw: bytes) -> list[Any]:
    """The data of each server-sent event; ``[DONE]`` as the string."""
    out = []
    for event in raw.split(b"\n\n"):
        if event.startswith(b"data: "):
            data = event[6:]
            out.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    return out


def deltas(raw: bytes) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks(raw) if c != "[DONE]" and c["choices"]]


# --- requests ------------------------------------------------------------------------------


def test_a_chat_body_becomes_a_chat_task_with_its_other_fields_as_params() -> None:
    body = {"model": "gpt-4o", "messages": HELLO, "temperature": 0.3, "tools": [], "n": 1}
    chat = wire.chat_request(body, {"x-taskgate-priority": "low", "idempotency-key": "k-1"})
    sub = chat.submission
    assert (sub.kind, sub.model, sub.input) == ("chat", "gpt-4o", {"messages": HELLO})
    assert sub.params == {"temperature": 0.3, "tools": []}
    assert (sub.priority, sub.idempotency_key) == (Priority.LOW, "k-1")
    assert sub.queue_timeout == wire.DEFAULT_QUEUE_TIMEOUT
    assert not chat.stream and not chat.include_usage
    streamed = wire.chat_request(
        {**body, "stream": True, "stream_options": {"include_usage": True}}, {}
    )
    assert streamed.stream and streamed.include_usage
    assert streamed.submission.params["stream"] is True


@pytest.mark.parametrize(
    ("body", "headers", "field"),
    [
        ({"messages": HELLO}, {}, "model"),
        ({"model": "m", "messages": []}, {}, "messages"),
        ({"model": "m", "messages": [{"role": "robot"}]}, {}, "messages"),
        ({"model": "m", "messages": HELLO, "n": 3}, {}, "n"),
        ({"model": "m", "messages": HELLO, "stream": "yes"}, {}, "stream"),
        ({"model": "m", "messages": HELLO}, {"x-taskgate-priority": "asap"}, "X-Taskgate-Priority"),
        ({"model": "m", "messages": HELLO}, {"x-taskgate-queue-timeout": "-1"}, None),
    ],
)
def test_chat_bodies_that_are_refused(
    body: dict[str, Any], headers: dict[str, str], field: str | None
) -> None:
    with pytest.raises(BadRequest) as caught:
        wire.chat_request(body, headers)
    assert caught.value.details.get("field") == (field or "X-Taskgate-Queue-Timeout")


def test_images_keep_the_answer_format_to_taskgate() -> None:
    body = {"model": "gpt-image-1", "prompt": "a fox", "n": 2, "response_format": "b64_json"}
    sub, b64 = wire.image_request(body, {})
    assert b64 and sub.input == "a fox"
    assert sub.params == {"n": 2, "return_base64": True}  # response_format is not sent on
    with pytest.raises(BadRequest):
        wire.image_request({**body, "response_format": "gif"}, {})


def test_embedding_input_must_be_text() -> None:
    assert wire.embedding_request({"model": "e", "input": ["a", "b"]}, {}).input == ["a", "b"]
    with pytest.raises(BadRequest, match="token arrays"):
        wire.embedding_request({"model": "e", "input": [1, 2, 3]}, {})


# --- replies and errors ----------------------------------------------------------------------


def test_a_completion_carries_reasoning_tool_calls_and_usage() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    output = {"text": "", "reasoning": "hmm", "finish_reason": None, "tool_calls": [call]}
    usage = {"input_tokens": 3, "output_tokens": 4}
    reply = wire.completion(make_task(result={"output": output, "usage": usage}))
    message = reply["choices"][0]["message"]
    assert message == {
        "role": "assistant",
        "content": None,
        "reasoning_content": "hmm",
        "tool_calls": [call],
    }
    assert reply["choices"][0]["finish_reason"] == "tool_calls"
    assert reply["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert reply["id"] == "chatcmpl-t1" and reply["object"] == "chat.completion"


@pytest.mark.parametrize(
    ("error", "status", "final"),
    [
        ({"type": "invalid_input", "message": "bad", "provider_code": "x"}, 400, True),
        ({"type": "content_refused", "message": "no"}, 400, True),
        ({"type": "rate_limited", "message": "slow down", "retry_after": 2.4}, 429, False),
        ({"type": "overloaded", "message": "busy"}, 503, False),
        ({"type": "bad_response", "message": "garbage"}, 502, False),
        ({"type": "auth_failed", "message": "our key"}, 502, True),
        ({"type": "permanent", "message": "plugin bug"}, 500, True),
    ],
)
def test_a_failed_task_maps_to_an_openai_error(
    error: dict[str, Any], status: int, final: bool
) -> None:
    response = wire.task_failure(make_task(Status.FAILED, error=error))
    body = orjson.loads(response.body)["error"]
    assert response.status_code == status
    assert body["message"] == error["message"]
    assert body["code"] == error.get("provider_code", error["type"])
    assert (response.headers.get("x-should-retry") == "false") is final
    assert response.headers["x-taskgate-task-id"] == "t1"
    if "retry_after" in error:
        assert response.headers["retry-after"] == "2"


def test_timeouts_and_cancellations() -> None:
    timed_out = wire.task_failure(make_task(Status.TIMEOUT, error={"type": "timeout"}))
    assert timed_out.status_code == 504
    cancelled = wire.task_failure(make_task(Status.CANCELLED, error=None))
    assert cancelled.status_code == 409
    assert orjson.loads(cancelled.body)["error"]["code"] == "cancelled"


def test_refusals_of_the_request_name_the_parameter() -> None:
    unknown = wire.refusal(BadRequest("unknown model 'x': no route serves it", field="model"))
    assert orjson.loads(unknown.body)["error"] == {
        "message": "unknown model 'x': no route serves it",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


def test_embeddings_as_base64_float32_and_from_a_single_vector_output() -> None:
    task = make_task(result={"output": {"embeddings": [[0.5, -1.0]]}, "usage": {}})
    packed = wire.embeddings_reply(task, "base64")["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(packed)) == (0.5, -1.0)
    single = make_task(result={"output": {"embedding": [0.25]}})
    assert wire.embeddings_reply(single, "float")["data"] == [
        {"object": "embedding", "index": 0, "embedding": [0.25]}
    ]


def test_image_urls_are_taskgates_own_and_absolute() -> None:
    files = [{"id": "f1", "url": "/v1/files/f1", "b64_json": "QUJD"}]
    output = {"images": [{"revised_prompt": "better"}]}
    task = make_task(result={"output": output, "files": files})
    links = FileLinks("s3cret", 60, clock=lambda: 1020.0)
    [image] = wire.images_reply(task, lambda f: links.url(f, "http://h:1/"), False)["data"]
    assert image == {"url": "http://h:1" + links.path("f1"), "revised_prompt": "better"}
    assert image["url"].startswith("http://h:1/v1/files/f1?expires=1080&signature=")
    assert wire.images_reply(task, links.url, True)["data"][0]["b64_json"] == "QUJD"


# --- streams -------------------------------------------------------------------------------


def progress(text: str, key: str = "delta") -> dict[str, Any]:
    return {"type": "progress", "data": {key: text}}


def test_a_stream_sends_each_delta_then_the_end() -> None:
    stream = ChatStream(make_task(Status.PROCESSING), include_usage=True)
    raw = stream.opening() + stream.on_event({"type": "started", "attempt": 1})
    raw += stream.on_event(progress("why ", "reasoning_delta")) + stream.on_event(progress("he"))
    raw += stream.on_event(progress("llo"))
    output = {"text": "hello", "reasoning": "why ", "finish_reason": "stop"}
    done = make_task(result={"output": output, "usage": {"input_tokens": 1, "output_tokens": 2}})
    raw += stream.closing(done)
    assert deltas(raw) == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "why "},
        {"content": "he"},
        {"content": "llo"},
        {},
    ]
    events = chunks(raw)
    assert events[-1] == "[DONE]"
    assert events[-2]["choices"] == [] and events[-2]["usage"]["total_tokens"] == 3
    assert [e["choices"][0]["finish_reason"] for e in events[:-2]][-1] == "stop"


def test_a_retried_attempt_does_not_repeat_what_the_client_has() -> None:
    stream = ChatStream(make_task(Status.PROCESSING), include_usage=False)
    raw = stream.on_event({"type": "started", "attempt": 1})
    raw += stream.on_event(progress("one ")) + stream.on_event(progress("two "))
    raw += stream.on_event({"type": "retrying"}) + stream.on_event(
        {"type": "started", "attempt": 2}
    )
    for piece in ("one ", "tw", "o three"):
        raw += stream.on_event(progress(piece))
    raw += stream.closing(make_task(result={"output": {"text": "one two three"}}))
    assert "".join(d.get("content", "") for d in deltas(raw)) == "one two three"
    assert chunks(raw)[-1] == "[DONE]" and "usage" not in chunks(raw)[-2]


def test_deltas_lost_on_the_way_are_sent_at_the_end_and_tool_calls_whole() -> None:
    stream = ChatStream(make_task(Status.PROCESSING), include_usage=False)
    raw = stream.on_event(progress("The answer "))
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    output = {"text": "The answer is 42", "tool_calls": [call]}
    raw += stream.closing(make_task(result={"output": output}))
    got = deltas(raw)
    assert got[:2] == [{"content": "The answer "}, {"content": "is 42"}]
    assert got[2] == {"tool_calls": [{"index": 0, **call}]}
    assert chunks(raw)[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_failure_mid_stream_is_an_error_event() -> None:
    stream = ChatStream(make_task(Status.PROCESSING), include_usage=False)
    failed = make_task(Status.FAILED, error={"type": "overloaded", "message": "down"})
    events = chunks(stream.closing(failed))
    assert events == [
        {"error": {"message": "down", "type": "server_error", "param": None, "code": "overloaded"}},
        "[DONE]",
    ]


# --- the wait limit; the shared path ---------------------------------------------------------


def test_the_wait_covers_the_queue_and_every_attempt_of_every_reachable_route() -> None:
    route = {"provider": "mock", "instances": [{"name": "i"}]}
    settings = Settings.model_validate(
        {
            "routes": [
                {
                    **route,
                    "name": "a",
                    "models": ["a"],
                    "timeout": 10,
                    "fallbacks": ["b"],
                    "retry": {"max_attempts": 2, "backoff_max": 1},
                },
                {
                    **route,
                    "name": "b",
                    "models": ["b"],
                    "timeout": 20,
                    "fallbacks": ["a"],
                    "retry": {"max_attempts": 1, "backoff_max": 5},
                },
            ]
        }
    )

    gw = Gateway(settings, store=None, events=None)  # type: ignore[arg-type]  # not used
    task = make_task(Status.PENDING, route="a", deadline=time.time() + 30)
    assert max_wait(gw, task) == pytest.approx(30 + 2 * 11 + 25 + 5, abs=0.1)


@pytest.fixture
def other_chat() -> Iterator[list[Request]]:
    seen: list[Request] = []
    saved = list(openai_api._other_chat)

    async def handler(request: Request) -> Response:
        seen.append(request)
        return Response(await request.body(), status_code=202)

    openai_api.serve_other_chat(handler)
    yield seen
    openai_api._other_chat[:] = saved


def request(body: bytes, content_type: str = "application/json") -> Request:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    headers = [(b"content-type", content_type.encode())]
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers}
    return Request(scope, receive)


async def test_bodies_without_messages_go_to_the_other_dialect(other_chat: list[Request]) -> None:
    for body, kind in ((b'{"prompt": "hi", "model": "m"}', "json"), (b"prompt=hi", "form")):
        content_type = "application/json" if kind == "json" else "application/x-www-form-urlencoded"
        response = await openai_api.shared_chat_completions(request(body, content_type))
        assert (response.status_code, response.body) == (202, body)  # the body read again
    assert len(other_chat) == 2


async def test_without_another_dialect_such_bodies_are_a_clear_400() -> None:
    saved = list(openai_api._other_chat)
    openai_api._other_chat.clear()
    try:
        response = await openai_api.shared_chat_completions(request(b'{"prompt": "hi"}'))
    finally:
        openai_api._other_chat[:] = saved
    assert response.status_code == 400
    assert "/openai/v1" in orjson.loads(response.body)["error"]["message"]
