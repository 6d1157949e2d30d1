"""Local blob storage and the mock provider's PNG images."""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import pytest

from taskgate.files import LocalBlobs, S3Blobs, from_url
from taskgate.providers.mock import solid_png


async def test_local_blobs_round_trip(tmp_path: Path) -> None:
    blobs = LocalBlobs(tmp_path)
    await blobs.put("abc123", b"hello")
    assert await blobs.get("abc123") == b"hello"
    assert (tmp_path / "ab" / "abc123").read_bytes() == b"hello"
    assert not list(tmp_path.rglob("*.part"))
    with pytest.raises(FileNotFoundError):
        await blobs.get("abc999")


async def test_local_blobs_delete_many_and_missing_keys_are_no_error(tmp_path: Path) -> None:
    blobs = LocalBlobs(tmp_path)
    for key in ("abc1", "abc2", "abd3"):
        await blobs.put(key, key.encode())
    await blobs.delete_many(["abc1", "abd3", "abc404"])
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["abc2"]


@pytest.mark.parametrize("key", ["../etc/passwd", "a/b", "", "x.y"])
async def test_local_blobs_refuse_keys_that_are_not_plain_ids(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="bad file key"):
        await LocalBlobs(tmp_path).put(key, b"x")


def test_files_url() -> None:
    blobs = from_url("file:///srv/taskgate/files")
    assert isinstance(blobs, LocalBlobs) and blobs.root == Path("/srv/taskgate/files")
    with pytest.raises(ValueError, match="unsupported files URL") as err:
        from_url("ftp://x")
    assert "file://PATH" in str(err.value) and "s3://BUCKET" in str(err.value)


def test_s3_files_url_with_every_option() -> None:
    url = (
        "s3://media/taskgate/files/?endpoint=http://127.0.0.1:9000&region=eu-west-1&path_style=true"
    )
    blobs = from_url(url, key_id="id", secret="s3cret")
    assert isinstance(blobs, S3Blobs)
    assert (blobs.bucket, blobs.prefix, blobs.endpoint_url) == (
        "media",
        "taskgate/files/",
        "http://127.0.0.1:9000",
    )
    assert (blobs.region, blobs.path_style, blobs.key_id) == ("eu-west-1", True, "id")


def test_s3_files_url_defaults_to_aws_and_the_default_credential_chain() -> None:
    blobs = from_url("s3://media")
    assert isinstance(blobs, S3Blobs)
    assert (blobs.bucket, blobs.prefix, blobs.endpoint_url) == ("media", "", None)
    assert (blobs.region, blobs.path_style, blobs.key_id) == ("us-east-1", None, None)
    assert from_url("s3://media/p?path_style=false").path_style is False  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3:///prefix",
        "s3://key:secret@media",
        "s3://media:9000",
        "s3://media?endpoint=http://x&bucket=other",
        "s3://media?path_style=maybe",
    ],
)
def test_bad_s3_files_urls(url: str) -> None:
    with pytest.raises(ValueError, match="bad files URL"):
        from_url(url)


async def test_s3_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiobotocore.session", None)  # import fails
    blobs = from_url("s3://media")
    with pytest.raises(RuntimeError, match=r"pip install 'taskgate\[s3\]'"):
        await blobs.put("abc", b"x")
    await blobs.close()


def chunks(png: bytes) -> dict[bytes, bytes]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    out, pos = {}, 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + data)
        out[kind] = data
        pos += 12 + length
    return out


def test_solid_png_is_a_valid_image_of_one_colour() -> None:
    parts = chunks(solid_png(4, (10, 20, 30)))
    assert struct.unpack(">IIBB", parts[b"IHDR"][:10]) == (4, 4, 8, 2)
    rows = zlib.decompress(parts[b"IDAT"])
    assert rows == (b"\x00" + bytes([10, 20, 30]) * 4) * 4
    assert b"IEND" in parts
