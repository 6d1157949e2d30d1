"""Inputs and replies of OpenAI's image and audio endpoints, shared by the providers that
speak them (``openai``, and ``ark`` for its Seedream images).

Every output file is copied into the result at once: a backend's image URL is signed and
expires (OpenAI's within the hour, Ark's within a day), so it is never the only copy. A URL
that is already gone fails the attempt as a bad response, and the retry makes a fresh one.
This module imports nothing from :mod:`taskgate.providers.openai`, which builds on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from taskgate import errors
from taskgate.providers import media
from taskgate.providers.base import Call, OutputFile, Result
from taskgate.providers.web import WebProvider, bad_response, download, without_query

ItemError = Callable[[Any], errors.ProviderError]  # an error reported for one image
# OpenAI tells an audio file's format by its name's extension; these are the ones it takes.
AUDIO_EXTENSIONS = {
    "audio/flac": "flac",
    "audio/m4a": "m4a",
    "audio/mp3": "mp3",
    "audio/mp4": "m4a",
    "audio/mpeg": "mp3",
    "audio/ogg": "ogg",
    "audio/wav": "wav",
    "audio/wave": "wav",
    "audio/webm": "webm",
    "audio/x-m4a": "m4a",
    "audio/x-wav": "wav",
    "video/mp4": "mp4",
    "video/webm": "webm",
}
SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


def prompt_of(value: Any, kind: str) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("prompt"), str) and value["prompt"]:
        return str(value["prompt"])
    raise errors.InvalidInput(f"{kind} input must be a prompt string or {{'prompt': ...}}")


def form(fields: dict[str, Any]) -> aiohttp.FormData:
    """A multipart form of text fields (booleans as ``true``/``false``)."""
    out = aiohttp.FormData()
    for name, value in fields.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        out.add_field(name, text)
    return out


def add_file(out: aiohttp.FormData, name: str, f: OutputFile) -> None:
    out.add_field(name, f.data, filename=f.name, content_type=f.content_type)


# --- image edits -------------------------------------------------------------------------


@dataclass(frozen=True)
class EditInput:
    prompt: str
    images: list[Any]  # file references: {"file_id": ...} or data: URIs
    mask: Any = None


def edit_input(value: Any) -> EditInput:
    if not isinstance(value, dict):
        raise errors.InvalidInput("image_edit input must be {'prompt': ..., 'image': ...}")
    images = value.get("image")
    images = images if isinstance(images, list) else [] if images is None else [images]
    if not images:
        raise errors.InvalidInput("image_edit input needs 'image': a file or a list of files")
    return EditInput(prompt_of(value, "image_edit"), images, value.get("mask"))


async def add_edit_files(out: aiohttp.FormData, call: Call, edit: EditInput) -> None:
    """One image goes up as ``image``, several as ``image[]`` (as OpenAI's own SDK sends)."""
    name = "image" if len(edit.images) == 1 else "image[]"
    for ref in edit.images:
        add_file(out, name, await media.input_bytes(call, ref, "image"))
    if edit.mask is not None:
        add_file(out, "mask", await media.input_bytes(call, edit.mask, "mask"))


# --- image replies -----------------------------------------------------------------------


async def image_result(
    provider: WebProvider, call: Call, data: dict[str, Any], item_error: ItemError
) -> Result:
    """``{"data": [{"url" | "b64_json", "revised_prompt"?}, ...], "usage"?}`` as a result
    with one file per image. Images the backend failed to make (Ark reports them in the
    list) are listed with their error; if none was made, the first error is raised."""
    items = data.get("data")
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise bad_response("a reply without a 'data' list of images", orjson.dumps(data), call)
    outputs: list[dict[str, Any]] = []
    files: list[OutputFile] = []
    for i, item in enumerate(items, 1):
        if item.get("error"):
            outputs.append({"error": item["error"]})
            continue
        meta, f = await image_of(provider, call, item, f"image-{i}")
        outputs.append(meta)
        files.append(f)
    if not files:
        raise item_error(items[0]["error"])
    return Result({"images": outputs}, image_usage(data.get("usage"), len(files)), tuple(files))


async def image_of(
    provider: WebProvider, call: Call, item: dict[str, Any], stem: str
) -> tuple[dict[str, Any], OutputFile]:
    meta = {k: item[k] for k in ("revised_prompt", "size") if item.get(k)}
    if isinstance(item.get("b64_json"), str):
        f = media.output_from_b64(item["b64_json"], "image/png", stem)
    elif isinstance(item.get("url"), str):
        f = await download(provider, call, item["url"], stem)
        meta["source_url"] = without_query(item["url"])
    else:
        raise bad_response("an image with neither 'url' nor 'b64_json'", orjson.dumps(item), call)
    return meta, named(f, stem, media.sniff_image(f.data))


async def fetch(provider: WebProvider, call: Call, url: str, stem: str) -> OutputFile:
    """Download an output file now, named after its content type."""
    return named(await download(provider, call, url, stem), stem)


def named(f: OutputFile, stem: str, content_type: str | None = None) -> OutputFile:
    kind = content_type or f.content_type
    return OutputFile(f.data, kind, media.name_for(stem, kind))


def image_usage(raw: Any, images: int) -> dict[str, Any]:
    usage = raw if isinstance(raw, dict) else {}
    tokens = {k: usage[k] for k in ("input_tokens", "output_tokens") if usage.get(k) is not None}
    return {"images": images, **tokens}


# --- audio -------------------------------------------------------------------------------


async def audio_input(call: Call) -> OutputFile:
    """The audio to transcribe: ``{"file": REF}`` or the REF itself, named with an extension
    that says its format (OpenAI goes by the name), from its content type if need be."""
    value = call.input
    ref = value["file"] if isinstance(value, dict) and "file" in value else value
    audio = await media.input_bytes(call, ref, "audio")
    if audio.name.rsplit(".", 1)[-1].lower() in AUDIO_EXTENSIONS.values():
        return audio
    ext = AUDIO_EXTENSIONS.get(audio.content_type.split(";")[0].strip().lower())
    return OutputFile(audio.data, audio.content_type, f"audio.{ext}") if ext else audio


def transcription_result(data: dict[str, Any], call: Call) -> Result:
    if not isinstance(data.get("text"), str):
        raise bad_response("a transcription without 'text'", orjson.dumps(data), call)
    output = {k: v for k, v in data.items() if k != "usage"}
    return Result(output, audio_usage(data.get("usage"), data.get("duration")))


def transcription_text(text: str, call: Call) -> Result:
    """A reply in ``text``, ``srt`` or ``vtt``: the body is the transcript."""
    return Result({"text": text, "format": call.params.get("response_format", "text")})


def audio_usage(raw: Any, duration: Any) -> dict[str, Any]:
    """Tokens (``gpt-4o-transcribe``) or seconds of audio (``whisper-1``)."""
    usage = raw if isinstance(raw, dict) else {}
    if usage.get("type") == "duration" and usage.get("seconds") is not None:
        return {"seconds": usage["seconds"]}
    tokens = {k: usage[k] for k in ("input_tokens", "output_tokens") if usage.get(k) is not None}
    if not tokens and isinstance(duration, int | float):
        return {"seconds": duration}
    return tokens


def speech_text(value: Any) -> str:
    text = value.get("input", value.get("text")) if isinstance(value, dict) else value
    if not isinstance(text, str) or not text:
        raise errors.InvalidInput("speech input must be the text to say, or {'input': ...}")
    return text


def speech_result(raw: bytes, content_type: str, call: Call) -> Result:
    if not raw or content_type.startswith(("application/json", "text/")):
        raise bad_response(f"a {content_type} reply where audio was expected", raw, call)
    fmt = str(call.params.get("response_format", "mp3"))
    name = f"speech.{fmt}" if fmt in SPEECH_FORMATS else media.name_for("speech", content_type)
    audio = OutputFile(raw, content_type, name)
    return Result({"format": fmt}, {}, (audio,))
