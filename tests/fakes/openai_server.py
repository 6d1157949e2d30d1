"""A fake OpenAI-compatible server: the wire protocol over real HTTP on 127.0.0.1.

    async with FakeOpenAI(key="sk-test") as fake:         # in the test's event loop
        url = fake.base_url                                # http://127.0.0.1:PORT/v1
    with in_thread(FakeOpenAI(key="sk-test")) as fake:    # its own loop, for sync tests

It checks the bearer key (401) and the request's shape (400), both with OpenAI's error body;
answers chat with ``echo: <last user message>`` (``deepseek-r1*`` models also reason, and a
request with ``tools`` calls the first tool); streams SSE chunks when asked, with a usage chunk
when ``stream_options.include_usage``; makes embeddings (:func:`fake_embedding`); and records
every request in ``fake.requests``. Images, image edits, transcriptions and speech are
served as :mod:`tests.fakes.openai_media` describes; image URLs point at the fake itself
(``fake.shelf``, see :mod:`tests.fakes.shelf`). ``fake.script(*modes)`` queues behaviours,
one taken by each API request that follows:

    rate_limit      429 with Retry-After: 1
    server_error    500
    bad_gateway     502 with an HTML body
    garbage         200 with a body that is not JSON
    no_choices      200 without ``choices``
    revoked         401 quoting the key it got, as a careless server might
    slow            sleep ``slow_seconds``, then answer
    hold            answer once ``fake.release()`` has been called
    content_filter  finish_reason ``content_filter``
    stream_error    (streams) the first deltas, then an error chunk
    truncated       (streams) the first deltas, then the end of the body without [DONE]
    content_policy  400 with code ``content_policy_violation`` (an image prompt refused)
    expired_url     answer, but the next image URL handed out answers 403 (expired)
    echo_key        as ``hold``, then answer chat quoting the Authorization header it got (a
                    careless server), the key in a streamed delta of its own
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes import LoopbackServer, Scripted
from tests.fakes import openai_media as om
from tests.fakes.shelf import Shelf, root_of

ROLES = ("system", "developer", "user", "assistant", "tool")
CHAT_FIELDS = {
    "model",
    "messages",
    "stream",
    "stream_options",
    "temperature",
    "max_tokens",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "seed",
    "n",
    "user",
}
EMBEDDING_FIELDS = {"model", "input", "dimensions", "encoding_format", "user"}

Answer = Callable[[web.Request, dict[str, Any], str | None], Awaitable[web.StreamResponse]]


def error_response(
    status: int,
    message: str,
    type_: str = "invalid_request_error",
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


CANNED: dict[str, Callable[[], web.Response]] = {
    "rate_limit": lambda: error_response(
        429,
        "Rate limit reached for requests",
        "requests",
        "rate_limit_exceeded",
        {"Retry-After": "1"},
    ),
    "server_error": lambda: error_response(
        500, "The server had an error while processing your request.", "server_error"
    ),
    "bad_gateway": lambda: web.Response(
        status=502, text="<html><h1>502 Bad Gateway</h1></html>", content_type="text/html"
    ),
    "garbage": lambda: web.Response(text="this is not json", content_type="application/json"),
    "no_choices": lambda: web.json_response({"id": "chatcmpl-fake", "object": "chat.completion"}),
    "content_policy": lambda: error_response(
        400,
        "Your request was rejected as a result of our safety system. Your prompt may contain "
        "text that is not allowed by our safety system.",
        "image_generation_user_error",
        "content_policy_violation",
    ),
}


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON or multipart form (om.Form), else None
    method: str = "POST"


class FakeOpenAI(Scripted, LoopbackServer):
    """Subclassed by the fake Ark server, which speaks the same chat protocol: the class
    attributes and the ``error``/``unauthorized``/``canned`` methods are what differ."""

    prefix = "/v1"
    chat_fields = CHAT_FIELDS
    reasoning_models: tuple[str, ...] = ("deepseek-r1",)
    modes: frozenset[str] = frozenset()  # set below, once the module's tables exist

    def __init__(
        self, key: str = "sk-fake-key", slow_seconds: float = 5.0, latency: float = 0.0
    ) -> None:
        self.key = key
        self.slow_seconds = slow_seconds
        self.latency = latency  # seconds every request takes
        self.in_flight = 0  # requests being answered now, their peak, and those cut off
        self.peak = 0
        self.cut_off = 0
        self.requests: list[Recorded] = []
        self.shelf = Shelf()
        Scripted.__init__(self)
        self._expire_next = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    # --- lifecycle -----------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        self.bind_loop()
        post = app.router.add_post
        post(f"{self.prefix}/chat/completions", self._chat)
        post("/v1/embeddings", self._embeddings)
        post("/v1/images/generations", self._images)
        post("/v1/images/edits", self._edits)
        post("/v1/audio/transcriptions", self._transcriptions)
        post("/v1/audio/speech", self._speech)
        self.shelf.add_route(app)

    # --- what differs from one OpenAI-like backend to another ----------------------------

    def error(self, status: int, message: str, code: str | None = None, **kw: Any) -> web.Response:
        return error_response(status, message, code=code, **kw)

    def unauthorized(self, token: str) -> web.Response:
        return self.error(401, f"Incorrect API key provided: {token}.", "invalid_api_key")

    def canned(self, mode: str | None) -> web.Response | None:
        return CANNED[mode]() if mode in CANNED else None

    # --- handling ------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(
            request, lambda body: chat_problem(body, self.chat_fields), self._answer_chat
        )

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, embedding_problem, self._answer_embeddings)

    async def _images(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, om.image_problem, self._answer_images)

    async def _edits(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, om.edit_problem, self._answer_images)

    async def _transcriptions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, om.transcription_problem, self._answer_transcription)

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, om.speech_problem, self._answer_speech)

    async def _serve(
        self, request: web.Request, problem_of: Callable[[Any], om.Problem], answer: Answer
    ) -> web.StreamResponse:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await self._handle(request, problem_of, answer)
        except asyncio.CancelledError:  # the client hung up (aiohttp cancels the handler)
            self.cut_off += 1
            raise
        finally:
            self.in_flight -= 1

    async def _handle(
        self, request: web.Request, problem_of: Callable[[Any], om.Problem], answer: Answer
    ) -> web.StreamResponse:
        body = await self._record(request)
        mode = self.next_mode()
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if mode == "revoked" or token != self.key:
            return self.unauthorized(token)
        if (canned := self.canned(mode)) is not None:
            return canned
        self._expire_next |= mode == "expired_url"
        await self._pause(mode)
        problem = problem_of(body)
        if problem is not None:
            message, code = problem if isinstance(problem, tuple) else (problem, None)
            return self.error(400, message, code)
        return await answer(request, body, mode)

    async def _record(self, request: web.Request) -> Any:
        body: Any = None
        if request.content_type == "multipart/form-data":
            body = await read_form(request)
        else:
            with contextlib.suppress(ValueError):
                body = json.loads(await request.read())
        self.requests.append(Recorded(request.path, dict(request.headers), body, request.method))
        return body

    def put_file(self, request: web.Request, data: bytes, content_type: str, ext: str) -> str:
        """Keep an output file on the shelf; its signed URL (expired if scripted so)."""
        expired, self._expire_next = self._expire_next, False
        return self.shelf.put(root_of(request), data, content_type, ext, expired)

    async def _pause(self, mode: str | None) -> None:
        if self.latency:
            await asyncio.sleep(self.latency)
        if mode == "slow":
            await asyncio.sleep(self.slow_seconds)
        elif mode in ("hold", "echo_key"):
            await self.held()

    async def _answer_chat(
        self, request: web.Request, body: dict[str, Any], mode: str | None
    ) -> web.StreamResponse:
        reply = chat_reply(body, mode, self.reasoning_models)
        if mode == "echo_key":
            text = f"you sent {request.headers.get('Authorization')} ok"
            reply = dataclasses.replace(reply, text=text)
        if body.get("stream"):
            return await stream_reply(request, reply, body, mode)
        return web.json_response(completion(reply, body["model"]))

    async def _answer_embeddings(
        self, request: web.Request, body: dict[str, Any], mode: str | None
    ) -> web.StreamResponse:
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        dims = int(body.get("dimensions", 4))
        data = [
            {"object": "embedding", "index": i, "embedding": fake_embedding(t, dims)}
            for i, t in enumerate(texts)
        ]
        tokens = sum(len(t.split()) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return web.json_response(
            {"object": "list", "data": data, "model": body["model"], "usage": usage}
        )

    async def _answer_images(
        self, request: web.Request, body: dict[str, Any], mode: str | None
    ) -> web.StreamResponse:
        put = functools.partial(self.put_file, request)
        return web.json_response(om.image_reply(body, om.generated(body), put))

    async def _answer_transcription(
        self, request: web.Request, body: dict[str, Any], mode: str | None
    ) -> web.StreamResponse:
        return om.transcription_reply(om.Form(body))

    async def _answer_speech(
        self, request: web.Request, body: dict[str, Any], mode: str | None
    ) -> web.StreamResponse:
        return om.speech_reply(body)


OTHER_MODES = (
    "revoked",
    "slow",
    "hold",
    "content_filter",
    "stream_error",
    "truncated",
    "expired_url",
    "echo_key",
)
FakeOpenAI.modes = frozenset(CANNED) | frozenset(OTHER_MODES)


async def read_form(request: web.Request) -> om.Form:
    """A multipart body as a Form: text fields as strings, files as Uploads."""
    form = om.Form()
    for name, value in (await request.post()).items():
        item = (
            om.Upload(value.filename, value.content_type, value.file.read())
            if isinstance(value, web.FileField)
            else value
        )
        if name in form:
            previous = form[name]
            form[name] = [*previous, item] if isinstance(previous, list) else [previous, item]
        else:
            form[name] = [item] if name.endswith("[]") else item
    return form


# --- validation --------------------------------------------------------------------------


def common_problem(body: Any, fields: set[str]) -> str | None:
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    unknown = sorted(set(body) - fields)
    if unknown:
        return f"Unrecognized request argument supplied: {unknown[0]}"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "You must provide a model parameter."
    return None


def chat_problem(body: Any, fields: set[str] = CHAT_FIELDS) -> str | None:
    if (problem := common_problem(body, fields)) is not None:
        return problem
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "Invalid 'messages': expected a non-empty array."
    if "stream_options" in body and not body.get("stream"):
        return "The 'stream_options' parameter is only allowed when 'stream' is enabled."
    return next(filter(None, (message_problem(i, m) for i, m in enumerate(messages))), None)


def message_problem(i: int, message: Any) -> str | None:
    if not isinstance(message, dict):
        return f"Invalid type for 'messages[{i}]': expected an object."
    if message.get("role") not in ROLES:
        return f"Invalid value for 'messages[{i}].role': {message.get('role')!r}."
    if "content" not in message and not message.get("tool_calls"):
        return f"Missing required parameter: 'messages[{i}].content'."
    return None


def embedding_problem(body: Any) -> str | None:
    if (problem := common_problem(body, EMBEDDING_FIELDS)) is not None:
        return problem
    texts = body.get("input")
    strings = isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts)
    if not (isinstance(texts, str) or strings):
        return "Invalid 'input': expected a string or an array of strings."
    return None


# --- answers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatReply:
    text: str | None
    reasoning: str | None
    tool_calls: list[dict[str, Any]] | None
    finish_reason: str
    usage: dict[str, int]


def words(value: Any) -> int:
    return len(str(value or "").split())


def chat_reply(
    body: dict[str, Any], mode: str | None, reasoning_models: tuple[str, ...] = ("deepseek-r1",)
) -> ChatReply:
    messages = body["messages"]
    last = next((str(m.get("content")) for m in reversed(messages) if m["role"] == "user"), "")
    text = f"echo: {last}"
    reasoning = f"thinking about: {last}" if body["model"].startswith(reasoning_models) else None
    tools = body.get("tools")
    calls = [tool_call(tools[0], last)] if tools else None
    finish = "content_filter" if mode == "content_filter" else "tool_calls" if tools else "stop"
    prompt = sum(words(m.get("content")) for m in messages)
    output = words(text) + words(reasoning)
    usage = {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}
    return ChatReply(None if tools else text, reasoning, calls, finish, usage)


def tool_call(tool: dict[str, Any], text: str) -> dict[str, Any]:
    arguments = json.dumps({"text": text})
    function = {"name": tool["function"]["name"], "arguments": arguments}
    return {"id": "call_fake_1", "type": "function", "function": function}


def completion(reply: ChatReply, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.reasoning:
        message["reasoning_content"] = reply.reasoning
    if reply.tool_calls:
        message["tool_calls"] = reply.tool_calls
    choice = {"index": 0, "message": message, "finish_reason": reply.finish_reason}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [choice],
        "usage": reply.usage,
    }


def pieces(text: str | None) -> list[str]:
    """Words with their trailing space, so that the pieces join back into the text."""
    return re.findall(r"\S+\s*", text or "")


def deltas(reply: ChatReply) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    out += [{"reasoning_content": p} for p in pieces(reply.reasoning)]
    out += [{"content": p} for p in pieces(reply.text)]
    for i, call in enumerate(reply.tool_calls or []):
        args = call["function"]["arguments"]
        half = len(args) // 2
        head = {**call, "function": {**call["function"], "arguments": args[:half]}}
        out.append({"tool_calls": [{"index": i, **head}]})
        out.append({"tool_calls": [{"index": i, "function": {"arguments": args[half:]}}]})
    return out


async def stream_reply(
    request: web.Request, reply: ChatReply, body: dict[str, Any], mode: str | None
) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    usage_wanted = bool((body.get("stream_options") or {}).get("include_usage"))
    chunk = chunk_maker(body["model"], usage_wanted)
    cut = mode in ("stream_error", "truncated")
    for delta in deltas(reply)[:3] if cut else deltas(reply):
        await send(resp, chunk({"delta": delta, "finish_reason": None}))
    if mode == "stream_error":
        await send(
            resp, {"error": {"message": "The model crashed mid-reply.", "type": "server_error"}}
        )
    if cut:
        return resp
    await send(resp, chunk({"delta": {}, "finish_reason": reply.finish_reason}))
    if usage_wanted:
        await send(resp, {**chunk(None), "usage": reply.usage})
    await resp.write(b"data: [DONE]\n\n")
    return resp


def chunk_maker(
    model: str, usage_wanted: bool
) -> Callable[[dict[str, Any] | None], dict[str, Any]]:
    def chunk(choice: dict[str, Any] | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, **choice}] if choice else [],
        }
        if usage_wanted:
            out["usage"] = None  # as OpenAI does on every chunk but the last
        return out

    return chunk


async def send(resp: web.StreamResponse, data: dict[str, Any]) -> None:
    await resp.write(b"data: " + json.dumps(data).encode() + b"\n\n")


def fake_embedding(text: str, dims: int = 4) -> list[float]:
    """The fake's embedding of a text: fixed numbers in [0, 1] derived from it."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % len(digest)] / 255, 4) for i in range(dims)]
