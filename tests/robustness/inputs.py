"""Hostile and unusual uploads, generated here with Pillow and numpy (no files from elsewhere).

Each builder returns the raw bytes of one file; the tests decide how to send them.
"""

import io
import struct
import zlib

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def noise(width: int, height: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth-ish random picture (noise compresses badly, gradients too well)."""
    rng = np.random.default_rng(seed)
    shape = (height, width, channels) if channels > 1 else (height, width)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def rgb_image(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    return Image.fromarray(noise(width, height, 3, seed), "RGB")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG signature and IHDR announcing ``width`` x ``height``, with a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small baseline JPEG whose SOF0 segment is patched to announce ``width`` x ``height``."""
    data = bytearray(encode(rgb_image(16, 16), "JPEG", quality=80))
    sof = data.find(b"\xff\xc0")
    assert sof > 0, "Pillow wrote no baseline SOF0 segment"
    # FFC0, length (2), precision (1), height (2), width (2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def truncated(data: bytes, keep: float) -> bytes:
    """The first ``keep`` fraction of ``data`` (at least 1 byte, never all of it)."""
    return data[: max(1, min(len(data) - 1, int(len(data) * keep)))]


def small_jpeg() -> bytes:
    return encode(rgb_image(96, 80), "JPEG", quality=90)


def small_png() -> bytes:
    return encode(rgb_image(96, 80), "PNG")


def tiny(width: int, height: int) -> bytes:
    return encode(rgb_image(width, height), "PNG")


def animated_gif(frames: int = 4, width: int = 40, height: int = 30) -> bytes:
    images = [rgb_image(width, height, seed).convert("P") for seed in range(frames)]
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=50, loop=0)


def cmyk_jpeg() -> bytes:
    return encode(Image.fromarray(noise(64, 48, 4), "CMYK"), "JPEG", quality=90)


def png_16bit() -> bytes:
    values = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    return encode(Image.fromarray(values), "PNG")


def rgba_png() -> bytes:
    return encode(Image.fromarray(noise(64, 48, 4), "RGBA"), "PNG")


def grayscale_png() -> bytes:
    return encode(Image.fromarray(noise(64, 48, 1), "L"), "PNG")


def grayscale_jpeg() -> bytes:
    return encode(Image.fromarray(noise(64, 48, 1), "L"), "JPEG")


def palette_png_with_transparency() -> bytes:
    image = rgb_image(64, 48).convert("P")
    return encode(image, "PNG", transparency=0)


def bilevel_png() -> bytes:
    return encode(rgb_image(64, 48).convert("1"), "PNG")


def large_flat_png(side: int) -> bytes:
    """A legal but large image that compresses to almost nothing (a 'zip bomb' inside the limits)."""
    return encode(Image.new("RGB", (side, side), (120, 130, 140)), "PNG")


def with_exif_orientation(upright: Image.Image, orientation: int) -> Image.Image:
    """The pixels a camera would store for ``upright`` when it writes EXIF ``orientation`` (1-8).

    Displaying the stored pixels with the orientation applied (``ImageOps.exif_transpose``) gives
    ``upright`` back exactly: the stored array is the inverse transposition of the upright one.
    """
    t = Image.Transpose
    inverse = {
        1: None,
        2: t.FLIP_LEFT_RIGHT,
        3: t.ROTATE_180,
        4: t.FLIP_TOP_BOTTOM,
        5: t.TRANSPOSE,
        6: t.ROTATE_90,  # displayed after a 270 degree (clockwise 90) turn
        7: t.TRANSVERSE,
        8: t.ROTATE_270,
    }[orientation]
    return upright.copy() if inverse is None else upright.transpose(inverse)


def exif_png(upright: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return encode(with_exif_orientation(upright, orientation), "PNG", exif=exif)


def multipart_body(boundary: str, parts: list[tuple[str, str | None, str | None, bytes]]) -> bytes:
    """A multipart/form-data body; each part is (field, filename, content type, payload)."""
    out = bytearray()
    for field, filename, content_type, payload in parts:
        out += f"--{boundary}\r\n".encode()
        disposition = f'Content-Disposition: form-data; name="{field}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += disposition.encode() + b"\r\n"
        if content_type is not None:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + payload + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)
