"""The mock provider's video (taskgate.providers.tiny_mp4): a well-formed MP4 whose boxes,
sample table and H.264 headers agree. That a browser decodes it, and shows the colours,
is tested in Chromium (tests/browser/test_file_links.py)."""

from __future__ import annotations

import struct

import pytest

from taskgate.providers.tiny_mp4 import Bits, nal, tiny_mp4, yuv
from tests.unit.test_providers import make_call, run


def boxes(data: bytes) -> dict[bytes, bytes]:
    """The boxes at one level, by type (their bodies)."""
    out, at = {}, 0
    while at < len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        assert size >= 8 and at + size <= len(data), f"bad box {kind!r}"
        out[kind] = data[at + 8 : at + size]
        at += size
    return out


def path(data: bytes, *kinds: bytes) -> bytes:
    for kind in kinds:
        data = boxes(data)[kind]
    return data


def test_the_file_is_ftyp_moov_mdat_and_its_sample_table_points_at_every_frame() -> None:
    data = tiny_mp4((200, 30, 60), width=64, height=48, frames=8, fps=4)
    top = boxes(data)
    assert list(top) == [b"ftyp", b"moov", b"mdat"]  # moov first: it plays at once
    assert top[b"ftyp"][:4] == b"isom"
    stbl = path(top[b"moov"], b"trak", b"mdia", b"minf", b"stbl")
    _, count, *sizes = struct.unpack(">II8I", boxes(stbl)[b"stsz"][4:])
    assert count == 8 and sum(sizes) == len(top[b"mdat"])
    (offset,) = struct.unpack(">I", boxes(stbl)[b"stco"][8:])
    assert data[offset : offset + sum(sizes)] == top[b"mdat"]
    assert struct.unpack(">III", boxes(stbl)[b"stts"][4:]) == (1, 8, 250)  # 2 s in all
    mvhd = path(top[b"moov"], b"mvhd")
    assert struct.unpack(">II", mvhd[12:20]) == (1000, 2000)
    # each sample: length-prefixed IDR NAL units, the whole sample
    at = offset
    for size in sizes:
        (length,) = struct.unpack(">I", data[at : at + 4])
        assert length == size - 4 and data[at + 4] == 0x65  # nal_ref_idc 3, IDR slice
        at += size


def test_the_decoder_configuration_describes_the_picture() -> None:
    data = tiny_mp4((0, 0, 255), width=32, height=16)
    stsd = path(data, b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd")
    entry = stsd[8:]
    assert entry[4:8] == b"avc1"
    assert struct.unpack(">HH", entry[8 + 24 : 8 + 28]) == (32, 16)
    config = boxes(entry[8 + 78 :])[b"avcC"]
    assert config[:4] == bytes([1, 66, 0xC0, 30])  # Baseline, level 3.0
    (sps_len,) = struct.unpack(">H", config[6:8])
    sps = config[8 : 8 + sps_len]
    assert sps[0] == 0x67 and sps[1:4] == config[1:4]
    assert config[8 + sps_len] == 1 and config[8 + sps_len + 3] == 0x68  # one PPS


def test_exp_golomb_codes_and_emulation_prevention() -> None:
    b = Bits()
    for value in (0, 1, 2, 25):
        b.ue(value)
    b.se(-1)
    b.se(1)
    bits = "".join(map(str, b.bits))
    assert bits == "1" + "010" + "011" + "000011010" + "011" + "010"
    assert nal(5, b"\x00\x00\x01\x00\x00\x00\x00\x00\x04") == (
        b"\x65\x00\x00\x03\x01\x00\x00\x03\x00\x00\x03\x00\x04"
    )


def test_colours_are_limited_range_yuv() -> None:
    assert yuv((0, 0, 0)) == (16, 128, 128)
    assert yuv((255, 255, 255)) == (235, 128, 128)


@pytest.mark.parametrize("bad", [{"width": 20}, {"height": 0}, {"frames": 0}, {"fps": 0}])
def test_sizes_that_are_no_macroblocks_are_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="multiples of 16"):
        tiny_mp4((1, 2, 3), **bad)


async def test_the_mock_makes_a_video_of_the_prompts_colour() -> None:
    result = await run(make_call(kind="video", input="a fox in the snow"))
    [video] = result.files
    assert (video.content_type, video.name) == ("video/mp4", "video.mp4")
    assert boxes(video.data).keys() == {b"ftyp", b"moov", b"mdat"}
    again = await run(make_call(kind="video", input="a fox in the snow"))
    other = await run(make_call(kind="video", input="a red car"))
    assert again.files[0].data == video.data != other.files[0].data
