"""Decoding: formats, modes, EXIF orientation and limits."""

import io

import numpy as np
import pytest
from PIL import Image

from app.inference.errors import InvalidImageError, TooManyPixelsError, UnsupportedMediaTypeError
from app.inference.imaging import decode_image

LIMIT = 40_000_000


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP", "TIFF", "PPM", "GIF"])
def test_supported_formats_decode_to_rgb(fmt):
    source = Image.new("RGB", (40, 30), (200, 100, 50))
    decoded = decode_image(encode(source, fmt), LIMIT)
    assert decoded.shape == (30, 40, 3) and decoded.dtype == np.uint8


def test_sixteen_bit_png_is_scaled_not_clipped():
    values = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    decoded = decode_image(encode(Image.fromarray(values), "PNG"), LIMIT)
    assert decoded.shape == (64, 64, 3)
    assert decoded[..., 0].min() == 0 and decoded[..., 0].max() == 255
    assert 100 < decoded[32, 32, 0] < 155  # mid-grey stays mid-grey


def test_cmyk_jpeg_becomes_rgb():
    decoded = decode_image(encode(Image.new("CMYK", (20, 20), (0, 255, 255, 0)), "JPEG"), LIMIT)
    assert decoded.shape == (20, 20, 3)
    red, green, blue = decoded[10, 10].astype(int)
    assert red > 200 and green < 60 and blue < 60


def test_exif_orientation_is_applied():
    upright = np.zeros((30, 60, 3), np.uint8)
    upright[:, :30] = 255  # left half white
    # Stored rotated by 90 degrees, with orientation 6 (rotate 90 CW to display) in EXIF.
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode_image(encode(stored, "JPEG", exif=exif, quality=95), LIMIT)
    assert decoded.shape == (30, 60, 3)
    assert decoded[:, :25].mean() > 200 and decoded[:, 35:].mean() < 50


def test_pixel_limit_is_checked():
    with pytest.raises(TooManyPixelsError):
        decode_image(encode(Image.new("RGB", (100, 100)), "PNG"), 9_999)


def test_garbage_and_unsupported():
    with pytest.raises(InvalidImageError):
        decode_image(b"not an image at all", LIMIT)
    with pytest.raises(UnsupportedMediaTypeError):
        decode_image(encode(Image.new("RGB", (16, 16)), "ICO"), LIMIT)
