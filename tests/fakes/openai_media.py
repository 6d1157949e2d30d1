"""The fake OpenAI server's image and audio endpoints: validation with OpenAI's messages and
codes, and answers. :class:`tests.fakes.openai_server.FakeOpenAI` routes to these.

    POST /v1/images/generations    JSON; dall-e-2, dall-e-3 (one image, revised_prompt),
                                   gpt-image-1* (always b64_json, with usage)
    POST /v1/images/edits          multipart: image (or image[]), mask, prompt, model, ...
    POST /v1/audio/transcriptions  multipart: file, model, language, prompt, temperature,
                                   response_format (json, text, srt, verbose_json, vtt)
    POST /v1/audio/speech          JSON {model, input, voice, ...}; the reply is audio bytes

Images are :func:`tests.fakes.shelf.fake_image` of the prompt, as URLs on the fake (put on
its shelf) or base64; a transcript is :func:`fake_transcript` of the uploaded bytes; speech
is :func:`fake_speech` of the text.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.shelf import fake_image

Problem = str | tuple[str, str] | None  # a 400's message, or its message and code
Put = Callable[[bytes, str, str], str]  # (data, content type, extension) -> a URL on the fake


@dataclass(frozen=True)
class Upload:
    """A file field of a multipart request, as recorded."""

    filename: str
    content_type: str
    data: bytes


class Form(dict[str, Any]):
    """The fields of a multipart request (a repeated field is a list), as recorded."""


@dataclass(frozen=True)
class ImageModel:
    sizes: tuple[str, ...]
    max_n: int
    fields: frozenset[str]
    b64_only: bool = False  # gpt-image-1 has no URLs and no response_format
    revises: bool = False  # dall-e-3 rewrites the prompt and says so


BASE_FIELDS = frozenset({"model", "prompt", "n", "size", "user"})
IMAGE_MODELS = {
    "dall-e-2": ImageModel(
        ("256x256", "512x512", "1024x1024"), 10, BASE_FIELDS | {"response_format"}
    ),
    "dall-e-3": ImageModel(
        ("1024x1024", "1792x1024", "1024x1792"),
        1,
        BASE_FIELDS | {"response_format", "quality", "style"},
        revises=True,
    ),
    "gpt-image-1": ImageModel(
        ("auto", "1024x1024", "1536x1024", "1024x1536"),
        10,
        BASE_FIELDS | {"quality", "background", "output_format", "moderation"},
        b64_only=True,
    ),
}
EDIT_FIELDS = frozenset({"model", "prompt", "n", "size", "response_format", "user"})
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
AUDIO_FORMATS = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")
TRANSCRIPTION_FIELDS = frozenset(
    {"model", "file", "language", "prompt", "temperature", "response_format"}
)
TRANSCRIPT_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer")
SPEECH_FIELDS = frozenset({"model", "input", "voice", "response_format", "speed", "instructions"})
SPEECH_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


def image_model(body: dict[str, Any]) -> ImageModel | None:
    name = model_name(body)
    return next((m for key, m in IMAGE_MODELS.items() if name.startswith(key)), None)


def model_name(body: dict[str, Any]) -> str:
    return str(body.get("model") or "dall-e-2")  # OpenAI's default for images


def unknown_field(body: dict[str, Any], fields: frozenset[str]) -> Problem:
    extra = sorted(set(body) - fields)
    return (f"Unknown parameter: '{extra[0]}'.", "unknown_parameter") if extra else None


def invalid_value(value: Any, allowed: tuple[str, ...], param: str) -> Problem:
    listed = ", ".join(f"'{a}'" for a in allowed)
    message = f"Invalid value for '{param}': '{value}'. Supported values are: {listed}."
    return None if value in allowed else (message, "invalid_value")


def missing(name: str) -> Problem:
    return (f"Missing required parameter: '{name}'.", "missing_required_parameter")


# --- images ------------------------------------------------------------------------------


def image_problem(body: Any) -> Problem:
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    model = image_model(body)
    if model is None:
        return (f"Invalid value for 'model': '{model_name(body)}'.", "invalid_value")
    if (problem := unknown_field(body, model.fields)) is not None:
        return problem
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        return missing("prompt")
    return common_image_problem(body, model)


def common_image_problem(body: dict[str, Any], model: ImageModel) -> Problem:
    n = body.get("n", 1)
    if not isinstance(n, int) or not 1 <= n <= model.max_n:
        return (f"Invalid 'n': expected a value <= {model.max_n}, got {n}.", "invalid_value")
    if "size" in body and (problem := invalid_value(body["size"], model.sizes, "size")):
        return problem
    if "response_format" in body:
        return invalid_value(body["response_format"], ("url", "b64_json"), "response_format")
    return None


def image_reply(body: dict[str, Any], images: list[bytes], put: Put) -> dict[str, Any]:
    model = image_model(body)
    assert model is not None
    as_b64 = model.b64_only or body.get("response_format") == "b64_json"
    data = []
    for png in images:
        item = (
            {"b64_json": base64.b64encode(png).decode()}
            if as_b64
            else {"url": put(png, "image/png", ".png")}
        )
        if model.revises:
            item["revised_prompt"] = f"A detailed picture of {body['prompt']}"
        data.append(item)
    reply: dict[str, Any] = {"created": 1700000000, "data": data}
    if model.b64_only:
        tokens = len(str(body["prompt"]).split())
        reply["usage"] = {
            "input_tokens": tokens,
            "output_tokens": 272,
            "total_tokens": tokens + 272,
        }
    return reply


def generated(body: dict[str, Any]) -> list[bytes]:
    return [fake_image(body["prompt"])] * int(body.get("n", 1))


# --- image edits -------------------------------------------------------------------------


def edit_problem(body: Any) -> Problem:
    if not isinstance(body, Form):
        return "Invalid Content-Type header, expected multipart/form-data."
    model = image_model(body)
    if model is None or model is IMAGE_MODELS["dall-e-3"]:
        return (f"Invalid value for 'model': '{model_name(body)}'.", "invalid_value")
    images = edit_images(body)
    if (problem := unknown_field(body, EDIT_FIELDS | {"image", "image[]", "mask"})) is not None:
        return problem
    if not images:
        return missing("image")
    if (problem := files_problem(images, body.get("mask"), model)) is not None:
        return problem
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        return missing("prompt")
    return common_image_problem(numbers(body), model)


def edit_images(body: Form) -> list[Any]:
    found = body.get("image", body.get("image[]", []))
    return found if isinstance(found, list) else [found]


def files_problem(images: list[Any], mask: Any, model: ImageModel) -> Problem:
    if not all(isinstance(i, Upload) for i in images) or (mask and not isinstance(mask, Upload)):
        return ("'image' and 'mask' must be files.", "invalid_value")
    if model is IMAGE_MODELS["dall-e-2"] and len(images) > 1:
        return ("dall-e-2 edits take one image.", "invalid_value")
    for field, upload in [("image", i) for i in images] + ([("mask", mask)] if mask else []):
        if sniff(upload.data) not in IMAGE_TYPES:
            allowed = ", ".join(f"'{t}'" for t in IMAGE_TYPES)
            kind = upload.content_type
            text = f"Invalid file '{field}': unsupported mimetype ('{kind}'). Supported: {allowed}."
            return (text, "invalid_image_format")
    return None


def numbers(body: Form) -> dict[str, Any]:
    """Multipart fields are text; ``n`` is a number to OpenAI."""
    out = dict(body)
    if isinstance(out.get("n"), str):
        out["n"] = int(out["n"]) if out["n"].isdigit() else out["n"]
    return out


def sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return "image/webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None


# --- transcriptions ----------------------------------------------------------------------


def transcription_problem(body: Any) -> Problem:
    if not isinstance(body, Form):
        return "Invalid Content-Type header, expected multipart/form-data."
    if (problem := unknown_field(body, TRANSCRIPTION_FIELDS)) is not None:
        return problem
    upload = body.get("file")
    if not isinstance(upload, Upload):
        return missing("file")
    if not body.get("model"):
        return missing("model")
    if upload.filename.rsplit(".", 1)[-1].lower() not in AUDIO_FORMATS:
        return (f"Invalid file format. Supported formats: {list(AUDIO_FORMATS)}", "invalid_value")
    fmt = body.get("response_format", "json")
    allowed = TRANSCRIPT_FORMATS if body["model"] == "whisper-1" else ("json", "text")
    return invalid_value(fmt, allowed, "response_format")


def fake_transcript(audio: bytes) -> str:
    """What the fake hears in an audio file: fixed by its bytes."""
    return f"fake transcript {hashlib.sha256(audio).hexdigest()[:8]}"


def transcription_reply(body: Form) -> web.Response:
    upload: Upload = body["file"]
    text, seconds = fake_transcript(upload.data), round(len(upload.data) / 16000, 2)
    fmt = body.get("response_format", "json")
    if fmt in ("text", "srt", "vtt"):
        return web.Response(text=subtitles(text, fmt), content_type="text/plain")
    usage: dict[str, Any] = {"type": "duration", "seconds": max(1, round(seconds))}
    if body["model"] != "whisper-1":
        usage = {"type": "tokens", "input_tokens": 14, "output_tokens": 3, "total_tokens": 17}
    if fmt == "json":
        return web.json_response({"text": text, "usage": usage})
    segment = {"id": 0, "seek": 0, "start": 0.0, "end": seconds, "text": text, "tokens": [1, 2]}
    language = body.get("language", "english")
    return web.json_response(
        {
            "task": "transcribe",
            "language": language,
            "duration": seconds,
            "text": text,
            "segments": [segment],
            "usage": usage,
        }
    )


def subtitles(text: str, fmt: str) -> str:
    if fmt == "srt":
        return f"1\n00:00:00,000 --> 00:00:01,000\n{text}\n\n"
    if fmt == "vtt":
        return f"WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n{text}\n\n"
    return text + "\n"


# --- speech ------------------------------------------------------------------------------


def speech_problem(body: Any) -> Problem:
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    if (problem := unknown_field(body, SPEECH_FIELDS)) is not None:
        return problem
    for name in ("model", "input", "voice"):
        if not body.get(name):
            return missing(name)
    if len(str(body["input"])) > 4096:
        return ("Input is too long: at most 4096 characters.", "string_above_max_length")
    if (problem := invalid_value(body["voice"], VOICES, "voice")) is not None:
        return problem
    speed = body.get("speed", 1.0)
    if not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        return (f"Invalid 'speed': expected a value in [0.25, 4.0], got {speed}.", "invalid_value")
    return invalid_value(body.get("response_format", "mp3"), tuple(SPEECH_TYPES), "response_format")


def fake_speech(text: str, fmt: str = "mp3") -> bytes:
    """The audio the fake says a text with: a format's magic bytes, then the text."""
    magic = {"mp3": b"ID3\x04\x00", "wav": b"RIFF\x00\x00\x00\x00WAVE", "flac": b"fLaC"}
    return magic.get(fmt, b"\x00AUDIO") + text.encode()


def speech_reply(body: dict[str, Any]) -> web.Response:
    fmt = body.get("response_format", "mp3")
    return web.Response(body=fake_speech(body["input"], fmt), content_type=SPEECH_TYPES[fmt])
