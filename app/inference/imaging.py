"""Bytes -> upright RGB ``uint8`` array.

The pixel limit is checked from the header, before any pixel is decoded, so a decompression bomb never
allocates its full frame. EXIF orientation is applied (phone photos are often stored sideways).
"""

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.inference.errors import InvalidImageError, TooManyPixelsError, UnsupportedMediaTypeError

# Pillow names of the formats we decode. GIF is accepted for convenience (first frame only).
SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "PPM", "GIF")

# We enforce our own limit from the header; Pillow's global guard would otherwise warn or raise with
# its own message (and its threshold is process-wide).
Image.MAX_IMAGE_PIXELS = None


def _identify_other_format(data: bytes) -> str | None:
    """Name of the format Pillow recognises in ``data`` among all its plugins, if any."""
    try:
        with Image.open(io.BytesIO(data)) as other:
            return other.format
    except Exception:
        return None


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> HxWx3 uint8 RGB. High bit depths are scaled, not clipped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img)
        if img.mode == "F":
            arr = np.clip(arr, 0.0, 255.0)
        else:
            arr = arr.astype(np.int64)
            # 16-bit data: keep the top 8 bits. 32-bit integer mode holds 16-bit PNG data in Pillow.
            peak = int(arr.max()) if arr.size else 0
            shift = 8 if peak > 255 else 0
            arr = np.clip(arr >> shift, 0, 255)
        gray = arr.astype(np.uint8)
        return np.ascontiguousarray(np.stack([gray, gray, gray], axis=-1))
    if img.mode != "RGB":
        img = img.convert("RGB")
    return _copy_rgb(img)


# Rows of a strip in _copy_rgb: about 1 MB of Pillow's 4-byte pixels.
STRIP_BYTES = 1 << 20


def _copy_rgb(img: Image.Image) -> np.ndarray:
    """An RGB image's pixels as a new HxWx3 array, copied a strip of rows at a time.

    ``np.asarray(img)`` goes through ``img.tobytes()``, which holds the encoded chunks and their joined
    copy at once: with Pillow's own image (4 bytes a pixel) that is 10 bytes a pixel at the peak, 30 MB
    for a 3-megapixel photo, against 7 bytes a pixel here (measured peaks under the 64-client load in
    docs/DEPLOYMENT.md). Costs ~1.7 ms more on 3 megapixels (22 ms to decode)."""
    width, height = img.size
    rows = max(1, STRIP_BYTES // (4 * width))
    pixels = np.empty((height, width, 3), np.uint8)
    for top in range(0, height, rows):
        strip = img.crop((0, top, width, min(height, top + rows)))
        pixels[top : top + strip.height] = np.asarray(strip)
    return pixels


def read_image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header alone."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception as exc:
        raise InvalidImageError("cannot read the image header") from exc


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode an uploaded file into an upright RGB array of shape (H, W, 3).

    Raises :class:`InvalidImageError` for empty, corrupt or truncated data,
    :class:`UnsupportedMediaTypeError` for a recognised non-supported format and
    :class:`TooManyPixelsError` when the header announces more than ``max_pixels`` pixels.
    """
    if not data:
        raise InvalidImageError("the uploaded file is empty")
    try:
        img = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except UnidentifiedImageError as exc:
        other = _identify_other_format(data)
        if other is not None:
            raise UnsupportedMediaTypeError(
                f"{other} images are not supported; send one of {', '.join(SUPPORTED_FORMATS)}"
            ) from exc
        raise InvalidImageError("the file is not a decodable image") from exc
    except Exception as exc:  # Pillow raises many types for corrupt headers
        raise InvalidImageError(f"the image header is corrupt: {exc}") from exc

    with img:
        width, height = img.size
        if width <= 0 or height <= 0:
            raise InvalidImageError("the image has no pixels")
        if width * height > max_pixels:
            raise TooManyPixelsError(
                f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. corrupt EXIF or palette warnings
                img.load()
                # In place: the default returns a copy even when there is nothing to turn, which cost
                # more than the decoding itself (42 against 15 ms for a 3-megapixel JPEG).
                ImageOps.exif_transpose(img, in_place=True)
                return _to_rgb_array(img)
        except MemoryError:
            raise  # the server is short of memory: not the client's fault
        except Exception as exc:  # corrupt data surfaces as OSError, ValueError, TypeError, ... from Pillow
            raise InvalidImageError(f"the image data is truncated or corrupt: {exc}") from exc


def encode_image(image: np.ndarray, fmt: str = "png", quality: int = 90) -> bytes:
    """RGB array -> PNG or JPEG bytes."""
    buffer = io.BytesIO()
    pil = Image.fromarray(image)
    if fmt == "jpeg":
        pil.save(buffer, format="JPEG", quality=quality)
    else:
        pil.save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()
