"""The ``openai`` provider: chat and embeddings on any server that speaks the OpenAI HTTP API
(OpenAI, vLLM, Ollama's ``/v1``, DeepSeek, LM Studio).

An instance's ``endpoint`` is the base URL including ``/v1``; its ``secret`` is sent as the
bearer key. Options (route or instance): ``upstream_model``, the model name sent upstream (by
default the task's model), and ``read_timeout``, the seconds the backend may stay silent
before the call fails with ``ProviderTimeout`` (by default the route's timeout).

Chat input is a string (one user message), ``{"messages": [...]}`` (sent as is) or
``{"prompt": "..."}``. Params: ``system`` (a system message put first), ``stream`` (deltas are
sent as progress ``{"delta": ...}`` and ``{"reasoning_delta": ...}``) and, passed through,
``temperature``, ``max_tokens``, ``top_p``, ``stop``, ``tools``, ``tool_choice``,
``response_format`` and ``seed``. The output is ``{"text", "reasoning", "finish_reason"}``
plus ``tool_calls`` when the model made some. Embedding input is a string or a list of
strings (param ``dimensions`` is passed through); the output is ``{"embeddings": [...]}``.

``image`` (``/images/generations``): input a prompt string or ``{"prompt": ...}``; params
``n``, ``size``, ``quality``, ``style``, ``response_format``, ``background``,
``output_format`` and ``seed`` are passed through. ``image_edit`` (``/images/edits``,
multipart): input ``{"prompt", "image": REF or [REF, ...], "mask": REF}``, where a REF is
``{"file_id": ...}`` or a ``data:`` URI; params ``n``, ``size``, ``response_format``. Every
image the backend returns (base64, or a URL fetched at once: it expires; from where the
option ``output_urls_private`` allows, see :mod:`taskgate.providers.web`) becomes a file of
the result; the output is ``{"images": [{"revised_prompt", "source_url"}, ...]}``.
``transcription`` (``/audio/transcriptions``, multipart): input ``{"file": REF}`` or a REF;
params ``language``, ``prompt``, ``temperature``, ``response_format``; the output is the
backend's JSON (``{"text", ...}``). ``speech`` (``/audio/speech``): input the text or
``{"input": ...}``; params ``voice`` (default ``alloy``), ``response_format``, ``speed``,
``instructions``; the audio becomes the result's file, the output is ``{"format"}``.

HTTP and aiohttp errors become :mod:`taskgate.errors` here, with the secret blanked out of any
text the backend sent back; a refusal by the content policy (codes :data:`REFUSAL_CODES`) is
``ContentRefused``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import aiohttp
import orjson

from taskgate import errors
from taskgate.config import Route
from taskgate.providers import openai_media as om
from taskgate.providers.base import Call, Job, Result
from taskgate.providers.media import inline_file_images
from taskgate.providers.redact import scrub
from taskgate.providers.registry import register_provider
from taskgate.providers.web import WebProvider, bad_response, retry_after, snippet

CHAT_PARAMS = (
    "temperature",
    "max_tokens",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "seed",
)
EMBEDDING_PARAMS = ("dimensions",)
IMAGE_PARAMS = (
    "n",
    "size",
    "quality",
    "style",
    "response_format",
    "background",
    "output_format",
    "seed",
)
EDIT_PARAMS = ("n", "size", "response_format")
TRANSCRIPTION_PARAMS = ("language", "prompt", "temperature", "response_format")
SPEECH_PARAMS = ("response_format", "speed", "instructions")
DEFAULT_VOICE = "alloy"
# Error codes of a refusal by the content policy (a 400 that must not read as bad input).
REFUSAL_CODES = frozenset({"content_policy_violation", "moderation_blocked", "content_filter"})
READ_BUFSIZE = 1 << 20  # an SSE line may be up to twice this long


@register_provider("openai")
class OpenAIProvider(WebProvider):
    """Each kind is served by the method ``_<kind>``; a subclass for another backend that
    speaks this API (Ark) changes the kinds, bodies and error codes, not the plumbing."""

    name: ClassVar[str] = "openai"
    kinds = frozenset({"chat", "embedding", "image", "image_edit", "transcription", "speech"})
    default_endpoint: ClassVar[str | None] = None
    read_bufsize = READ_BUFSIZE

    def __init__(self, route: Route) -> None:
        super().__init__(route)
        missing = [i.name for i in route.instances if not (i.endpoint or self.default_endpoint)]
        if missing:
            raise ValueError(
                f"route {route.name!r}: {self.name} instances need an endpoint: {missing}"
            )

    async def run(self, call: Call) -> Result | Job:
        kinds = sorted(self.kinds or ())
        if call.kind not in kinds:
            raise errors.InvalidInput(
                f"the {self.name} provider serves {', '.join(kinds)}, not kind {call.kind!r}"
            )
        handler: Callable[[Call], Awaitable[Result | Job]] = getattr(self, f"_{call.kind}")
        return await handler(call)

    async def _chat(self, call: Call) -> Result:
        body = chat_body(await inline_file_images(call))
        async with self._post(call, "/chat/completions", body) as resp:
            if body.get("stream"):
                reply = await read_stream(resp, call)
            else:
                reply = completion_reply(await read_object(resp, call), call)
        return reply.result()

    async def _embedding(self, call: Call) -> Result:
        async with self._post(call, "/embeddings", embedding_body(call)) as resp:
            return embedding_result(await read_object(resp, call), call)

    async def _image(self, call: Call) -> Result:
        async with self._post(call, "/images/generations", self.image_body(call)) as resp:
            data = await read_object(resp, call)
        return await om.image_result(self, call, data, partial(self.reported_error, call))

    def image_body(self, call: Call) -> dict[str, Any]:
        body = {"model": upstream_model(call), "prompt": om.prompt_of(call.input, "image")}
        return body | passthrough(call.params, IMAGE_PARAMS)

    async def _image_edit(self, call: Call) -> Result:
        edit = om.edit_input(call.input)
        fields = {"model": upstream_model(call), "prompt": edit.prompt}
        form = om.form(fields | passthrough(call.params, EDIT_PARAMS))
        await om.add_edit_files(form, call, edit)
        async with self._post_form(call, "/images/edits", form) as resp:
            data = await read_object(resp, call)
        return await om.image_result(self, call, data, partial(self.reported_error, call))

    async def _transcription(self, call: Call) -> Result:
        audio = await om.audio_input(call)
        fields = {"model": upstream_model(call), **passthrough(call.params, TRANSCRIPTION_PARAMS)}
        form = om.form(fields)
        om.add_file(form, "file", audio)
        async with self._post_form(call, "/audio/transcriptions", form) as resp:
            if resp.content_type == "application/json":
                return om.transcription_result(await read_object(resp, call), call)
            return om.transcription_text(await resp.text(errors="replace"), call)

    async def _speech(self, call: Call) -> Result:
        body = {
            "model": upstream_model(call),
            "input": om.speech_text(call.input),
            "voice": call.params.get("voice", DEFAULT_VOICE),
            **passthrough(call.params, SPEECH_PARAMS),
        }
        async with self._post(call, "/audio/speech", body) as resp:
            return om.speech_result(await resp.read(), resp.content_type, call)

    def _url(self, call: Call, path: str) -> str:
        return str(call.instance.endpoint or self.default_endpoint).rstrip("/") + path

    def _post(
        self, call: Call, path: str, body: dict[str, Any]
    ) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]:
        return self._request(call, "POST", self._url(call, path), orjson.dumps(body), headers(call))

    @contextlib.asynccontextmanager
    async def _post_form(
        self, call: Call, path: str, form: aiohttp.FormData
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST multipart/form-data; aiohttp writes the form and its Content-Type."""
        async with self._request(
            call, "POST", self._url(call, path), form, auth_headers(call)
        ) as resp:
            yield resp

    async def http_error(self, resp: aiohttp.ClientResponse, call: Call) -> errors.ProviderError:
        text = await resp.text(errors="replace")
        message, code = error_detail(loads(text), text, call)
        wait = retry_after(resp.headers.get("Retry-After"))
        return self.error_for(resp.status, message, code, wait)

    def reported_error(self, call: Call, error: Any) -> errors.ProviderError:
        """An error the backend reported inside a 200 reply: one failed image, a failed job."""
        detail = as_dict(error)
        code = detail.get("code")
        message = str(detail.get("message") or f"the backend reported {error!r}")
        return self.error_for(None, scrub(message, call), None if code is None else str(code))

    def error_for(
        self, status: int | None, message: str, code: str | None, wait: float | None = None
    ) -> errors.ProviderError:
        """What an error of the backend means; ``status`` is None for one reported in a 200."""
        if code in REFUSAL_CODES:
            return errors.ContentRefused(message, provider_code=code, status=status)
        if status is None:
            return errors.BadResponse(message, provider_code=code)
        return errors.from_http_status(status, message, provider_code=code, retry_after=wait)


# --- requests ----------------------------------------------------------------------------


def headers(call: Call) -> dict[str, str]:
    return {"Content-Type": "application/json", **auth_headers(call)}


def auth_headers(call: Call) -> dict[str, str]:
    if call.instance.secret is None:
        return {}
    return {"Authorization": f"Bearer {call.instance.secret.get_secret_value()}"}


def upstream_model(call: Call) -> str:
    return str(call.option("upstream_model") or call.model)


def passthrough(params: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: params[name] for name in names if name in params}


def chat_body(call: Call) -> dict[str, Any]:
    p = call.params
    messages = chat_messages(call.input)
    if p.get("system") is not None:
        messages.insert(0, {"role": "system", "content": p["system"]})
    body = {"model": upstream_model(call), "messages": messages, **passthrough(p, CHAT_PARAMS)}
    if p.get("stream"):
        body.update(stream=True, stream_options={"include_usage": True})
    return body


def chat_messages(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        return list(value["messages"])
    if isinstance(value, dict) and "prompt" in value:
        return [{"role": "user", "content": str(value["prompt"])}]
    raise errors.InvalidInput(
        "chat input must be a string, {'messages': [...]} or {'prompt': '...'}"
    )


def embedding_body(call: Call) -> dict[str, Any]:
    texts = call.input
    if not (isinstance(texts, str) or is_strings(texts)):
        raise errors.InvalidInput("embedding input must be a string or a list of strings")
    return {
        "model": upstream_model(call),
        "input": texts,
        **passthrough(call.params, EMBEDDING_PARAMS),
    }


def is_strings(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


# --- replies -----------------------------------------------------------------------------


@dataclass
class Reply:
    """One chat reply, whole or assembled from stream chunks."""

    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)

    def result(self) -> Result:
        if self.finish_reason == "content_filter":
            raise errors.ContentRefused(
                "the backend's content filter stopped the reply (finish_reason content_filter)",
                provider_code="content_filter",
            )
        output: dict[str, Any] = {
            "text": "".join(self.text),
            "reasoning": "".join(self.reasoning) if self.reasoning else None,
            "finish_reason": self.finish_reason,
        }
        if self.tool_calls:
            output["tool_calls"] = self.tool_calls
        return Result(output, self.usage)

    async def add_chunk(self, chunk: dict[str, Any], call: Call) -> None:
        if "error" in chunk:  # the backend failed after it had sent the 200
            raise stream_error(chunk, call)
        if chunk.get("usage"):
            self.usage = usage_of(chunk["usage"])
        choices = chunk.get("choices")
        if isinstance(choices, list) and choices:
            await self.add_choice(as_dict(choices[0]), call)

    async def add_choice(self, choice: dict[str, Any], call: Call) -> None:
        delta = as_dict(choice.get("delta"))
        for key, kind, parts in (
            ("content", "delta", self.text),
            ("reasoning_content", "reasoning_delta", self.reasoning),
        ):
            if piece := delta.get(key):
                parts.append(piece)
                await call.emit({kind: piece})
        for tool_delta in delta.get("tool_calls") or []:
            merge_tool_call(self.tool_calls, as_dict(tool_delta))
        self.finish_reason = choice.get("finish_reason") or self.finish_reason


def merge_tool_call(calls: list[dict[str, Any]], delta: dict[str, Any]) -> None:
    """Add one streamed tool-call fragment: the first names it, the rest extend its arguments."""
    index = int(delta.get("index", 0))
    while len(calls) <= index:
        calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    target, fn = calls[index], as_dict(delta.get("function"))
    target["id"] = delta.get("id") or target["id"]
    target["function"]["name"] += fn.get("name") or ""
    target["function"]["arguments"] += fn.get("arguments") or ""


def completion_reply(data: dict[str, Any], call: Call) -> Reply:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise bad_response("a reply without choices", orjson.dumps(data), call)
    message = as_dict(choices[0].get("message"))
    reasoning = message.get("reasoning_content")
    return Reply(
        text=[message.get("content") or ""],
        reasoning=[reasoning] if reasoning else [],
        finish_reason=choices[0].get("finish_reason"),
        tool_calls=list(message.get("tool_calls") or []),
        usage=usage_of(data.get("usage")),
    )


async def read_stream(resp: aiohttp.ClientResponse, call: Call) -> Reply:
    """Read server-sent events up to ``data: [DONE]``, emitting deltas as they come."""
    reply = Reply()
    async for line in resp.content:
        if not line.startswith(b"data:"):
            continue  # blank separators, comments, event names
        payload = line[5:].strip()
        if payload == b"[DONE]":
            return reply
        await reply.add_chunk(parse_object(payload, call), call)
    raise bad_response("the stream ended before 'data: [DONE]'", b"", call)


def embedding_result(data: dict[str, Any], call: Call) -> Result:
    items = data.get("data")
    if not isinstance(items, list) or not all("embedding" in as_dict(i) for i in items):
        raise bad_response("a reply without a 'data' list of embeddings", orjson.dumps(data), call)
    embeddings = [item["embedding"] for item in items]
    return Result({"embeddings": embeddings}, usage_of(data.get("usage")))


def usage_of(raw: Any) -> dict[str, Any]:
    usage = as_dict(raw)
    pairs = (("input_tokens", "prompt_tokens"), ("output_tokens", "completion_tokens"))
    return {ours: usage[theirs] for ours, theirs in pairs if usage.get(theirs) is not None}


async def read_object(resp: aiohttp.ClientResponse, call: Call) -> dict[str, Any]:
    return parse_object(await resp.read(), call)


def parse_object(raw: bytes, call: Call) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_response("a reply that is not JSON", raw, call) from exc
    if not isinstance(data, dict):
        raise bad_response("a reply that is not a JSON object", raw, call)
    return data


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# --- errors ------------------------------------------------------------------------------


def stream_error(chunk: dict[str, Any], call: Call) -> errors.ProviderError:
    code = as_dict(chunk["error"]).get("code")
    status = code if isinstance(code, int) and code >= 400 else 500
    message, provider_code = error_detail(chunk, orjson.dumps(chunk).decode(), call)
    return errors.from_http_status(status, message, provider_code=provider_code)


def error_detail(data: Any, raw: str, call: Call) -> tuple[str, str | None]:
    """Message and code of an OpenAI error object ``{"error": {...}}``, else the raw text
    quoted; the message without the secret."""
    error = as_dict(as_dict(data).get("error"))
    if not error.get("message"):
        return snippet(raw, call), None
    code = error.get("code") or error.get("type")
    return scrub(str(error["message"]), call), None if code is None else str(code)


def loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
