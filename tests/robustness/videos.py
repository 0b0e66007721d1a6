"""Hostile and unusual video files, generated here (numpy, Pillow, OpenCV's encoder), never from elsewhere.

Each builder returns the raw bytes of one file. The AVI files are written by hand (RIFF chunks around
JPEG frames, as an MJPEG AVI is), so that every header field can be set to what a broken encoder writes:
a frame rate of 0, a frame count that lies, a size that is not the frames' size, frames that change size.
The MP4 files come from OpenCV's encoder (mp4v), which writes the index (``moov``) after the frames;
:func:`faststart` moves it in front of them, as streaming encoders do.
"""

import math
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from tests.robustness.inputs import encode

AVIF_HASINDEX = 0x10
AVIIF_KEYFRAME = 0x10


def gradient_frame(width: int, height: int, index: int = 0) -> np.ndarray:
    """An RGB frame that differs from frame to frame and compresses well (flat areas, soft edges)."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    red = (x + 7 * index) % 256
    green = (y + 3 * index) % 256
    blue = np.full((height, width), (40 * index) % 256, np.float32)
    return np.dstack([red + 0 * y, green + 0 * x, blue]).astype(np.uint8)


def jpeg_frame(width: int, height: int, index: int = 0, quality: int = 80) -> bytes:
    return encode(Image.fromarray(gradient_frame(width, height, index)), "JPEG", quality=quality)


def flat_jpeg(width: int, height: int, colour: bool = False) -> bytes:
    """A flat mid-grey JPEG of any size (greyscale, or colour without chroma subsampling), written in
    milliseconds: every 8x8 block of a flat picture has the same Huffman code in the standard tables
    (DC difference 0, then end of block: ``00`` ``1010`` for luma, ``00`` ``00`` for chroma), so the scan
    is one short bit pattern repeated. 9000x9000 greyscale is 0.9 MB; FFmpeg decodes it to 81 MB."""
    mode, options = ("YCbCr", {"subsampling": 0}) if colour else ("L", {})
    small = encode(Image.new(mode, (8, 8), (128, 128, 128) if colour else 128), "JPEG", quality=50, **options)
    sof, sos = small.find(b"\xff\xc0"), small.find(b"\xff\xda")
    assert sof > 0 and sos > 0, "Pillow wrote no baseline JPEG"
    header = bytearray(small[: sos + 2 + struct.unpack(">H", small[sos + 2 : sos + 4])[0]])
    header[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    unit = "001010" + ("00000000" if colour else "")  # one MCU: a luma block (and two chroma blocks)
    blocks = -(-width // 8) * -(-height // 8)
    period = math.lcm(len(unit), 8) // len(unit)  # MCUs per whole number of bytes
    whole, rest = divmod(blocks, period)
    repeated = int(unit * period, 2).to_bytes(len(unit) * period // 8)
    tail_bits = unit * rest
    tail_bits += "1" * (-len(tail_bits) % 8)  # the last byte padded with ones, as encoders do
    tail = int(tail_bits, 2).to_bytes(len(tail_bits) // 8) if rest else b""
    assert b"\xff" not in repeated + tail, "the pattern would need byte stuffing"
    return bytes(header) + repeated * whole + tail + b"\xff\xd9"


def _chunk(fourcc: bytes, data: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _list(kind: bytes, body: bytes) -> bytes:
    return _chunk(b"LIST", kind + body)


def mjpeg_avi(
    frames: Sequence[bytes],
    width: int,
    height: int,
    *,
    rate: int = 25,
    scale: int = 1,
    usec_per_frame: int | None = None,
    total_frames: int | None = None,
) -> bytes:
    """An MJPEG AVI of the given JPEG ``frames``. The header says ``width`` x ``height``, a frame rate of
    ``rate`` / ``scale`` (``strh``) and ``usec_per_frame`` (``avih``), and ``total_frames`` frames
    (default: the true values); nothing checks that they agree with the frames."""
    count = len(frames) if total_frames is None else total_frames
    if usec_per_frame is None:
        usec_per_frame = round(1e6 * scale / rate) if rate else 0
    largest = max((len(f) for f in frames), default=0)
    avih = struct.pack(
        "<14I", usec_per_frame, 0, 0, AVIF_HASINDEX, count, 0, 1, largest, width, height, 0, 0, 0, 0
    )
    strh = b"vids" + b"MJPG" + struct.pack("<IHHIIIIIIiI", 0, 0, 0, 0, scale, rate, 0, count, largest, -1, 0)
    strh += struct.pack("<4h", 0, 0, min(width, 32767), min(height, 32767))
    strf = (
        struct.pack("<IiiHH", 40, width, height, 1, 24)
        + b"MJPG"
        + struct.pack("<5I", min(width * height * 3, 0xFFFFFFFF), 0, 0, 0, 0)
    )
    header = _list(
        b"hdrl", _chunk(b"avih", avih) + _list(b"strl", _chunk(b"strh", strh) + _chunk(b"strf", strf))
    )
    movi_body, index = b"", b""
    for frame in frames:
        # idx1 offsets count from the 'movi' fourcc, 4 bytes before the first chunk.
        index += b"00dc" + struct.pack("<III", AVIIF_KEYFRAME, 4 + len(movi_body), len(frame))
        movi_body += _chunk(b"00dc", frame)
    body = header + _list(b"movi", movi_body) + _chunk(b"idx1", index)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"AVI " + body


def gradient_avi(frames: int, width: int = 160, height: int = 120, **header: int) -> bytes:
    return mjpeg_avi([jpeg_frame(width, height, i) for i in range(frames)], width, height, **header)


def opencv_video(
    frames: int, width: int = 160, height: int = 120, fourcc: str = "mp4v", suffix: str = ".mp4"
) -> bytes:
    """A video written by OpenCV's bundled FFmpeg (mp4v MP4 by default: its ``moov`` comes last)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"clip{suffix}"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, (width, height))
        assert writer.isOpened(), f"OpenCV cannot write {fourcc} {suffix}"
        for i in range(frames):
            writer.write(cv2.cvtColor(gradient_frame(width, height, i), cv2.COLOR_RGB2BGR))
        writer.release()
        return path.read_bytes()


def mp4_boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    """The top-level boxes of an MP4: (type, start, end)."""
    boxes, at = [], 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        assert size >= 8, f"unexpected box size {size} (64-bit boxes are not written here)"
        boxes.append((kind, at, at + size))
        at += size
    return boxes


def faststart(data: bytes) -> bytes:
    """The MP4 with its ``moov`` box moved in front of ``mdat`` and the chunk offsets (``stco``) shifted
    to match, like ``ffmpeg -movflags +faststart``."""
    boxes = mp4_boxes(data)
    kinds = [kind for kind, _, _ in boxes]
    moov_start, moov_end = next((s, e) for k, s, e in boxes if k == b"moov")
    assert kinds.index(b"moov") > kinds.index(b"mdat"), "the moov is already in front"
    moov = bytearray(data[moov_start:moov_end])
    shift = len(moov)
    at = moov.find(b"stco")
    while at >= 0:
        count = struct.unpack(">I", moov[at + 8 : at + 12])[0]
        for i in range(count):
            field = at + 12 + 4 * i
            moov[field : field + 4] = struct.pack(
                ">I", struct.unpack(">I", moov[field : field + 4])[0] + shift
            )
        at = moov.find(b"stco", at + 12 + 4 * count)
    out = b""
    for kind, start, end in boxes:
        if kind == b"mdat":
            out += bytes(moov)
        if kind != b"moov":
            out += data[start:end]
    return out


def cut(data: bytes, at: int) -> bytes:
    """The first ``at`` bytes (negative: all but the last ``-at``)."""
    return data[:at]
