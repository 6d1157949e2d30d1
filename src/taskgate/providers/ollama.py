"""The ``ollama`` provider: chat and embeddings on Ollama's native API, and model discovery.

An instance's ``endpoint`` is the server's base URL without ``/api`` (by default
``http://127.0.0.1:11434``). Ollama needs no key; an instance with a ``secret`` (an Ollama
behind an authenticating proxy, or ollama.com) sends it as a bearer token.

Chat (``POST /api/chat``) input is a string (one user message), ``{"prompt": ..., "images":
[...]}`` or ``{"messages": [...]}`` with OpenAI-style messages. A message's content may be a
list of parts, ``{"type": "text", "text": ...}`` and ``{"type": "image_url", "image_url":
{"url": "data:image/png;base64,..."}}`` (or ``{"file_id": ...}`` in place of ``url``, a file
uploaded to taskgate); images become Ollama's base64 ``images`` list, as do the entries of a
message's own ``images`` (data URIs, file refs, or base64 as Ollama takes it). Ollama cannot
fetch ``http(s)`` image URLs, so they are refused. An assistant message's OpenAI-style tool
calls (arguments as a JSON string) are sent with the arguments as an object, as Ollama wants.

Params: ``system`` (a system message put first), ``stream`` (tokens as progress ``{"delta":
...}``, a reasoning model's thinking as ``{"reasoning_delta": ...}``), ``temperature``,
``max_tokens`` (``num_predict``), ``top_p``, ``seed`` and ``stop`` (into ``options``),
``options`` (any other Ollama option, e.g. ``num_ctx``), ``format`` (``"json"`` or a JSON
schema; an OpenAI ``response_format`` is translated), ``tools``, ``think`` and ``keep_alive``
(passed through). Route options: ``upstream_model`` (the name sent; by default the task's),
``model_options`` (default Ollama options, e.g. ``{num_ctx: 8192}``), ``read_timeout``,
``soft_refusals`` (default true: a reply opening with a stock refusal fails as
``ContentRefused``) and ``discover_timeout`` (seconds for ``/api/tags``, default 5).

The output is the openai provider's: ``{"text", "reasoning", "finish_reason"}`` plus
``tool_calls`` (OpenAI-shaped, arguments as a JSON string) when the model made some, and
usage ``{"input_tokens": prompt_eval_count, "output_tokens": eval_count}``. Embeddings (``POST
/api/embed``): input a string or a list of strings, output ``{"embeddings": [...]}``.

Errors: Ollama answers ``{"error": "..."}``; 404 (a model it does not have) and 400 are
``InvalidInput``, 5xx ``Overloaded``, and an ``{"error"}`` line in a stream ``Overloaded``.

:meth:`OllamaProvider.list_models` reads ``GET /api/tags`` of every instance: the model
discovery of a route with ``options: {discover: true}`` (see :mod:`taskgate.discovery`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
from typing import Any

import aiohttp
import orjson

from taskgate import errors
from taskgate.config import Instance, Route
from taskgate.providers import media
from taskgate.providers.base import Call, Result
from taskgate.providers.gemini import is_soft_refusal
from taskgate.providers.openai import (
    Reply,
    as_dict,
    is_strings,
    loads,
    parse_object,
    upstream_model,
)
from taskgate.providers.redact import scrub, scrub_cut
from taskgate.providers.registry import register_provider
from taskgate.providers.web import (
    CONNECT_TIMEOUT,
    SNIPPET,
    WebProvider,
    bad_response,
    retry_after,
    snippet,
)

log = logging.getLogger("taskgate.providers.ollama")

DEFAULT_ENDPOINT = "http://127.0.0.1:11434"
DISCOVER_TIMEOUT = 5.0
READ_BUFSIZE = 1 << 20  # one NDJSON line may be up to twice this long
OPTION_PARAMS = (
    ("temperature", "temperature"),
    ("max_tokens", "num_predict"),
    ("top_p", "top_p"),
    ("seed", "seed"),
    ("stop", "stop"),
)
PASSED_THROUGH = ("format", "tools", "think", "keep_alive")
EMBED_PASSED_THROUGH = ("dimensions", "truncate", "keep_alive")
BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")


@register_provider("ollama")
class OllamaProvider(WebProvider):
    kinds = frozenset({"chat", "embedding"})
    read_bufsize = READ_BUFSIZE

    def __init__(self, route: Route) -> None:
        super().__init__(route)
        self._listed: dict[str, list[str]] = {}  # per instance: what /api/tags said last

    async def run(self, call: Call) -> Result:
        if call.kind == "chat":
            return await self._chat(call)
        if call.kind == "embedding":
            return await self._embed(call)
        raise errors.InvalidInput(
            f"the ollama provider serves chat and embedding, not kind {call.kind!r}"
        )

    async def _chat(self, call: Call) -> Result:
        body = await chat_body(call)
        async with self._post(call, "/api/chat", body) as resp:
            if body["stream"]:
                reply = await read_stream(resp, call)
            else:
                reply = Reply()
                await add_chunk(reply, parse_object(await resp.read(), call), call, stream=False)
        return chat_result(reply, call)

    async def _embed(self, call: Call) -> Result:
        async with self._post(call, "/api/embed", embed_body(call)) as resp:
            data = parse_object(await resp.read(), call)
        vectors = data.get("embeddings")
        if not isinstance(vectors, list):
            raise bad_response("a reply without 'embeddings'", orjson.dumps(data), call)
        return Result({"embeddings": vectors}, usage_of(data))

    def _post(
        self, call: Call, path: str, body: dict[str, Any]
    ) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]:
        url = base_url(call.instance) + path
        return self._request(call, "POST", url, orjson.dumps(body), headers(call.instance))

    async def http_error(self, resp: aiohttp.ClientResponse, call: Call) -> errors.ProviderError:
        return ollama_error(resp.status, await resp.text(errors="replace"), call.instance, resp)

    # --- discovery -----------------------------------------------------------------------

    async def list_models(self) -> list[str]:
        """The model names every instance lists. An instance that cannot be asked counts
        with what it listed last (and a warning); when none can be asked, the first error
        is raised, and the caller keeps what it knew."""
        instances = self.route.instances
        answers = await asyncio.gather(*(self._tags(i) for i in instances), return_exceptions=True)
        failed = [a for a in answers if isinstance(a, BaseException)]
        for error in failed:
            if not isinstance(error, errors.ProviderError):
                raise error
        if len(failed) == len(instances):
            raise failed[0]  # the caller keeps what it knew, and says so
        names: set[str] = set()
        for instance, answer in zip(instances, answers, strict=True):
            if isinstance(answer, list):
                self._listed[instance.name] = answer
            else:
                log.warning(
                    "route %s, instance %s: cannot list models (%s); counting the %d it listed",
                    self.route.name,
                    instance.name,
                    answer,
                    len(self._listed.get(instance.name, ())),
                )
            names.update(self._listed.get(instance.name, ()))
        return sorted(names)

    async def _tags(self, instance: Instance) -> list[str]:
        url = base_url(instance) + "/api/tags"
        limit = float(instance.options.get("discover_timeout", self._discover_timeout()))
        timeout = aiohttp.ClientTimeout(total=limit, sock_connect=min(limit, CONNECT_TIMEOUT))
        try:
            async with self._client().get(url, headers=headers(instance), timeout=timeout) as r:
                raw = await r.read()
                if r.status >= 400:
                    raise ollama_error(r.status, raw.decode(errors="replace"), instance, r)
        except TimeoutError as exc:
            raise errors.ProviderTimeout(f"GET {url}: no answer within {limit:g}s") from exc
        except aiohttp.ClientError as exc:
            text = f"connection to {url} failed: {type(exc).__name__}: {exc}"
            raise errors.ConnectionFailed(scrub(text, instance)) from exc
        return tag_names(raw, instance)

    def _discover_timeout(self) -> float:
        return float(self.route.options.get("discover_timeout", DISCOVER_TIMEOUT))


# --- requests ----------------------------------------------------------------------------


def base_url(instance: Instance) -> str:
    return (instance.endpoint or DEFAULT_ENDPOINT).rstrip("/")


def headers(instance: Instance) -> dict[str, str]:
    out = {"Content-Type": "application/json"}
    if instance.secret is not None:
        out["Authorization"] = f"Bearer {instance.secret.get_secret_value()}"
    return out


async def chat_body(call: Call) -> dict[str, Any]:
    p = call.params
    messages = [await ollama_message(call, m, i) for i, m in enumerate(input_messages(call))]
    if p.get("system") is not None:
        messages.insert(0, {"role": "system", "content": str(p["system"])})
    body: dict[str, Any] = {
        "model": upstream_model(call),
        "messages": messages,
        "stream": bool(p.get("stream")),  # Ollama streams unless told not to
    }
    body.update({name: p[name] for name in PASSED_THROUGH if p.get(name) is not None})
    if "format" not in body and (fmt := json_format(p.get("response_format"))) is not None:
        body["format"] = fmt
    if options := model_options(call):
        body["options"] = options
    return body


def model_options(call: Call) -> dict[str, Any]:
    """Ollama ``options``: the route's defaults, the task's ``options``, then the mapped
    OpenAI-style params (``stop`` always a list: Ollama fails a string with a 500)."""
    p = call.params
    options = {**as_dict(call.option("model_options")), **as_dict(p.get("options"))}
    options.update({theirs: p[ours] for ours, theirs in OPTION_PARAMS if p.get(ours) is not None})
    if isinstance(options.get("stop"), str):
        options["stop"] = [options["stop"]]
    return options


def json_format(response_format: Any) -> Any:
    """Ollama's ``format`` for an OpenAI ``response_format``."""
    rf = as_dict(response_format)
    if rf.get("type") == "json_object":
        return "json"
    if rf.get("type") == "json_schema":
        return as_dict(rf.get("json_schema")).get("schema")
    return None


def input_messages(call: Call) -> list[dict[str, Any]]:
    value = call.input
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        if value["messages"] and all(isinstance(m, dict) for m in value["messages"]):
            return list(value["messages"])  # (none at all: Ollama would only load the model)
    elif isinstance(value, dict) and "prompt" in value:
        message = {"role": "user", "content": str(value["prompt"])}
        return [{**message, "images": value["images"]}] if value.get("images") else [message]
    raise errors.InvalidInput(
        "chat input must be a string, {'messages': [...]} of one or more objects"
        " or {'prompt': '...'}"
    )


async def ollama_message(call: Call, message: dict[str, Any], i: int) -> dict[str, Any]:
    """One message as Ollama takes it: string content, base64 images, object arguments."""
    out = dict(message)
    images = [await image_b64(call, ref, f"messages[{i}].images") for ref in message_images(out)]
    content = out.get("content")
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            await add_part(call, as_dict(part), i, texts, images)
        out["content"] = "\n".join(texts)
    if images:
        out["images"] = images
    if out.get("tool_calls"):
        out["tool_calls"] = [ollama_tool_call(as_dict(c)) for c in out["tool_calls"]]
    return out


def message_images(message: dict[str, Any]) -> list[Any]:
    images = message.get("images") or []
    return images if isinstance(images, list) else [images]


async def add_part(
    call: Call, part: dict[str, Any], i: int, texts: list[str], images: list[str]
) -> None:
    kind = part.get("type")
    if kind == "text" and isinstance(part.get("text"), str):
        texts.append(part["text"])
    elif kind == "image_url" or media.is_file_ref(part):
        image = part.get("image_url", part)
        ref = image.get("url", image) if isinstance(image, dict) else image
        images.append(await image_b64(call, ref, f"messages[{i}] image"))
    else:
        raise errors.InvalidInput(
            f"messages[{i}]: a content part must be {{'type': 'text'}} or "
            f"{{'type': 'image_url'}}, not {kind!r}"
        )


async def image_b64(call: Call, ref: Any, what: str) -> str:
    """An image as Ollama's plain base64 string. Ollama cannot fetch URLs: anything but
    base64 is read as media a client gives (a file of ours or a data URI), or refused."""
    if isinstance(ref, str) and BASE64.fullmatch(ref):
        return ref  # base64 already, as Ollama's own clients send it
    f = await media.input_bytes(call, ref, what)
    return base64.b64encode(f.data).decode()


def ollama_tool_call(tc: dict[str, Any]) -> dict[str, Any]:
    fn = dict(as_dict(tc.get("function")))
    if isinstance(fn.get("arguments"), str):
        parsed = loads(fn["arguments"])
        fn["arguments"] = parsed if isinstance(parsed, dict) else {}
    return {**({"id": tc["id"]} if tc.get("id") else {}), "function": fn}


def embed_body(call: Call) -> dict[str, Any]:
    texts = call.input
    if not (isinstance(texts, str) or is_strings(texts)):
        raise errors.InvalidInput("embedding input must be a string or a list of strings")
    extra = {k: call.params[k] for k in EMBED_PASSED_THROUGH if call.params.get(k) is not None}
    return {"model": upstream_model(call), "input": texts, **extra}


# --- replies -----------------------------------------------------------------------------


async def read_stream(resp: aiohttp.ClientResponse, call: Call) -> Reply:
    """Read NDJSON lines up to the one with ``done: true``, emitting pieces as they come."""
    reply = Reply()
    async for line in resp.content:
        if not line.strip():
            continue
        chunk = parse_object(line, call)
        await add_chunk(reply, chunk, call, stream=True)
        if chunk.get("done") is True:
            return reply
    raise bad_response("the stream ended before a line with 'done': true", b"", call)


async def add_chunk(reply: Reply, chunk: dict[str, Any], call: Call, *, stream: bool) -> None:
    if "error" in chunk:  # the runner failed after the 200 was sent
        text = scrub(str(chunk["error"]), call)
        raise errors.Overloaded(f"ollama failed mid-reply: {text}", status=500)
    message = as_dict(chunk.get("message"))
    if "message" not in chunk and not stream:
        raise bad_response("a reply without 'message'", orjson.dumps(chunk), call)
    for key, kind, parts in (
        ("thinking", "reasoning_delta", reply.reasoning),
        ("content", "delta", reply.text),
    ):
        if piece := message.get(key):
            parts.append(str(piece))
            if stream:
                await call.emit({kind: piece})
    reply.tool_calls += [
        openai_tool_call(as_dict(c), len(reply.tool_calls) + n)
        for n, c in enumerate(message.get("tool_calls") or [])
    ]
    if chunk.get("done") is True:
        reply.finish_reason = chunk.get("done_reason") or "stop"
        reply.usage = usage_of(chunk)


def openai_tool_call(tc: dict[str, Any], index: int) -> dict[str, Any]:
    fn = as_dict(tc.get("function"))
    arguments = fn.get("arguments")
    if not isinstance(arguments, str):
        arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
    return {
        "id": tc.get("id") or f"call_{index}",
        "type": "function",
        "function": {"name": str(fn.get("name") or ""), "arguments": arguments},
    }


def chat_result(reply: Reply, call: Call) -> Result:
    if reply.tool_calls and reply.finish_reason == "stop":
        reply.finish_reason = "tool_calls"  # as the openai provider reports it
    text = "".join(reply.text)
    if not reply.tool_calls and call.option("soft_refusals", True) and is_soft_refusal(text):
        raise errors.ContentRefused(
            f"the model declined: {scrub_cut(text, SNIPPET, call)}", provider_code="soft_refusal"
        )
    return reply.result()


def usage_of(data: dict[str, Any]) -> dict[str, Any]:
    pairs = (("input_tokens", "prompt_eval_count"), ("output_tokens", "eval_count"))
    return {ours: data[theirs] for ours, theirs in pairs if data.get(theirs) is not None}


def tag_names(raw: bytes, instance: Instance) -> list[str]:
    models = as_dict(loads(raw.decode(errors="replace"))).get("models")
    if not isinstance(models, list):
        raise bad_response("/api/tags without a 'models' list", raw, instance)
    names = {str(m[key]) for m in map(as_dict, models) for key in ("name", "model") if m.get(key)}
    return sorted(names)


# --- errors ------------------------------------------------------------------------------


def ollama_error(
    status: int, text: str, instance: Instance, resp: aiohttp.ClientResponse
) -> errors.ProviderError:
    """Ollama's ``{"error": "..."}`` reply as our error; a 404 names a model it lacks."""
    message = as_dict(loads(text)).get("error")
    message = scrub(str(message), instance) if message else snippet(text, instance)
    code = "model_not_found" if status == 404 and "not found" in message else None
    return errors.from_http_status(
        status,
        message,
        provider_code=code,
        retry_after=retry_after(resp.headers.get("Retry-After")),
    )
