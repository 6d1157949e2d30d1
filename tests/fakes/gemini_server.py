"""A fake Gemini API server (``generateContent``) over real HTTP on 127.0.0.1.

    async with FakeGemini(key="AIza-test") as fake:        # in the test's event loop
        url = fake.base_url                                # http://127.0.0.1:PORT

It checks the ``x-goog-api-key`` header (403 when missing, 401 when wrong) and the body's
shape (400), all with Gemini's error body ``{"error": {"code", "message", "status"}}``;
answers with ``echo: <text of the last user turn>`` and word-count usage; and records every
request in ``fake.requests``. ``fake.script(*modes)`` queues behaviours, one taken by each
request that follows:

    rate_limit      429 RESOURCE_EXHAUSTED with Retry-After: 1
    quota           429 RESOURCE_EXHAUSTED with only a RetryInfo detail (retryDelay "7s")
    server_error    500 INTERNAL
    key_invalid     400 INVALID_ARGUMENT, reason API_KEY_INVALID, quoting the key it got
    garbage         200 with a body that is not JSON
    no_candidates   200 without candidates (and no block reason)
    blocked         200 with promptFeedback.blockReason SAFETY
    safety          200 with a candidate whose finishReason is SAFETY
    refusal         200 answering "I can't help with that."
    slow            sleep ``slow_seconds``, then answer
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes import LoopbackServer, Scripted

BODY_FIELDS = {"contents", "systemInstruction", "generationConfig", "safetySettings", "tools"}
CONFIG_FIELDS = {"temperature", "maxOutputTokens", "topP", "topK", "stopSequences"}
ROLES = ("user", "model")


def error_response(
    code: int,
    message: str,
    status: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return web.json_response({"error": error}, status=code, headers=headers)


def reply(candidates: list[dict[str, Any]] | None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {**extra, "modelVersion": "fake-gemini"}
    if candidates is not None:
        body["candidates"] = candidates
    return web.json_response(body)


SAFETY_RATINGS = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]

CANNED: dict[str, Callable[[], web.Response]] = {
    "rate_limit": lambda: error_response(
        429,
        "Resource has been exhausted (e.g. check quota).",
        "RESOURCE_EXHAUSTED",
        headers={"Retry-After": "1"},
    ),
    "quota": lambda: error_response(
        429,
        "You exceeded your current quota.",
        "RESOURCE_EXHAUSTED",
        [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}],
    ),
    "server_error": lambda: error_response(500, "An internal error has occurred.", "INTERNAL"),
    "garbage": lambda: web.Response(text="this is not json", content_type="application/json"),
    "no_candidates": lambda: reply(None, usageMetadata={"promptTokenCount": 1}),
    "blocked": lambda: reply(
        None,
        promptFeedback={"blockReason": "SAFETY", "safetyRatings": SAFETY_RATINGS},
        usageMetadata={"promptTokenCount": 1, "totalTokenCount": 1},
    ),
    "safety": lambda: reply(
        [{"finishReason": "SAFETY", "index": 0, "safetyRatings": SAFETY_RATINGS}]
    ),
}
OTHER_MODES = ("key_invalid", "refusal", "slow")


@dataclass(frozen=True)
class Recorded:
    path: str
    model: str
    headers: dict[str, str]
    body: Any  # the parsed JSON, or None when it was not JSON


class FakeGemini(Scripted, LoopbackServer):
    def __init__(self, key: str = "AIza-fake-key", slow_seconds: float = 5.0) -> None:
        self.key = key
        self.slow_seconds = slow_seconds
        self.requests: list[Recorded] = []
        Scripted.__init__(self)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/models/{action}", self._generate)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["action"].rpartition(":")
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        self.requests.append(Recorded(request.path, model, dict(request.headers), body))
        if method != "generateContent" or not model:
            return error_response(404, f"Method not found: {method}.", "NOT_FOUND")
        mode = self.next_mode()
        key = request.headers.get("x-goog-api-key")
        if key is None:
            return error_response(
                403,
                "Method doesn't allow unregistered callers. Please use API Key.",
                "PERMISSION_DENIED",
            )
        if mode == "key_invalid":
            return error_response(
                400,
                f"API key not valid: {key}. Please pass a valid API key.",
                "INVALID_ARGUMENT",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                    }
                ],
            )
        if key != self.key:
            return error_response(401, "Request had invalid authentication.", "UNAUTHENTICATED")
        if mode in CANNED:
            return CANNED[mode]()
        if mode == "slow":
            await asyncio.sleep(self.slow_seconds)
        problem = body_problem(body)
        if problem is not None:
            return error_response(400, problem, "INVALID_ARGUMENT")
        return answer(body, mode)


# --- validation --------------------------------------------------------------------------


def body_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "Invalid JSON payload received."
    unknown = sorted(set(body) - BODY_FIELDS)
    if unknown:
        return f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.'
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    for i, content in enumerate(contents):
        if not isinstance(content, dict) or content.get("role") not in ROLES:
            return f"* GenerateContentRequest.contents[{i}].role: must be 'user' or 'model'"
        if (problem := parts_problem(content.get("parts"), f"contents[{i}]")) is not None:
            return problem
    system = body.get("systemInstruction")
    if system is not None:
        parts = system.get("parts") if isinstance(system, dict) else None
        if (problem := parts_problem(parts, "system_instruction")) is not None:
            return problem
    config = body.get("generationConfig", {})
    if not isinstance(config, dict) or set(config) - CONFIG_FIELDS:
        return "Invalid JSON payload received. Unknown name in 'generation_config'."
    stops = config.get("stopSequences", [])
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        return "* GenerateContentRequest.generation_config.stop_sequences: must be strings"
    return None


def parts_problem(parts: Any, where: str) -> str | None:
    if not isinstance(parts, list) or not parts:
        return f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty."
    for j, part in enumerate(parts):
        if not isinstance(part, dict) or len(part) != 1:
            return f"* GenerateContentRequest.{where}.parts[{j}].data: required oneof field"
        if "text" in part and isinstance(part["text"], str):
            continue
        inline = part.get("inlineData")
        if not isinstance(inline, dict) or not isinstance(inline.get("mimeType"), str):
            return f"* GenerateContentRequest.{where}.parts[{j}]: unsupported part"
        try:
            base64.b64decode(inline.get("data", ""), validate=True)
        except (binascii.Error, TypeError):
            return f"* GenerateContentRequest.{where}.parts[{j}].inline_data.data: bad base64"
    return None


# --- answers -----------------------------------------------------------------------------


def words(text: str) -> int:
    return len(text.split())


def texts(parts: list[dict[str, Any]]) -> str:
    return " ".join(p["text"] for p in parts if "text" in p)


def answer(body: dict[str, Any], mode: str | None) -> web.Response:
    contents = body["contents"]
    last = next((texts(c["parts"]) for c in reversed(contents) if c["role"] == "user"), "")
    text = "I can't help with that." if mode == "refusal" else f"echo: {last}"
    system = as_parts(body.get("systemInstruction"))
    prompt = sum(words(texts(c["parts"])) for c in contents) + words(texts(system))
    images = sum(1 for c in contents for p in c["parts"] if "inlineData" in p)
    usage = {
        "promptTokenCount": prompt + 258 * images,  # Gemini bills an image as 258 tokens
        "candidatesTokenCount": words(text),
        "totalTokenCount": prompt + 258 * images + words(text),
    }
    candidate = {
        "content": {"role": "model", "parts": [{"text": text}]},
        "finishReason": "STOP",
        "index": 0,
    }
    return reply([candidate], usageMetadata=usage)


def as_parts(system: Any) -> list[dict[str, Any]]:
    return list(system["parts"]) if isinstance(system, dict) else []


FakeGemini.modes = frozenset(CANNED) | frozenset(OTHER_MODES)
