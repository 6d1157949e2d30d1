"""The built-in ``mock`` provider: deterministic output, configurable latency and failures.

It serves the default config (so taskgate runs without any key), the benchmarks and tests.
Options (route or instance ``options``): ``latency_ms`` and ``failure_rate`` (0..1, decided
by a hash of task id and attempt, so a run repeats exactly). A task's params may steer one
call: ``mock_latency_ms``, ``mock_fail_attempts`` (fail the first N attempts),
``mock_error`` (an error type such as ``rate_limited`` or ``invalid_input``),
``mock_retry_after``, ``mock_reasoning`` (a chat answer with ``reasoning`` beside its
``text``, as a thinking model's) and ``stream`` (chat words sent as progress: reasoning as
``reasoning_delta``, then the answer as ``delta``). Embeddings are one vector per input
string (``{"embeddings": [...]}``, as the ``openai`` provider answers); images are PNG files,
speech a WAV file of silence and videos a two-second MP4 (H.264, ``providers/tiny_mp4.py``)
of the prompt's colour with a bar moving across it.
An input with an ``image`` (a file reference or data URI) is read, and its sha256 is in
the output; a ``transcription`` reads its audio (``{"file": REF}``) and answers ``text``.

``mock_job_seconds`` makes the call a backend-side job: ``run`` returns a :class:`Job` that
is done that many seconds after submission (a wall-clock time kept in the job, so it survives
a restart), ``poll`` reports progress until then, and ``mock_job_error`` makes the finished
job fail with that error type; ``mock_poll_failures`` makes that many poll requests fail
(503). Cancelled job ids are kept in ``cancelled``.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import time
import zlib
from typing import Any

from taskgate import errors, params
from taskgate.config import Route
from taskgate.errors import BadRequest
from taskgate.providers.base import Call, Job, OutputFile, Pending, Provider, Result
from taskgate.providers.media import input_bytes
from taskgate.providers.registry import register_provider
from taskgate.providers.tiny_mp4 import tiny_mp4

_ERRORS: dict[str, type[errors.ProviderError]] = {
    cls.code: cls
    for cls in (
        errors.RateLimited,
        errors.Overloaded,
        errors.ProviderTimeout,
        errors.ConnectionFailed,
        errors.BadResponse,
        errors.InvalidInput,
        errors.AuthFailed,
        errors.ContentRefused,
    )
}


def _unit(*parts: object) -> float:
    """A number in [0, 1) fixed by its inputs."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return struct.unpack(">Q", digest[:8])[0] / 2**64


def _number(call: Call, name: str, default: Any) -> float:
    """A numeric param of the call (else ``default``, an option), within its bounds (those
    of a task's params were checked at submit; an option's are checked here)."""
    value = call.params.get(name, default)
    try:
        params.check_number(name, value, *MockProvider.param_bounds[name])
    except BadRequest as exc:
        raise errors.InvalidInput(exc.message) from None
    return float(value)


def prompt_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(value)  # texts to embed
    if isinstance(value, dict):
        if "prompt" in value:
            return str(value["prompt"])
        if value.get("messages"):
            last = value["messages"][-1]
            return _text_of(last.get("content", "")) if isinstance(last, dict) else str(last)
    return str(value)


def _text_of(content: Any) -> str:
    """A message's text: the string, or the text of its parts (its images are not text)."""
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and "text" in p)
    return str(content)


@register_provider("mock")
class MockProvider(Provider):
    param_bounds = {
        "mock_latency_ms": (0, 86_400_000, False),
        "mock_job_seconds": (0, 86_400, False),
        "mock_retry_after": (0, 86_400, False),
        "mock_fail_attempts": (0, 1_000, True),
        "mock_poll_failures": (0, 1_000, True),
        "mock_size": (1, 1_024, True),
        "dimensions": params.COMMON["dimensions"],
    }

    def __init__(self, route: Route) -> None:
        super().__init__(route)
        self.cancelled: list[str] = []
        self._failed_polls: dict[str, int] = {}

    async def run(self, call: Call) -> Result | Job:
        p = call.params
        if "mock_job_seconds" in p:
            self._maybe_fail(call)
            done_at = time.time() + _number(call, "mock_job_seconds", 0)
            return Job(f"mockjob-{call.task_id}-{call.attempt}", {"done_at": done_at}, 0.0)
        return await self._answer(call)

    async def poll(self, call: Call, job: Job) -> Result | Pending:
        failed = self._failed_polls.get(job.id, 0)
        if failed < _number(call, "mock_poll_failures", 0):  # the poll request fails
            self._failed_polls[job.id] = failed + 1
            raise errors.Overloaded(f"mock poll {failed + 1} of {job.id} failed")
        left = float(job.data["done_at"]) - time.time()
        if left > 0:
            return Pending(retry_after=min(left, 0.05), progress={"job": job.id, "left": left})
        if "mock_job_error" in call.params:
            cls = _ERRORS.get(str(call.params["mock_job_error"]), errors.Overloaded)
            raise errors.job_ended(
                cls(f"mock job {job.id} failed", provider_code=f"mock_{cls.code}")
            )
        return await self._answer(call)

    async def cancel_job(self, call: Call, job: Job) -> None:
        self.cancelled.append(job.id)

    async def _answer(self, call: Call) -> Result:
        p = call.params
        latency = _number(call, "mock_latency_ms", call.option("latency_ms", 0)) / 1000
        self._maybe_fail(call)
        text = prompt_of(call.input)
        if call.kind == "chat" and p.get("stream"):
            pieces = [("delta", w) for w in f"mock reply to: {text}".split()]
            if p.get("mock_reasoning"):
                pieces[:0] = [("reasoning_delta", w) for w in mock_reasoning(text).split()]
            for field, word in pieces:
                await asyncio.sleep(latency / len(pieces))
                await call.emit({field: word + " "})
        elif latency > 0:
            await asyncio.sleep(latency)
        output = self._output(call, text)
        usage = {"input_tokens": len(text.split())}
        if call.kind == "chat":
            usage["output_tokens"] = len(output["text"].split())
        if isinstance(call.input, dict) and "image" in call.input:  # an edit: read the input
            image = await input_bytes(call, call.input["image"], "image")
            output["input_sha256"] = hashlib.sha256(image.data).hexdigest()
        if call.kind == "transcription":  # hear the audio: {"file": REF} or the REF
            ref = call.input.get("file") if isinstance(call.input, dict) else call.input
            audio = await input_bytes(call, ref, "audio")
            output["text"] = mock_transcript(audio.data)
        return Result(output, usage, self._files(call, text))

    @staticmethod
    def _maybe_fail(call: Call) -> None:
        p = call.params
        fail_first = _number(call, "mock_fail_attempts", 0)
        rate = float(call.option("failure_rate", 0.0))
        if call.attempt <= fail_first or (rate and _unit(call.task_id, call.attempt) < rate):
            cls = _ERRORS.get(str(p.get("mock_error", "overloaded")), errors.Overloaded)
            raise cls(
                f"mock {cls.code} on attempt {call.attempt}",
                provider_code=f"mock_{cls.code}",
                retry_after=_number(call, "mock_retry_after", 0)
                if "mock_retry_after" in p
                else None,
            )

    @staticmethod
    def _files(call: Call, text: str) -> tuple[OutputFile, ...]:
        if call.kind == "speech":
            return (OutputFile(silent_wav(0.25), "audio/wav", "speech.wav"),)
        if call.kind == "video":
            return (OutputFile(tiny_mp4(prompt_colour(text)), "video/mp4", "video.mp4"),)
        if call.kind not in ("image", "image_edit"):
            return ()
        size = int(_number(call, "mock_size", 16))
        return (OutputFile(solid_png(size, prompt_colour(text)), "image/png", "image.png"),)

    @staticmethod
    def _output(call: Call, text: str) -> dict[str, Any]:
        if call.kind == "embedding":  # one vector per input string, as the openai provider
            dims = int(_number(call, "dimensions", 8))
            texts = call.input if isinstance(call.input, list) else [text]
            return {"embeddings": [mock_vector(str(t), dims) for t in texts]}
        if call.kind == "chat":
            out = {"text": f"mock reply to: {text}", "finish_reason": "stop", "model": call.model}
            if call.params.get("mock_reasoning"):
                out["reasoning"] = mock_reasoning(text)
            return out
        digest = hashlib.sha256(f"{call.kind}|{call.model}|{text}".encode()).hexdigest()[:16]
        return {"kind": call.kind, "model": call.model, "digest": digest, "prompt": text}


def mock_transcript(audio: bytes) -> str:
    """What the mock hears in an audio file: fixed by its bytes."""
    return f"mock transcript of {len(audio)} bytes ({hashlib.sha256(audio).hexdigest()[:8]})"


def mock_reasoning(text: str) -> str:
    """What the mock thinks before it answers (with ``mock_reasoning``)."""
    return f"mock thinking about: {text}"


def mock_vector(text: str, dims: int) -> list[float]:
    """The mock's embedding of a text: ``dims`` numbers in [-1, 1) fixed by it."""
    return [round(_unit(text, i) * 2 - 1, 6) for i in range(dims)]


def prompt_colour(text: str) -> tuple[int, int, int]:
    digest = hashlib.sha256(text.encode()).digest()
    return digest[0], digest[1], digest[2]


def solid_png(size: int, rgb: tuple[int, int, int]) -> bytes:
    """A square PNG, ``size`` pixels a side, of one colour: a real image, fixed by the prompt."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB
    rows = (b"\x00" + bytes(rgb) * size) * size  # filter byte 0, then the pixels
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def silent_wav(seconds: float, rate: int = 8000) -> bytes:
    """A WAV file of ``seconds`` of silence (8-bit mono): real audio a browser plays."""
    frames = int(seconds * rate) // 2 * 2  # a RIFF chunk is of even length
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate, 1, 8)  # PCM, mono, 1 byte a frame
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", frames) + b"\x80" * frames  # 8-bit silence is 128
    return b"RIFF" + struct.pack("<I", len(body)) + body
