"""A fake Ollama server: the native API (``/api/chat``, ``/api/embed``, ``/api/tags``) over
real HTTP on 127.0.0.1.

    async with FakeOllama() as fake:                     # in the test's event loop
        url = fake.base_url                              # http://127.0.0.1:PORT
    with in_thread(FakeOllama(models=[...])) as fake:    # its own loop, for sync tests

It has the models in ``fake.models`` (listed by ``GET /api/tags``; a test may replace the list
at any time, as ``ollama pull`` would), where a name without a tag means ``:latest`` as in
Ollama. Requests are checked as Ollama checks them, with its ``{"error": "..."}`` body: 400
``missing request body``, Go's JSON decoding errors (messages that are not a list of objects,
content that is not a string, images that are not base64), ``model is required``,
``"x" does not support thinking``; 404 ``model 'x' not found`` for a model it lacks. With
``key`` set, a request without that bearer token gets 401 ``{"error": "unauthorized"}`` (an
Ollama behind an authenticating proxy).

Chat answers ``echo: <last user message>`` (``(N images)`` added when it got images); models
named ``deepseek-r1*`` or ``qwen3*`` think first (``thinking about: ...`` in
``message.thinking``, unless ``think`` is false); a request with ``tools`` calls the first tool.
It streams NDJSON unless ``stream`` is false (Ollama's default is to stream), piece by piece,
then a last line with ``done: true``, ``done_reason``, token counts and durations. Embeddings
are :func:`fake_embedding`. Every request is recorded in ``fake.requests``.

``fake.script(*modes)`` queues behaviours for ``/api/chat`` and ``/api/embed``, one taken by
each request that follows (``/api/tags`` is not scripted; ``fake.tags_down = True`` makes it
answer 500):

    server_error  500 {"error": "llama runner process has terminated: exit status 2"}
    busy          503 {"error": "server busy, please try again.  maximum pending requests ..."}
    not_found     404 for whatever model was asked
    garbage       200 with a body that is not JSON
    refusal       answer "I can't help with that." (a model's own refusal)
    slow          sleep ``slow_seconds``, then answer
    hold          answer once ``fake.release()`` has been called
    stream_error  (streams) the first pieces, then an {"error": ...} line
    truncated     (streams) the first pieces, then the end of the body without ``done``
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes import LoopbackServer, Scripted

DEFAULT_MODELS = ["llama3.2:latest", "deepseek-r1:7b", "qwen3:8b", "nomic-embed-text:latest"]
THINKERS = ("deepseek-r1", "qwen3")
NDJSON = "application/x-ndjson"


def error_response(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


CANNED: dict[str, Callable[[], web.Response]] = {
    "server_error": lambda: error_response(
        500, "llama runner process has terminated: exit status 2"
    ),
    "busy": lambda: error_response(
        503, "server busy, please try again.  maximum pending requests exceeded"
    ),
    "garbage": lambda: web.Response(text="this is not json", content_type="application/json"),
}
OTHER_MODES = ("not_found", "slow", "hold", "stream_error", "truncated", "refusal")
REFUSAL = "I can't help with that."


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON, or None when it was not JSON


def full_name(name: str) -> str:
    """Ollama's reading of a model name: no tag means ``:latest``."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def tag_entry(name: str) -> dict[str, Any]:
    digest = hashlib.sha256(name.encode()).hexdigest()
    family = name.split(":")[0].rstrip("0123456789.-")
    details = {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": "3.2B",
        "quantization_level": "Q4_K_M",
    }
    return {
        "name": name,
        "model": name,
        "modified_at": "2025-05-01T10:00:00.000000+02:00",
        "size": 2019393189,
        "digest": digest,
        "details": details,
    }


class FakeOllama(Scripted, LoopbackServer):
    def __init__(
        self, models: list[str] | None = None, key: str | None = None, slow_seconds: float = 5.0
    ) -> None:
        self.models = list(DEFAULT_MODELS if models is None else models)
        self.key = key
        self.slow_seconds = slow_seconds
        self.tags_down = False
        self.requests: list[Recorded] = []
        Scripted.__init__(self)

    def has(self, name: str) -> bool:
        return full_name(name) in {full_name(m) for m in self.models}

    # --- lifecycle -----------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        self.bind_loop()
        app.router.add_post("/api/chat", self._chat)
        app.router.add_post("/api/embed", self._embed)
        app.router.add_get("/api/tags", self._tags)

    # --- handling ------------------------------------------------------------------------

    async def _tags(self, request: web.Request) -> web.Response:
        await self._record(request)
        if (denied := self._denied(request)) is not None:
            return denied
        if self.tags_down:
            return error_response(500, "open /root/.ollama/models/manifests: permission denied")
        return web.json_response({"models": [tag_entry(m) for m in self.models]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, early = await self._admit(request)
        if early is not None:
            return early
        mode = self.next_mode()
        if (problem := self._chat_problem(body, mode)) is not None:
            return problem
        await self._pause(mode)
        if not body.get("messages"):  # Ollama loads the model and says so
            return web.json_response(loaded(body["model"]))
        reply = chat_reply(body, mode)
        if body.get("stream", True) is False:
            return web.json_response(reply.whole(body["model"]))
        return await stream(request, reply, body["model"], mode)

    async def _embed(self, request: web.Request) -> web.StreamResponse:
        body, early = await self._admit(request)
        if early is not None:
            return early
        mode = self.next_mode()
        if (problem := self._embed_problem(body, mode)) is not None:
            return problem
        await self._pause(mode)
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        dims = int(body.get("dimensions") or 4)
        return web.json_response(
            {
                "model": body["model"],
                "embeddings": [fake_embedding(t, dims) for t in texts],
                "total_duration": 14143917,
                "load_duration": 1019500,
                "prompt_eval_count": sum(words(t) for t in texts),
            }
        )

    async def _admit(self, request: web.Request) -> tuple[Any, web.Response | None]:
        """The request's JSON, or the reply that ends it before any model is looked at."""
        body = await self._record(request)
        if (denied := self._denied(request)) is not None:
            return body, denied
        if body is None:
            return body, error_response(400, "missing request body")
        if isinstance(body, DecodeError):
            return body, error_response(400, body.message)
        if not isinstance(body, dict):
            kind = go_type(body)
            return body, error_response(
                400, f"json: cannot unmarshal {kind} into Go value of type api.ChatRequest"
            )
        return body, None

    def _denied(self, request: web.Request) -> web.Response | None:
        if self.key is None:
            return None
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return error_response(401, "unauthorized")
        return None

    def _model_problem(
        self, body: dict[str, Any], mode: str | None, quote: str
    ) -> web.Response | None:
        model = body.get("model")
        if not isinstance(model, str | None):
            return error_response(400, decode_error(model, "ChatRequest.model", "string"))
        if not model:
            return error_response(400, "model is required")
        if mode in CANNED:
            return CANNED[mode]()
        if mode == "not_found" or not self.has(model):
            return error_response(404, quote.format(model))
        return None

    def _chat_problem(self, body: dict[str, Any], mode: str | None) -> web.Response | None:
        if (problem := messages_problem(body.get("messages"))) is not None:
            return error_response(400, problem)
        if (early := self._model_problem(body, mode, "model '{}' not found")) is not None:
            return early
        if body.get("think") is True and not thinks(body["model"]):
            return error_response(400, f'"{body["model"]}" does not support thinking')
        return None

    def _embed_problem(self, body: dict[str, Any], mode: str | None) -> web.Response | None:
        quote = 'model "{}" not found, try pulling it first'
        if (early := self._model_problem(body, mode, quote)) is not None:
            return early
        texts = body.get("input")
        if not (isinstance(texts, str) or is_strings(texts)):
            return error_response(400, "invalid input type")
        return None

    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError as exc:
            body = DecodeError(f"invalid character {raw[exc.pos : exc.pos + 1]!r} ...")
        self.requests.append(Recorded(request.path, dict(request.headers), body))
        return body

    async def _pause(self, mode: str | None) -> None:
        if mode == "slow":
            await asyncio.sleep(self.slow_seconds)
        elif mode == "hold":
            await self.held()


@dataclass(frozen=True)
class DecodeError:
    message: str


# --- validation, as Go's encoding/json and Ollama's handlers word it ------------------------


def go_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    names = {str: "string", list: "array", dict: "object"}
    return next((name for cls, name in names.items() if isinstance(value, cls)), "null")


def decode_error(value: Any, field: str, want: str) -> str:
    return f"json: cannot unmarshal {go_type(value)} into Go struct field {field} of type {want}"


def messages_problem(messages: Any) -> str | None:
    if messages is None:
        return None
    if not isinstance(messages, list):
        return decode_error(messages, "ChatRequest.messages", "[]api.Message")
    for m in messages:
        if not isinstance(m, dict):
            return decode_error(m, "ChatRequest.messages", "api.Message")
        if (problem := message_problem(m)) is not None:
            return problem
    return None


def message_problem(m: dict[str, Any]) -> str | None:
    for name in ("role", "content"):
        if m.get(name) is not None and not isinstance(m[name], str):
            return decode_error(m[name], f"Message.messages.{name}", "string")
    images = m.get("images") or []
    if not isinstance(images, list):
        return decode_error(images, "Message.messages.images", "[]api.ImageData")
    for image in images:
        if not isinstance(image, str):
            return decode_error(image, "Message.messages.images", "api.ImageData")
        try:
            base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            return "illegal base64 data at input byte 0"
    for call in m.get("tool_calls") or []:
        arguments = (call.get("function") or {}).get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            field = "ToolCall.messages.tool_calls.function.arguments"
            return decode_error(arguments, field, "api.ToolCallFunctionArguments")
    return None


def is_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def thinks(model: str) -> bool:
    return model.startswith(THINKERS)


# --- answers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatReply:
    text: str
    thinking: str | None
    tool_calls: list[dict[str, Any]] | None
    prompt_tokens: int

    @property
    def output_tokens(self) -> int:
        return words(self.text) + words(self.thinking)

    def done(self, model: str, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "model": model,
            "created_at": "2025-05-01T10:00:01.000000Z",
            "message": message,
            "done_reason": "stop",
            "done": True,
            "total_duration": 4883583458,
            "load_duration": 1334875,
            "prompt_eval_count": self.prompt_tokens,
            "prompt_eval_duration": 342546000,
            "eval_count": self.output_tokens,
            "eval_duration": 4535599000,
        }

    def whole(self, model: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.text}
        if self.thinking:
            message["thinking"] = self.thinking
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return self.done(model, message)


def loaded(model: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": ""}
    return {"model": model, "message": message, "done_reason": "load", "done": True}


def words(value: Any) -> int:
    return len(str(value or "").split())


def chat_reply(body: dict[str, Any], mode: str | None = None) -> ChatReply:
    messages = body.get("messages") or []
    users = [m for m in messages if m.get("role") == "user"]
    last = str(users[-1].get("content") or "") if users else ""
    images = sum(len(m.get("images") or []) for m in messages)
    text = f"echo: {last}" + (f" ({images} images)" if images else "")
    if mode == "refusal":
        text = REFUSAL
    thinking = None
    if thinks(body["model"]) and body.get("think") is not False:
        thinking = f"thinking about: {last}"
    tools = body.get("tools")
    calls = [tool_call(tools[0], last)] if tools else None
    prompt = sum(words(m.get("content")) for m in messages)
    return ChatReply("" if calls else text, thinking, calls, prompt)


def tool_call(tool: dict[str, Any], text: str) -> dict[str, Any]:
    function = {"index": 0, "name": tool["function"]["name"], "arguments": {"text": text}}
    return {"id": "call_fake1", "function": function}


def pieces(text: str | None) -> list[str]:
    """Words with their trailing space, so that the pieces join back into the text."""
    return re.findall(r"\S+\s*", text or "")


def stream_lines(reply: ChatReply, model: str) -> list[dict[str, Any]]:
    def line(**message: Any) -> dict[str, Any]:
        return {
            "model": model,
            "created_at": "2025-05-01T10:00:00.500000Z",
            "message": {"role": "assistant", "content": "", **message},
            "done": False,
        }

    out = [line(thinking=p) for p in pieces(reply.thinking)]
    out += [line(content=p) for p in pieces(reply.text)]
    if reply.tool_calls:
        out.append(line(tool_calls=reply.tool_calls))
    return out


async def stream(
    request: web.Request, reply: ChatReply, model: str, mode: str | None
) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": NDJSON})
    await resp.prepare(request)
    cut = mode in ("stream_error", "truncated")
    lines = stream_lines(reply, model)
    for data in lines[:2] if cut else lines:
        await send(resp, data)
    if mode == "stream_error":
        await send(resp, {"error": "an error was encountered while running the model: CUDA error"})
    if not cut:
        await send(resp, reply.done(model, {"role": "assistant", "content": ""}))
    return resp


async def send(resp: web.StreamResponse, data: dict[str, Any]) -> None:
    await resp.write(json.dumps(data).encode() + b"\n")


def fake_embedding(text: str, dims: int = 4) -> list[float]:
    """The fake's embedding of a text: fixed numbers in [0, 1] derived from it."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % len(digest)] / 255, 4) for i in range(dims)]


FakeOllama.modes = frozenset(CANNED) | frozenset(OTHER_MODES)
