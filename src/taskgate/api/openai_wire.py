"""OpenAI's wire shapes for the OpenAI dialect (api/openai_api.py): request bodies become
:class:`Submission` s, ended tasks become OpenAI replies, and every refusal or failure becomes
OpenAI's error object ``{"error": {"message", "type", "param", "code"}}``. Pure functions of
their arguments, so the router keeps only the waiting.

Fields of a chat body that taskgate does not interpret (``temperature``, ``tools``, ...) are
kept in the task's ``params`` under their OpenAI names, where the provider reads the ones it
passes on (and the mock its ``mock_*`` ones).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from taskgate.api.responses import JSON, as_api_error, error_headers
from taskgate.errors import BadRequest
from taskgate.models import Priority, Status, Task
from taskgate.submission import MAX_QUEUE_TIMEOUT, Submission

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# chat fields the dialect itself interprets; every other field goes to the task's params
CHAT_OWN = frozenset({"model", "messages", "stream", "stream_options", "n"})
IMAGE_PARAMS = ("n", "size", "quality", "style", "background", "output_format", "seed")
TRANSCRIPT_TEXT_FORMATS = frozenset({"text", "srt", "vtt"})
DEFAULT_QUEUE_TIMEOUT = 600.0  # seconds an OpenAI-dialect task may wait for its first start
# a failed task's error type -> (HTTP status, OpenAI error type)
TASK_ERRORS: Mapping[str, tuple[int, str]] = {
    "invalid_input": (400, "invalid_request_error"),
    "content_refused": (400, "invalid_request_error"),
    "rate_limited": (429, "rate_limit_error"),
    "overloaded": (503, "server_error"),
    "connection_failed": (502, "server_error"),
    "bad_response": (502, "server_error"),
    "auth_failed": (502, "server_error"),
    "timeout": (504, "server_error"),
}
PERMANENT = frozenset({"invalid_input", "content_refused", "auth_failed", "permanent"})
API_CODES = {
    "unauthorized": "invalid_api_key",
    "bad_request": None,
    "rate_limited": "rate_limit_exceeded",
}


# --- errors ------------------------------------------------------------------------------


def error(
    status: int,
    message: str,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSON:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSON(body, status_code=status, headers=headers)


def refusal(exc: Exception) -> JSON:
    """An error raised while taking a request (bad key, bad body, unknown model; or an
    unexpected failure) in OpenAI's shape; FastAPI's schema errors (422 in the native API)
    are 400 here, as OpenAI answers."""
    if isinstance(exc, RequestValidationError):
        return schema_error(exc)
    if isinstance(exc, HTTPException):
        response = error(exc.status_code, str(exc.detail), code=None)
    else:
        api = as_api_error(exc)
        param = api.details.get("field")
        code = API_CODES.get(api.code, api.code)
        if isinstance(api, BadRequest) and param == "model" and "unknown model" in api.message:
            code = "model_not_found"
        type_ = error_type(api.status_code)
        response = error(api.status_code, api.message, type_, param, code)
    response.headers.update(error_headers(exc))
    return response


def error_type(status: int) -> str:
    """OpenAI's error type for a refusal's HTTP status."""
    if status >= 500:
        return "server_error"
    return "rate_limit_error" if status == 429 else "invalid_request_error"


def schema_error(exc: RequestValidationError) -> JSON:
    problems = list(exc.errors())
    if any(p.get("type") == "json_invalid" for p in problems):
        return error(400, "We could not parse the JSON body of your request.")
    first = problems[0] if problems else {}
    where = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "header")]
    param = ".".join(where) or None
    return error(400, f"Invalid '{param or 'body'}': {first.get('msg', 'invalid')}", param=param)


def task_failure(task: Task) -> JSON:
    """The answer for a task that ended without success: the backend's class of error picks
    the status (429 keeps its Retry-After), its message and code go to the client. Errors a
    retry cannot fix say so in ``x-should-retry: false`` (honoured by OpenAI's SDKs)."""
    err = task.error or {}
    kind = str(err.get("type") or "")
    message = str(err.get("message") or f"the task ended {task.status.value}")
    headers = {"x-taskgate-task-id": task.id}
    if task.status is Status.CANCELLED:
        return error(409, message, "invalid_request_error", None, "cancelled", _final(headers))
    code = err.get("provider_code") or kind or None
    if task.status is Status.TIMEOUT:
        return error(504, message, "server_error", None, code or "timeout", headers)
    status, type_ = TASK_ERRORS.get(kind, (500, "server_error"))
    if err.get("retry_after") is not None:
        headers["retry-after"] = str(max(1, round(float(err["retry_after"]))))
    if kind in PERMANENT:
        headers = _final(headers)
    return error(status, message, type_, None, code, headers)


def _final(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "x-should-retry": "false"}


# --- requests ----------------------------------------------------------------------------


def json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def model_of(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("You must provide a model parameter.", field="model")
    return model


def priority_of(headers: Mapping[str, str]) -> Priority:
    try:
        return Priority.parse(headers.get("x-taskgate-priority", "default"))
    except ValueError as exc:
        raise BadRequest(f"X-Taskgate-Priority: {exc}", field="X-Taskgate-Priority") from None


def queue_timeout_of(headers: Mapping[str, str]) -> float:
    """Seconds from X-Taskgate-Queue-Timeout: more than 0, at most the native API's longest
    ``queue_timeout`` (``nan``, ``inf`` and ``1e400`` are refused with the rest)."""
    raw = headers.get("x-taskgate-queue-timeout")
    if raw is None:
        return DEFAULT_QUEUE_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_QUEUE_TIMEOUT:  # False for nan
        raise BadRequest(
            f"X-Taskgate-Queue-Timeout must be seconds in (0, {MAX_QUEUE_TIMEOUT:.0f}]",
            field="X-Taskgate-Queue-Timeout",
        )
    return value


def submission(
    kind: str, model: str, input_: Any, params: dict[str, Any], headers: Mapping[str, str]
) -> Submission:
    """A task of the dialect: priority and queue wait from taskgate's headers."""
    return Submission(
        kind=kind,
        model=model,
        input=input_,
        params=params,
        priority=priority_of(headers),
        queue_timeout=queue_timeout_of(headers),
        idempotency_key=headers.get("idempotency-key"),
    )


@dataclass(frozen=True, slots=True)
class ChatRequest:
    submission: Submission
    stream: bool
    include_usage: bool


def chat_request(body: dict[str, Any], headers: Mapping[str, str]) -> ChatRequest:
    model = model_of(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("Invalid 'messages': expected a non-empty array.", field="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise BadRequest(f"Invalid 'messages[{i}]': needs a valid role.", field="messages")
    if body.get("n", 1) != 1:
        raise BadRequest("taskgate answers one choice: 'n' must be 1.", field="n")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise BadRequest("Invalid 'stream': expected a boolean.", field="stream")
    options = body.get("stream_options") or {}
    params = {k: v for k, v in body.items() if k not in CHAT_OWN}
    if stream:
        params["stream"] = True
    sub = submission("chat", model, {"messages": messages}, params, headers)
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return ChatRequest(sub, stream, include_usage)


def image_request(body: dict[str, Any], headers: Mapping[str, str]) -> tuple[Submission, bool]:
    """An image generation, and whether the client wants base64 (else taskgate's URLs).
    ``response_format`` is the client's choice of answer, not sent to the backend (gpt-image-1
    refuses it): the provider always stores the image, and ``return_base64`` inlines it."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise BadRequest("You must provide a prompt.", field="prompt")
    fmt = body.get("response_format") or "url"
    if fmt not in ("url", "b64_json"):
        raise BadRequest(
            f"Invalid 'response_format': {fmt!r}; use 'url' or 'b64_json'.",
            field="response_format",
        )
    params: dict[str, Any] = {k: body[k] for k in IMAGE_PARAMS if body.get(k) is not None}
    if fmt == "b64_json":
        params["return_base64"] = True
    return submission("image", model_of(body), prompt, params, headers), fmt == "b64_json"


def embedding_request(body: dict[str, Any], headers: Mapping[str, str]) -> Submission:
    texts = body.get("input")
    strings = isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts)
    if not (isinstance(texts, str) or strings):
        raise BadRequest(
            "Invalid 'input': taskgate embeds a string or an array of strings "
            "(token arrays are not supported).",
            field="input",
        )
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise BadRequest(
            "Invalid 'encoding_format': use 'float' or 'base64'.", field="encoding_format"
        )
    params = {"dimensions": body["dimensions"]} if body.get("dimensions") is not None else {}
    return submission("embedding", model_of(body), texts, params, headers)


# --- replies -----------------------------------------------------------------------------


def output_of(task: Task) -> dict[str, Any]:
    result = task.result if isinstance(task.result, dict) else {}
    output = result.get("output")
    return output if isinstance(output, dict) else {}


def usage_of(task: Task) -> dict[str, int]:
    result = task.result if isinstance(task.result, dict) else {}
    raw = result.get("usage")
    usage = raw if isinstance(raw, dict) else {}
    prompt = int(usage.get("input_tokens") or 0)
    completion_tokens = int(usage.get("output_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }


def completion_id(task: Task) -> str:
    return f"chatcmpl-{task.id}"


def finish_reason(output: dict[str, Any]) -> str:
    return str(
        output.get("finish_reason") or ("tool_calls" if output.get("tool_calls") else "stop")
    )


def completion(task: Task) -> dict[str, Any]:
    """A ``chat.completion``: the answer, DeepSeek-style ``reasoning_content``, tool calls."""
    output = output_of(task)
    tool_calls = output.get("tool_calls")
    text = output.get("text")
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if tool_calls else "")}
    if output.get("reasoning"):
        message["reasoning_content"] = output["reasoning"]
    if tool_calls:
        message["tool_calls"] = tool_calls
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason(output),
    }
    return {
        "id": completion_id(task),
        "object": "chat.completion",
        "created": int(task.created_at),
        "model": task.model,
        "choices": [choice],
        "usage": usage_of(task),
        "system_fingerprint": None,
    }


def chunk(
    task: Task,
    delta: dict[str, Any] | None,
    finish: str | None = None,
    usage: dict[str, int] | None = None,
) -> bytes:
    """One server-sent ``chat.completion.chunk``; ``delta`` None makes the usage chunk (no
    choices), as OpenAI sends last when ``stream_options.include_usage`` is set."""
    body: dict[str, Any] = {
        "id": completion_id(task),
        "object": "chat.completion.chunk",
        "created": int(task.created_at),
        "model": task.model,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


def stream_error(task: Task) -> bytes:
    """A failure after the stream began: OpenAI's SDKs raise an ``APIError`` on it."""
    return b"data: " + orjson.dumps(orjson.loads(task_failure(task).body)) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def images_reply(task: Task, url_of: Callable[[dict[str, Any]], str], b64: bool) -> dict[str, Any]:
    """``{"created", "data": [{"url" | "b64_json", "revised_prompt"?}]}``: a URL is taskgate's
    own ``/v1/files/{id}``, as ``url_of`` makes it of the stored file (absolute and signed),
    never the backend's."""
    result = task.result if isinstance(task.result, dict) else {}
    metas = [m for m in output_of(task).get("images") or [] if not m.get("error")]
    data = []
    for i, f in enumerate(result.get("files") or []):
        item = {"b64_json": f.get("b64_json")} if b64 else {"url": url_of(f)}
        revised = metas[i].get("revised_prompt") if i < len(metas) else None
        if revised:
            item["revised_prompt"] = revised
        data.append(item)
    return {"created": int(task.created_at), "data": data}


def embeddings_reply(task: Task, encoding: str) -> dict[str, Any]:
    output = output_of(task)
    vectors = output.get("embeddings")
    if vectors is None and "embedding" in output:  # a plugin that embeds one text
        vectors = [output["embedding"]]
    data = [
        {"object": "embedding", "index": i, "embedding": _encoded(v, encoding)}
        for i, v in enumerate(vectors or [])
    ]
    prompt = usage_of(task)["prompt_tokens"]
    usage = {"prompt_tokens": prompt, "total_tokens": prompt}
    return {"object": "list", "data": data, "model": task.model, "usage": usage}


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    """``base64`` is little-endian float32, which OpenAI's SDKs ask for by default."""
    if encoding != "base64":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def transcription_reply(task: Task, fmt: str) -> tuple[dict[str, Any] | str, str]:
    """The transcript as JSON (``json``: text and usage; ``verbose_json``: all the backend
    said) or as the text itself (``text``, ``srt``, ``vtt``)."""
    output = output_of(task)
    text = str(output.get("text") or "")
    if fmt in TRANSCRIPT_TEXT_FORMATS:
        return text, "text/plain"
    if fmt == "verbose_json":
        return {k: v for k, v in output.items() if k != "format"}, "application/json"
    return {"text": text}, "application/json"


def model_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {"created": 0, **entry}
