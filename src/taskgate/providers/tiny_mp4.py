"""A tiny, real MP4 video built in code, for the ``mock`` provider's video tasks: H.264
(Baseline profile) whose every frame is an IDR picture of I_PCM macroblocks, in an ISO
BMFF file with its ``moov`` first, so browsers start playing it at once.

I_PCM macroblocks carry their samples raw, so no transform, prediction or entropy coding
is needed: the headers are a few Exp-Golomb numbers, the rest is pixels. That makes the
file large for its size on screen (384 bytes a 16x16 block a frame), which does not matter
for a test clip of a few small frames, and needs no media library (none is installed).
Each frame is one colour with a light bar that moves across it, so a player shows motion.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

MB = 16  # a macroblock's side, in pixels
I_PCM = 25  # mb_type of an I_PCM macroblock in an I slice
TIMESCALE = 1000  # the movie's and the track's ticks a second


class Bits:
    """An RBSP being written: fixed-width numbers and Exp-Golomb codes, most significant
    bit first."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, width: int, value: int) -> None:
        self.bits += [(value >> i) & 1 for i in range(width - 1, -1, -1)]

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(2 * code.bit_length() - 1, code)  # leading zeros, then the number

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align(self) -> None:
        self.bits += [0] * (-len(self.bits) % 8)

    def raw(self, data: bytes) -> None:
        """Whole bytes, at a byte boundary (the caller aligned)."""
        for byte in data:
            self.u(8, byte)

    def trailing(self) -> bytes:
        """The RBSP's stop bit and padding; the bytes."""
        self.u(1, 1)
        self.align()
        bits = self.bits
        return bytes(
            sum(bit << (7 - i) for i, bit in enumerate(bits[n : n + 8]))
            for n in range(0, len(bits), 8)
        )


def nal(kind: int, rbsp: bytes) -> bytes:
    """A NAL unit (referenced, of ``kind``) with emulation prevention: no 00 00 0x (x <= 3)
    inside, as a decoder would read it as a start code."""
    out = bytearray([0x60 | kind])
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def sps(mbs_wide: int, mbs_high: int) -> bytes:
    b = Bits()
    b.u(8, 66)  # Baseline profile
    b.u(8, 0xC0)  # constraint_set0 and 1: Baseline and Main decoders both play it
    b.u(8, 30)  # level 3.0
    b.ue(0)  # seq_parameter_set_id
    b.ue(0)  # log2_max_frame_num_minus4
    b.ue(2)  # pic_order_cnt_type 2: output in decoding order
    b.ue(1)  # max_num_ref_frames
    b.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
    b.ue(mbs_wide - 1)
    b.ue(mbs_high - 1)
    b.u(1, 1)  # frame_mbs_only_flag
    b.u(1, 1)  # direct_8x8_inference_flag
    b.u(1, 0)  # frame_cropping_flag
    b.u(1, 0)  # vui_parameters_present_flag
    return nal(7, b.trailing())


def pps() -> bytes:
    b = Bits()
    b.ue(0)  # pic_parameter_set_id
    b.ue(0)  # seq_parameter_set_id
    b.u(1, 0)  # entropy_coding_mode_flag: CAVLC
    b.u(1, 0)  # bottom_field_pic_order_in_frame_present_flag
    b.ue(0)  # num_slice_groups_minus1
    b.ue(0)  # num_ref_idx_l0_default_active_minus1
    b.ue(0)  # num_ref_idx_l1_default_active_minus1
    b.u(1, 0)  # weighted_pred_flag
    b.u(2, 0)  # weighted_bipred_idc
    b.se(0)  # pic_init_qp_minus26
    b.se(0)  # pic_init_qs_minus26
    b.se(0)  # chroma_qp_index_offset
    b.u(1, 0)  # deblocking_filter_control_present_flag
    b.u(1, 0)  # constrained_intra_pred_flag
    b.u(1, 0)  # redundant_pic_cnt_present_flag
    return nal(8, b.trailing())


def idr_slice(number: int, macroblocks: Sequence[bytes]) -> bytes:
    """One frame: an IDR slice of I_PCM macroblocks (each 384 bytes: Y, then Cb, Cr)."""
    b = Bits()
    b.ue(0)  # first_mb_in_slice
    b.ue(7)  # slice_type: I, as every slice of the picture
    b.ue(0)  # pic_parameter_set_id
    b.u(4, 0)  # frame_num (0 in an IDR picture)
    b.ue(number % 2)  # idr_pic_id: consecutive IDR pictures differ
    b.u(1, 0)  # no_output_of_prior_pics_flag
    b.u(1, 0)  # long_term_reference_flag
    b.se(0)  # slice_qp_delta
    for samples in macroblocks:
        b.ue(I_PCM)
        b.align()  # pcm_alignment_zero_bit
        b.raw(samples)
    return nal(5, b.trailing())


def yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """BT.601 limited range, as decoders assume without colour information."""
    r, g, bl = rgb
    y = 16 + (65.738 * r + 129.057 * g + 25.064 * bl) / 256
    cb = 128 + (-37.945 * r - 74.494 * g + 112.439 * bl) / 256
    cr = 128 + (112.439 * r - 94.154 * g - 18.285 * bl) / 256
    return round(y), round(cb), round(cr)


def frame(width: int, height: int, rgb: tuple[int, int, int], bar: int) -> list[bytes]:
    """A frame's macroblocks in raster order: ``rgb`` with a light bar, one macroblock
    wide, at macroblock column ``bar``."""
    y, cb, cr = yuv(rgb)
    chroma = bytes([cb] * 64 + [cr] * 64)
    plain, light = bytes([y] * 256) + chroma, bytes([235] * 256) + bytes([128] * 128)
    return [
        light if col == bar else plain for _ in range(height // MB) for col in range(width // MB)
    ]


def box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return box(kind, struct.pack(">I", version << 24 | flags), *parts)


MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def avc1(width: int, height: int, sps_nal: bytes, pps_nal: bytes) -> bytes:
    """The sample entry: the picture's size and the decoder's configuration (avcC)."""
    config = bytes([1, sps_nal[1], sps_nal[2], sps_nal[3], 0xFF, 0xE1])
    config += struct.pack(">H", len(sps_nal)) + sps_nal
    config += bytes([1]) + struct.pack(">H", len(pps_nal)) + pps_nal
    entry = bytes(6) + struct.pack(">H", 1) + bytes(16)  # data_reference_index 1
    entry += struct.pack(">HHIIIH", width, height, 0x480000, 0x480000, 0, 1)
    entry += bytes([8]) + b"taskgate".ljust(31, b"\0")  # compressorname
    entry += struct.pack(">Hh", 0x18, -1)
    return box(b"avc1", entry, box(b"avcC", config))


def sample_table(entry: bytes, sizes: Sequence[int], delta: int, offset: int) -> bytes:
    """Every sample in one chunk at ``offset``, each ``delta`` ticks long; all sync."""
    n = len(sizes)
    return box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), entry),
        full_box(b"stts", 0, 0, struct.pack(">III", 1, n, delta)),
        full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, n, 1)),
        full_box(b"stsz", 0, 0, struct.pack(f">II{n}I", 0, n, *sizes)),
        full_box(b"stco", 0, 0, struct.pack(">II", 1, offset)),
    )


def movie(width: int, height: int, entry: bytes, sizes: Sequence[int], fps: int, at: int) -> bytes:
    delta = TIMESCALE // fps
    duration = delta * len(sizes)
    mvhd = struct.pack(">IIII", 0, 0, TIMESCALE, duration) + struct.pack(">IH", 0x10000, 0x100)
    mvhd += bytes(10) + MATRIX + bytes(24) + struct.pack(">I", 2)
    tkhd = struct.pack(">IIIII", 0, 0, 1, 0, duration) + bytes(8)
    tkhd += (
        struct.pack(">hhhH", 0, 0, 0, 0) + MATRIX + struct.pack(">II", width << 16, height << 16)
    )
    mdhd = struct.pack(">IIIIHH", 0, 0, TIMESCALE, duration, 0x55C4, 0)  # language "und"
    hdlr = struct.pack(">I", 0) + b"vide" + bytes(12) + b"VideoHandler\0"
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    minf = box(
        b"minf",
        full_box(b"vmhd", 0, 1, bytes(8)),
        dinf,
        sample_table(entry, sizes, delta, at),
    )
    mdia = box(b"mdia", full_box(b"mdhd", 0, 0, mdhd), full_box(b"hdlr", 0, 0, hdlr), minf)
    trak = box(b"trak", full_box(b"tkhd", 0, 3, tkhd), mdia)
    return box(b"moov", full_box(b"mvhd", 0, 0, mvhd), trak)


def tiny_mp4(
    rgb: tuple[int, int, int], *, width: int = 64, height: int = 48, frames: int = 8, fps: int = 4
) -> bytes:
    """An MP4 of ``frames`` frames (``fps`` a second) of ``width`` x ``height`` pixels
    (multiples of 16): the colour ``rgb`` with a light bar moving across it."""
    if width % MB or height % MB or not (width and height and frames and 0 < fps <= TIMESCALE):
        raise ValueError("width and height must be multiples of 16; frames and fps positive")
    sps_nal, pps_nal = sps(width // MB, height // MB), pps()
    samples = []
    for i in range(frames):
        picture = idr_slice(i, frame(width, height, rgb, i % (width // MB)))
        samples.append(struct.pack(">I", len(picture)) + picture)  # AVCC: length-prefixed
    entry = avc1(width, height, sps_nal, pps_nal)
    ftyp = box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso2avc1mp41")
    sizes = [len(s) for s in samples]
    head = len(ftyp) + len(movie(width, height, entry, sizes, fps, 0)) + 8  # + mdat's header
    moov = movie(width, height, entry, sizes, fps, head)
    return ftyp + moov + box(b"mdat", *samples)
