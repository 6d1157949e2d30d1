"""Keeping an instance's secret out of text, results, jobs, errors and progress events."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from taskgate import errors
from taskgate.config import Instance
from taskgate.providers import Job, Result
from taskgate.providers.redact import (
    MIN_PREFIX,
    Progress,
    scrub,
    scrub_cut,
    scrub_error,
    scrub_job,
    scrub_json,
    scrub_result,
)

SECRET = "sk-FAKESECRET-9f3c1a7e5b2d4c6e8a0b1c2d"
INSTANCE = Instance(name="i", secret=SecretStr(SECRET))


def test_the_secret_and_the_key_half_of_a_pair_are_blanked() -> None:
    pair = Instance(name="v", secret=SecretStr("AKLTaccess:c2VjcmV0LWtleQ=="))
    assert scrub("a AKLTaccess:c2VjcmV0LWtleQ== b c2VjcmV0LWtleQ== c", pair) == "a *** b *** c"
    assert scrub("nothing to hide", Instance(name="none")) == "nothing to hide"


@pytest.mark.parametrize("kept", range(1, len(SECRET)))
def test_a_secret_across_the_cut_is_blanked_before_the_cut(kept: int) -> None:
    """Cut first, a quote of 300 characters would end ``kept`` characters into the secret."""
    text = "x" * (300 - len("Bearer ") - kept) + f"Bearer {SECRET} and more"
    out = scrub_cut(text, 300, INSTANCE)
    assert out == scrub(text, INSTANCE)[:300] and "Bearer *" in out
    assert SECRET[:MIN_PREFIX] not in out


@pytest.mark.parametrize("kept", range(1, len(SECRET)))
def test_a_cut_that_ends_in_the_start_of_a_secret_blanks_it(kept: int) -> None:
    """A text with most of the secret (a backend cut it), cut ``kept`` characters into it."""
    text = "x" * (300 - len("Bearer ") - kept) + f"Bearer {SECRET[:-1]}"
    out = scrub_cut(text, 300, INSTANCE)
    if kept >= MIN_PREFIX:
        assert out == text[: 300 - kept] + "***"
    else:  # sk-: a key's public prefix, kept rather than mangling every text ending in "s"
        assert out == text[:300]
    assert SECRET[:MIN_PREFIX] not in out


def test_a_cut_blanks_first_and_quotes_at_most_the_limit() -> None:
    assert scrub_cut(f"{SECRET} {'y' * 400}", 300, INSTANCE) == "*** " + "y" * 296
    assert scrub_cut("short", 300, INSTANCE) == "short"


def test_json_is_walked_through_keys_values_and_lists() -> None:
    value = {SECRET: [f"Bearer {SECRET}", {"k": SECRET}, 1, None], "n": 2.5, "ok": True}
    assert scrub_json(value, INSTANCE) == {
        "***": ["Bearer ***", {"k": "***"}, 1, None],
        "n": 2.5,
        "ok": True,
    }


def test_json_without_the_secret_is_kept_as_it_is_and_non_json_is_refused() -> None:
    value = {"embeddings": [[0.1, 0.2]], "text": "fine"}
    assert scrub_json(value, INSTANCE) is value
    with pytest.raises(TypeError):
        scrub_json({"x": object()}, INSTANCE)


def test_a_secret_needing_json_escapes_is_still_found() -> None:
    odd = Instance(name="odd", secret=SecretStr('k"e\\y\n9-long'))
    assert scrub_json({"a": 'x k"e\\y\n9-long y'}, odd) == {"a": "x *** y"}


def test_a_placeholder_too_short_to_be_a_secret_is_left_alone() -> None:
    """Ollama's documented key is "ollama": its answers may name it; a "user:pw" pair's pw
    is no secret of its own either."""
    assert scrub("ollama says hi", Instance(name="o", secret=SecretStr("ollama"))) == (
        "ollama says hi"
    )
    pair = Instance(name="p", secret=SecretStr("user:pw"))
    assert scrub("pw of user", pair) == "pw of user"


def test_results_jobs_and_errors_lose_the_secret() -> None:
    result = scrub_result(Result({"text": SECRET}, {"note": SECRET, "tokens": 3}), INSTANCE)
    assert (result.output, result.usage) == ({"text": "***"}, {"note": "***", "tokens": 3})
    job = scrub_job(Job(f"job-{SECRET}", {"token": SECRET, "n": 1}), INSTANCE)
    assert job.as_dict() == {"id": "job-***", "data": {"token": "***", "n": 1}}
    error = scrub_error(errors.AuthFailed(f"bad key {SECRET}", provider_code=SECRET), INSTANCE)
    assert str(error) == error.message == "bad key ***"
    assert error.as_dict()["provider_code"] == "***"


class Sink:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def __call__(self, data: dict[str, Any]) -> None:
        self.events.append(data)

    def text(self, key: str = "delta") -> str:
        return "".join(e[key] for e in self.events if key in e)


async def test_progress_blanks_a_secret_in_one_piece_and_in_other_fields() -> None:
    sink = Sink()
    progress = Progress(INSTANCE, sink)
    await progress({"delta": f"key {SECRET} ok", "status": f"x{SECRET}"})
    assert sink.events == [{"delta": "key *** ok", "status": "x***"}]


@pytest.mark.parametrize("at", [1, 3, 4, 20, len(SECRET) - 1])
async def test_progress_blanks_a_secret_split_between_pieces(at: int) -> None:
    sink = Sink()
    progress = Progress(INSTANCE, sink)
    for piece in ["the key ", f"is {SECRET[:at]}", f"{SECRET[at:]} ok", "!"]:
        await progress({"delta": piece})
    await progress.flush()
    assert sink.text() == "the key is *** ok!"
    assert not any(SECRET[:2] in e["delta"] for e in sink.events)


async def test_progress_sends_a_held_start_that_was_no_secret() -> None:
    sink = Sink()
    progress = Progress(INSTANCE, sink)
    await progress({"delta": "yes s"})  # "s" may begin the secret: held
    await progress({"reasoning_delta": "thinking sk-"})
    assert sink.events == [{"delta": "yes "}, {"reasoning_delta": "thinking "}]
    await progress({"delta": "o it is"})  # it did not
    await progress.flush()  # the call ended: what is still held goes out
    assert sink.text() == "yes so it is"
    assert sink.text("reasoning_delta") == "thinking sk-"
