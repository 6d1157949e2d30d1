"""Local blob storage and the mock provider's PNG images."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from taskgate.files import LocalBlobs, from_url
from taskgate.providers.mock import solid_png


async def test_local_blobs_round_trip(tmp_path: Path) -> None:
    blobs = LocalBlobs(tmp_path)
    await blobs.put("abc123", b"hello")
    assert await blobs.get("abc123") == b"hello"
    assert (tmp_path / "ab" / "abc123").read_bytes() == b"hello"
    assert not list(tmp_path.rglob("*.part"))
    with pytest.raises(FileNotFoundError):
        await blobs.get("abc999")


@pytest.mark.parametrize("key", ["../etc/passwd", "a/b", "", "x.y"])
async def test_local_blobs_refuse_keys_that_are_not_plain_ids(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="bad file key"):
        await LocalBlobs(tmp_path).put(key, b"x")


def test_files_url() -> None:
    blobs = from_url("file:///srv/taskgate/files")
    assert isinstance(blobs, LocalBlobs) and blobs.root == Path("/srv/taskgate/files")
    with pytest.raises(ValueError, match="unsupported files URL"):
        from_url("ftp://x")


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
