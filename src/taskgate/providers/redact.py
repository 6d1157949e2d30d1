"""Keeping an instance's secret out of what taskgate keeps, shows and logs.

A backend may send back the key it was called with: in an error (a careless server quoting
the Authorization header), in an answer (an echo server, a proxy reflecting the request) or in
a streamed piece of text. Whatever comes from a provider passes through here before it is
stored or published: errors and quotes of a backend's body (:func:`scrub`, :func:`scrub_cut`),
results and job data (:func:`scrub_json`), progress events (:class:`Progress`).

An instance's secrets are its ``secret`` and, when that is a pair ``ACCESS_KEY:SECRET_KEY``
(Volcengine's signing keys), the secret key on its own, each of 8 characters or more (shorter
ones are placeholders). Each becomes ``***``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import orjson

from taskgate import errors
from taskgate.config import Instance
from taskgate.providers.base import Call, Emit, Job, Result

MASK = "***"
# Shorter texts are placeholders, not secrets: ``user:pw`` hides neither ``pw`` nor itself.
MIN_SECRET = 8
# The start of a secret that a cut leaves at the end of a text is blanked from this length on:
# fewer characters tell next to nothing (a key's first ones are mostly a public prefix, sk-).
MIN_PREFIX = 4
# The keys of progress events whose strings are pieces of one text (Call.emit's convention).
TEXT_PIECES = ("delta", "reasoning_delta")

Of = Call | Instance
E = TypeVar("E", bound=errors.ProviderError)


def secrets_of(of: Of) -> tuple[str, ...]:
    """The texts to blank out for an instance (of a call, or itself): none shorter than
    :data:`MIN_SECRET` (a placeholder such as Ollama's ``ollama`` is no secret, and blanking
    it would mangle every answer that names it)."""
    instance = of.instance if isinstance(of, Call) else of
    secret = instance.secret.get_secret_value() if instance.secret else ""
    key = secret.partition(":")[2].strip()
    return tuple(s for s in (secret, key) if len(s) >= MIN_SECRET)


def scrub(text: str, of: Of) -> str:
    """``text`` with every secret of the instance blanked out."""
    for secret in secrets_of(of):
        text = text.replace(secret, MASK)
    return text


def open_end(text: str, of: Of) -> int:
    """How many of the last characters of ``text`` are the start of a secret (0: none)."""
    starts = (n for s in secrets_of(of) for n in range(1, len(s)) if text.endswith(s[:n]))
    return max(starts, default=0)


def scrub_cut(text: str, limit: int, of: Of) -> str:
    """At most ``limit`` characters of ``text`` (and a mask), without the secret: blanked
    before the cut, and a text that ends in the start of a secret (where the cut, or the
    backend, split one) has that start blanked too, if it is ``MIN_PREFIX`` characters or more."""
    text = scrub(text, of)[:limit]
    n = open_end(text, of)
    return text[: len(text) - n] + MASK if n >= MIN_PREFIX else text


def scrub_data(value: Any, of: Of) -> Any:
    """Nested mappings and lists with the secret blanked out of every string, keys too; other
    values are kept as they are."""
    if isinstance(value, str):
        return scrub(value, of)
    if isinstance(value, dict):
        return {scrub_data(k, of): scrub_data(v, of) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_data(v, of) for v in value]
    return value


def scrub_json(value: Any, of: Of) -> Any:
    """A value the store can keep (JSON; else orjson's ``TypeError``), without the secret.
    The encoded JSON shows whether a secret is in it at all; only then is it walked."""
    dumped = orjson.dumps(value)
    if not any(orjson.dumps(s)[1:-1] in dumped for s in secrets_of(of)):
        return value
    return scrub_data(orjson.loads(dumped), of)


def scrub_result(result: Result, of: Of) -> Result:
    """A provider's result without the secret in its output and usage (file bytes are the
    backend's media and are kept as they are)."""
    output, usage = scrub_json([result.output, result.usage], of)
    if output is result.output and usage is result.usage:
        return result  # no secret in it (the common case): no copy
    return dataclasses.replace(result, output=output, usage=usage)


def scrub_job(job: Job, of: Of) -> Job:
    """A backend's job as the task keeps it: without the secret in its id or data."""
    return dataclasses.replace(job, id=scrub_data(job.id, of), data=scrub_json(job.data, of))


def scrub_error(error: E, of: Of) -> E:
    """The error, its message and details without the secret (changed in place)."""
    error.message = scrub(error.message, of)
    error.args = (error.message,)
    error.details = scrub_data(error.details, of)
    return error


class Progress:
    """A call's ``emit``: its progress events sent on without the secret.

    Text streamed in pieces (:data:`TEXT_PIECES`) may split a secret between two events,
    neither of which shows it whole. So a piece that ends with the start of a secret keeps that
    start back until the next piece shows whether the rest follows (then it is blanked) or not
    (then it is sent); :meth:`flush` sends what is still held once the call has ended.
    """

    def __init__(self, of: Of, send: Emit) -> None:
        self._of = of
        self._send = send
        self._held: dict[str, str] = {}

    async def __call__(self, data: dict[str, Any]) -> None:
        out = scrub_data(data, self._of)
        if isinstance(out, dict):
            for key in TEXT_PIECES:
                if isinstance(out.get(key), str):
                    out[key] = self._hold(key, out[key])
            out = {k: v for k, v in out.items() if v != "" or k not in TEXT_PIECES}
            if data and not out:
                return  # all of it held back
        await self._send(out)

    def _hold(self, key: str, piece: str) -> str:
        text = scrub(self._held.pop(key, "") + piece, self._of)
        if n := open_end(text, self._of):
            self._held[key] = text[-n:]
        return text[: len(text) - n]

    async def flush(self) -> None:
        """The call has ended: send what is held (a start of a secret whose rest never came)."""
        if self._held:
            held, self._held = self._held, {}
            await self._send(held)
