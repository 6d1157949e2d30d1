"""The ``gemini`` provider: chat on Google's native Gemini API (``generateContent``).

An instance's ``endpoint`` is the API's base URL without the version (by default
``https://generativelanguage.googleapis.com``); its ``secret`` is sent in the
``x-goog-api-key`` header, never in the URL. Options (route or instance): ``upstream_model``,
the model name sent upstream (by default the task's model), and ``read_timeout``, the seconds
the backend may stay silent before the call fails with ``ProviderTimeout`` (by default the
route's timeout).

Chat input is a string (one user message), ``{"prompt": "..."}`` or ``{"messages": [...]}``
with OpenAI-style roles: ``system`` (and ``developer``) messages become the
``systemInstruction``, ``user`` stays ``user`` and ``assistant`` becomes ``model``. A message's
content is a string or a list of OpenAI-style parts: ``{"type": "text", "text": ...}`` and
``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}`` (only ``data:``
URLs; Gemini cannot fetch arbitrary URLs). Params: ``system`` (put before any system
message), ``temperature``, ``max_tokens`` (``maxOutputTokens``), ``top_p`` (``topP``) and
``stop`` (``stopSequences``). The output is ``{"text", "finish_reason"}`` with Gemini's finish
reason lower-cased (``STOP`` → ``stop``, ``MAX_TOKENS`` → ``length``).

A blocked prompt, a candidate stopped for safety and a reply that opens with a stock refusal
(:data:`SOFT_REFUSALS`) raise ``ContentRefused``. HTTP and aiohttp errors become
:mod:`taskgate.errors` here, with the secret blanked out of any text the backend sent back.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import aiohttp
import orjson

from taskgate import errors
from taskgate.providers.base import Call, Result
from taskgate.providers.media import inline_file_images
from taskgate.providers.openai import as_dict, loads, parse_object, upstream_model
from taskgate.providers.redact import scrub, scrub_cut
from taskgate.providers.registry import register_provider
from taskgate.providers.web import SNIPPET, WebProvider, bad_response, retry_after, snippet

DEFAULT_ENDPOINT = "https://generativelanguage.googleapis.com"
ROLES = {"user": "user", "assistant": "model"}
SYSTEM_ROLES = ("system", "developer")
GENERATION_PARAMS = (
    ("temperature", "temperature"),
    ("max_tokens", "maxOutputTokens"),
    ("top_p", "topP"),
    ("stop", "stopSequences"),
)
REFUSED_FINISH = frozenset({"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST"})
FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length"}
# A reply opening with one of these (case-insensitive) is a refusal, not an answer.
SOFT_REFUSALS = (
    "i can't help with that",
    "i cannot help with that",
    "i can't comply",
    "i cannot comply",
    "i'm unable to",
    "i am unable to",
)
DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+);base64,([A-Za-z0-9+/=\s]+)", re.ASCII)


@register_provider("gemini")
class GeminiProvider(WebProvider):
    kinds = frozenset({"chat"})

    async def run(self, call: Call) -> Result:
        if call.kind != "chat":
            raise errors.InvalidInput(f"the gemini provider serves chat, not kind {call.kind!r}")
        body = request_body(await inline_file_images(call))
        async with self._post(call, body) as resp:
            data = parse_object(await resp.read(), call)
        return reply_result(data, call)

    def _post(
        self, call: Call, body: dict[str, Any]
    ) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]:
        return self._request(call, "POST", generate_url(call), orjson.dumps(body), headers(call))

    async def http_error(self, resp: aiohttp.ClientResponse, call: Call) -> errors.ProviderError:
        return await gemini_error(resp, call)


# --- requests ----------------------------------------------------------------------------


def generate_url(call: Call) -> str:
    base = (call.instance.endpoint or DEFAULT_ENDPOINT).rstrip("/")
    model = upstream_model(call).removeprefix("models/")
    return f"{base}/v1beta/models/{model}:generateContent"


def headers(call: Call) -> dict[str, str]:
    out = {"Content-Type": "application/json"}
    if call.instance.secret is not None:
        out["x-goog-api-key"] = call.instance.secret.get_secret_value()
    return out


def request_body(call: Call) -> dict[str, Any]:
    p = call.params
    system: list[dict[str, Any]] = []
    if p.get("system") is not None:
        system.append({"text": str(p["system"])})
    contents: list[dict[str, Any]] = []
    for i, message in enumerate(input_messages(call.input)):
        role = message.get("role")
        parts = content_parts(message.get("content"), i)
        if role in SYSTEM_ROLES:
            system.extend(parts)
        elif role in ROLES:
            contents.append({"role": ROLES[str(role)], "parts": parts})
        else:
            raise errors.InvalidInput(
                f"messages[{i}].role must be system, user or assistant, not {role!r}"
            )
    if not contents:
        raise errors.InvalidInput("chat input needs at least one user or assistant message")
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    config = {theirs: p[ours] for ours, theirs in GENERATION_PARAMS if p.get(ours) is not None}
    if isinstance(config.get("stopSequences"), str):
        config["stopSequences"] = [config["stopSequences"]]
    if config:
        body["generationConfig"] = config
    return body


def input_messages(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        messages = value["messages"]
        if all(isinstance(m, dict) for m in messages):
            return list(messages)
    elif isinstance(value, dict) and "prompt" in value:
        return [{"role": "user", "content": str(value["prompt"])}]
    raise errors.InvalidInput(
        "chat input must be a string, {'messages': [...]} of objects or {'prompt': '...'}"
    )


def content_parts(content: Any, i: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, list):
        raise errors.InvalidInput(f"messages[{i}].content must be a string or a list of parts")
    return [content_part(as_dict(part), i) for part in content]


def content_part(part: dict[str, Any], i: int) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "text" and isinstance(part.get("text"), str):
        return {"text": part["text"]}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        match = DATA_URL.fullmatch(url) if isinstance(url, str) else None
        if match is None:
            shown = url[:60] if isinstance(url, str) else type(url).__name__
            raise errors.InvalidInput(
                f"messages[{i}]: gemini takes images as base64 data: URLs only, not {shown!r}"
            )
        data = re.sub(r"\s", "", match.group(2))
        return {"inlineData": {"mimeType": match.group(1), "data": data}}
    raise errors.InvalidInput(
        f"messages[{i}]: a content part must be {{'type': 'text'}} or {{'type': 'image_url'}},"
        f" not {kind!r}"
    )


# --- replies -----------------------------------------------------------------------------


def reply_result(data: dict[str, Any], call: Call) -> Result:
    block = as_dict(data.get("promptFeedback")).get("blockReason")
    if block:
        raise errors.ContentRefused(
            f"gemini blocked the prompt (blockReason {block})", provider_code=str(block)
        )
    candidates = data.get("candidates")
    if not isinstance(candidates, list) or not candidates or not isinstance(candidates[0], dict):
        raise bad_response("a reply without candidates", orjson.dumps(data), call)
    candidate = candidates[0]
    finish = candidate.get("finishReason")
    if finish in REFUSED_FINISH:
        raise errors.ContentRefused(
            f"gemini stopped the reply (finishReason {finish})", provider_code=str(finish)
        )
    parts = as_dict(candidate.get("content")).get("parts") or []
    text = "".join(
        str(part["text"])
        for part in map(as_dict, parts)
        if "text" in part and not part.get("thought")
    )
    if is_soft_refusal(text):
        raise errors.ContentRefused(
            f"the model declined: {scrub_cut(text, SNIPPET, call)}", provider_code="soft_refusal"
        )
    reason = None if finish is None else FINISH_REASONS.get(str(finish), str(finish).lower())
    return Result({"text": text, "finish_reason": reason}, usage_of(data.get("usageMetadata")))


def is_soft_refusal(text: str) -> bool:
    opening = text.lstrip().replace("\u2019", "'").lower()
    return opening.startswith(SOFT_REFUSALS)


def usage_of(raw: Any) -> dict[str, Any]:
    usage = as_dict(raw)
    pairs = (("input_tokens", "promptTokenCount"), ("output_tokens", "candidatesTokenCount"))
    return {ours: usage[theirs] for ours, theirs in pairs if usage.get(theirs) is not None}


# --- errors ------------------------------------------------------------------------------


async def gemini_error(resp: aiohttp.ClientResponse, call: Call) -> errors.ProviderError:
    text = await resp.text(errors="replace")
    error = as_dict(as_dict(loads(text)).get("error"))
    message = scrub(str(error["message"]), call) if error.get("message") else snippet(text, call)
    status = resp.status
    if status == 400 and has_reason(error, "API_KEY_INVALID"):
        status = 401  # Gemini answers a wrong key with 400 INVALID_ARGUMENT
    wait = retry_after(resp.headers.get("Retry-After"))
    return errors.from_http_status(
        status,
        message,
        provider_code=str(error["status"]) if error.get("status") else None,
        retry_after=wait if wait is not None else retry_delay(error),
    )


def has_reason(error: dict[str, Any], reason: str) -> bool:
    return any(as_dict(d).get("reason") == reason for d in error.get("details") or [])


def retry_delay(error: dict[str, Any]) -> float | None:
    """Seconds of a ``google.rpc.RetryInfo`` detail (``"retryDelay": "31s"``), if any."""
    for detail in map(as_dict, error.get("details") or []):
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            return retry_after(delay[:-1])
    return None
