"""Input and output media of providers: references, data URIs, base64."""

from __future__ import annotations

import dataclasses

import pytest

from taskgate import errors
from taskgate.config import Instance, Route
from taskgate.providers import Call, OutputFile
from taskgate.providers.media import (
    data_uri,
    from_data_uri,
    input_bytes,
    input_url,
    name_for,
    output_from_b64,
)

ROUTE = Route(name="r", models=["*"], provider="mock", instances=[Instance(name="i")])


def call(files: dict[str, OutputFile]) -> Call:
    async def read(file_id: str) -> OutputFile:
        if file_id not in files:
            raise errors.InvalidInput(f"input file {file_id!r} not found")
        return files[file_id]

    return Call("t", "image_edit", "m", None, {}, 1, ROUTE.instances[0], ROUTE, read_file=read)


async def test_a_file_reference_reads_the_tenants_file() -> None:
    f = OutputFile(b"\x89PNG", "image/png", "a.png")
    assert await input_bytes(call({"f1": f}), {"file_id": "f1"}) == f
    with pytest.raises(errors.InvalidInput, match="f2"):
        await input_bytes(call({}), {"file_id": "f2"})


async def test_urls_pass_through_and_our_files_become_data_uris() -> None:
    f = OutputFile(b"abc", "image/png", "a.png")
    c = call({"f1": f})
    with pytest.raises(errors.InvalidInput, match="media URLs from clients are refused"):
        await input_url(c, "https://example.com/a.png")
    allowed = dataclasses.replace(
        c, route=ROUTE.model_copy(update={"options": {"client_media_urls": True}})
    )
    assert await input_url(allowed, "https://example.com/a.png") == "https://example.com/a.png"
    assert await input_url(c, {"file_id": "f1"}) == "data:image/png;base64,YWJj"
    with pytest.raises(errors.InvalidInput, match="uploaded file"):
        await input_bytes(c, "https://example.com/a.png")  # we do not fetch client URLs


def test_data_uris_round_trip_and_bad_ones_are_invalid_input() -> None:
    f = from_data_uri("data:audio/wav;base64,UklGRg==", "audio")
    assert (f.data, f.content_type, f.name) == (b"RIFF", "audio/wav", "audio.wav")
    assert from_data_uri(data_uri(f)).data == b"RIFF"
    for bad in ("data:,plain", "data:image/png;base64,@@@", "nocomma"):
        with pytest.raises(errors.InvalidInput):
            from_data_uri(bad)


def test_bad_base64_from_a_backend_is_a_bad_response() -> None:
    assert output_from_b64("YWJj", "image/png", "x.png").data == b"abc"
    with pytest.raises(errors.BadResponse):
        output_from_b64("not base64!", "image/png", "x.png")
    assert name_for("image", "image/jpeg") == "image.jpg"
    assert name_for("blob", "application/x-unknown") == "blob.bin"
